from setuptools import find_packages, setup

setup(
    name="offrl",
    version="0.1.0",
    description="Offline reinforcement learning in JAX/Flax: seed-vmapped runs, local D4RL-style datasets, paper reproductions",
    # configs/ stays at the top level of the repository and installs as the top-level package
    # `configs`, so `python -m offrl --config=td3bc` finds it from any directory and the
    # `from configs.td3bc import ...` lines inside config files work installed as in a checkout.
    packages=find_packages(include=["offrl", "offrl.*", "configs", "configs.*"]),
    package_data={"offrl": ["data/behavior/*/*", "data/behavior/*.md"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8.5",
        "optax>=0.2.2",
        "chex>=0.1.86",
        "numpy>=1.24",
        "minari[hdf5,hf]>=0.5.1",  # hf: huggingface_hub, which remote (Hugging Face) Minari datasets need
        "pillow",  # minari[hdf5] imports it without declaring it
        "h5py>=3.8",
        "gymnasium[mujoco]>=1.0",
        "ml-collections>=0.1.1",
        "wandb>=0.16",
        "absl-py>=1.4",
        "filelock>=3",  # JAX's compilation cache needs it to bound its size (offrl.compile_cache)
        "matplotlib>=3.7",
        "diffrax>=0.6",  # ARQ's probability-flow ODE log-likelihood (adaptive Dopri5)
        "rliable>=1.2",  # IQM and stratified-bootstrap CIs in experiments/reproduce.py
        "pandas<3",  # rliable's dependency arch (7.2) fails to import with pandas 3
    ],
    extras_require={
        # D4RL AntMaze / Adroit / Kitchen environments (offrl.data.robotics)
        "robotics": ["gymnasium-robotics>=1.2"],
        # wheel: the non-editable install test builds one (tests/test_launcher.py); gymnasium-robotics: the
        # tests exercise the D4RL robotics domains too; ruff: tests/test_lint.py (settings in pyproject.toml)
        "dev": ["pytest>=7.4", "wheel", "gymnasium-robotics>=1.2", "ruff>=0.6"],
        # mutation testing of the equation code (experiments/tools/mutation/, docs/testing.md); not run in CI
        "mutation": ["mutmut==2.5.1"],
    },
)
