"""Shared fixtures: a tiny local Hopper dataset in a temporary MINARI_DATASETS_PATH, tiny configs."""
import atexit
import importlib
import os
import shutil
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Every test sees the same private dataset directory, never the user's.
os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp(prefix="offrl-test-datasets-")
atexit.register(shutil.rmtree, os.environ["MINARI_DATASETS_PATH"], ignore_errors=True)
os.environ.setdefault("WANDB_MODE", "disabled")
# ... and the same private compilation cache (config.compile_cache=auto), never the user's ~/.cache/offrl/xla
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="offrl-test-xla-")
atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402

TINY_ID = "test/hopper/tiny-v0"


def make_tiny_dataset(dataset_id=TINY_ID, n=600, seed=0, ref=(-20.0, 1000.0)):
    """A few hundred uniform-random Hopper-v5 transitions written as a Minari dataset."""
    import gymnasium as gym

    from offrl.data.collect import collect_episodes, uniform_policy
    from offrl.data.minari_io import local_dataset_exists, write_minari

    if not local_dataset_exists(dataset_id):
        env = gym.make("Hopper-v5")
        eps = collect_episodes("Hopper-v5", uniform_policy(env.action_space), n, seed=seed)
        write_minari(dataset_id, eps, "Hopper-v5", ref_min_score=ref[0], ref_max_score=ref[1], description="tiny test data")
    return dataset_id


@pytest.fixture(scope="session")
def tiny_dataset():
    return make_tiny_dataset()


def tiny_config(algo, steps=20, num_seeds=2, **overrides):
    """configs/<algo>.py shrunk for tests: every ``*hidden_dims`` agent key becomes (16, 16),
    every ``*_steps`` agent key becomes ``steps``, the run has ``steps`` updates and batch 32."""
    cfg = importlib.import_module(f"configs.{algo}").get_config()
    cfg.dataset = TINY_ID
    cfg.num_seeds = num_seeds
    cfg.num_steps = steps
    cfg.batch_size = 32
    cfg.eval_interval = steps
    cfg.eval_episodes = 2
    cfg.checkpoint_interval = 0
    for k in list(cfg.agent.keys()):
        if k.endswith("hidden_dims"):
            cfg.agent[k] = (16, 16)
        elif k.endswith("_steps") and isinstance(cfg.agent[k], int):
            cfg.agent[k] = steps
        elif k.endswith("batch_size") and isinstance(cfg.agent[k], int):
            cfg.agent[k] = 32

    for k, v in overrides.items():
        cfg.update_from_flattened_dict({k: v})
    return cfg


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    """Every leaf of two pytrees equal within float32 tolerance (chex names the leaf that is not)."""
    import chex

    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


def trees_differ(a, b, atol=1e-6) -> bool:
    """Whether some leaf of two pytrees differs beyond ``atol``: the check that a planted alternative (target
    for online, s' for s, ...) would be seen."""
    import jax

    return any(not np.allclose(np.asarray(x), np.asarray(y), atol=atol)
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def np_mlp(layers, x):
    """A NumPy forward pass of offrl's MLP: layers [(kernel, bias)], ReLU between them, none after the last."""
    x = np.asarray(x)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i + 1 < len(layers):
            x = np.maximum(x, 0.0)
    return x


def all_eqns(jaxpr):
    """Every equation of ``jaxpr`` and of every jaxpr nested in it."""
    from jax.extend.core import jaxprs_in_params

    for e in jaxpr.eqns:
        yield e
        for sub in jaxprs_in_params(e.params):
            yield from all_eqns(sub)


def size_one_batched_dots(jaxpr) -> list:
    """The matmuls (``dot_general``, nested ones included) batched over an axis of size 1: the pattern whose
    GPU program copies weights on every update (offrl.nets.vmap_members says why)."""
    return [e for e in all_eqns(jaxpr) if e.primitive.name == "dot_general"
            and any(e.invars[0].aval.shape[d] == 1 for d in e.params["dimension_numbers"][1][0])]


def contracting_dims(stablehlo: str) -> list[tuple[int, ...]]:
    """The contracted axes of the left operand of every matmul (``stablehlo.dot_general``) in a lowered
    program's text (``jax.jit(f).lower(...).as_text()``)."""
    import re

    return [tuple(int(d) for d in m.group(1).split(","))
            for m in re.finditer(r"stablehlo\.dot_general[^\n]*contracting_dims = \[(\d+(?:, \d+)*)\]", stablehlo)]


def cond_eqns(jaxpr, update_body: bool = False, loops: int = 0):
    """The ``lax.cond`` equations of ``jaxpr`` and of every jaxpr nested in it. ``update_body``: only those of
    the scanned update body (``jaxpr`` holds the scan over updates), not those of loops inside an update
    (an ODE solver's adaptive steps), which are not the update's carry. The conds of ``lax.platform_dependent``
    (``nets.folding_dot_general``) are left out: their index is a ``platform_index``, and a program lowered for
    one platform keeps that platform's branch and no conditional."""
    from jax.extend.core import jaxprs_in_params

    platform = {v for e in jaxpr.eqns if e.primitive.name == "platform_index" for v in e.outvars}
    for e in jaxpr.eqns:
        name = e.primitive.name
        if name == "cond" and (not update_body or loops == 1) and e.invars[0] not in platform:
            yield e
        inner = loops + (name in ("scan", "while"))
        if not update_body or inner <= 1:
            for sub in jaxprs_in_params(e.params):
                yield from cond_eqns(sub, update_body, inner)
