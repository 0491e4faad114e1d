"""The runtime: seed-vmapped training equals seed-alone training; chunked equals one scan."""
import jax
import numpy as np
import pytest

from conftest import tiny_config
from offrl.algos import get_algorithm
from offrl.data import load_dataset, preprocess
from offrl.train import make_train, seed_keys


@pytest.fixture(scope="module")
def td3bc_setup(tiny_dataset):
    cfg = tiny_config("td3bc", steps=12, num_seeds=3)
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    return cfg, make_train(get_algorithm("td3bc"), cfg, data)


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def test_vmapped_seeds_equal_single_seed_runs(td3bc_setup):
    cfg, tr = td3bc_setup
    keys = seed_keys(cfg.seed, cfg.num_seeds)
    carry_v, metrics_v = jax.jit(jax.vmap(tr.train))(keys)
    for i in range(cfg.num_seeds):
        carry_1, metrics_1 = jax.jit(tr.train)(seed_keys(cfg.seed + i, 1)[0])
        _close(jax.tree_util.tree_map(lambda x: x[i], carry_v.state.actor.params), carry_1.state.actor.params)
        _close(jax.tree_util.tree_map(lambda x: x[i], carry_v.state.critic.params), carry_1.state.critic.params)
        _close(jax.tree_util.tree_map(lambda x: x[i], metrics_v), metrics_1, tol=1e-4)
    # and the seeds really differ
    p = carry_v.state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(p[0], p[1])


def test_chunked_run_equals_one_scan(td3bc_setup):
    cfg, tr = td3bc_setup
    init, run = tr.vmapped()
    keys = seed_keys(0, 2)
    c = init(keys)
    whole, _ = run(c, tr.data, 0, 0, 12)
    part, _ = run(c, tr.data, 0, 0, 5)
    part, _ = run(part, tr.data, 0, 5, 7)
    _close(whole.state.actor.params, part.state.actor.params, tol=1e-6)
    _close(whole.key, part.key, tol=0)

