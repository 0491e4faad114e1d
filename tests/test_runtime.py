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



def test_grid_member_equals_a_run_of_that_point_alone(tiny_dataset):
    from offrl.sweep import members, parse_grid

    cfg = tiny_config("td3bc", steps=6, num_seeds=2, grid="agent.alpha=1,5 agent.tau=0.005,0.5")
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    m = members(cfg)
    assert m.size == 8 and m.points[3] == {"agent.alpha": 5.0, "agent.tau": 0.5}
    tr = make_train(get_algorithm("td3bc"), cfg, data)
    keys = jax.numpy.stack([seed_keys(s, 1)[0] for s in m.seed_list()])
    carry, _ = jax.jit(jax.vmap(tr.train, in_axes=(0, None, 0)))(keys, data, m.hparams())
    # member 7 = grid point 3, seed 1: compare with a plain run configured that way
    alone_cfg = tiny_config("td3bc", steps=6, num_seeds=1, seed=1, **{"agent.alpha": 5.0, "agent.tau": 0.5})
    alone, _ = jax.jit(make_train(get_algorithm("td3bc"), alone_cfg, data).train)(seed_keys(1, 1)[0])
    _close(jax.tree_util.tree_map(lambda x: x[7], carry.state.critic_target), alone.state.critic_target)
    _close(jax.tree_util.tree_map(lambda x: x[7], carry.state.actor.params), alone.state.actor.params)
    with pytest.raises(ValueError, match="cannot sweep 'agent.actor_lr'"):
        parse_grid("agent.actor_lr=1e-3,3e-4", cfg)
    with pytest.raises(ValueError, match="not a config key"):
        parse_grid("agent.nope=1", cfg)
