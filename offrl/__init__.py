"""offrl: offline reinforcement learning in JAX/Flax, every run vmapped over seeds.

``offrl.load_policy(workdir, seed=...)`` turns a run's checkpoint into a callable from raw
observations to environment actions (see :mod:`offrl.policy`). Importing ``offrl`` itself
imports nothing heavy: submodules load when used.
"""

__all__ = ["load_policy"]


def __getattr__(name):
    if name == "load_policy":
        from offrl.policy import load_policy

        return load_policy
    raise AttributeError(f"module 'offrl' has no attribute {name!r}")
