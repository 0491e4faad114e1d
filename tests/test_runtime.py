"""The runtime: seed-vmapped training equals seed-alone training; chunked equals one scan."""
import os

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
    whole, _ = run(c, tr.data, "train", 0, 12)
    part, _ = run(c, tr.data, "train", 0, 5)
    part, _ = run(part, tr.data, "train", 5, 7)
    _close(whole.state.actor.params, part.state.actor.params, tol=1e-6)
    _close(whole.key, part.key, tol=0)



def _grid_member_matches_alone(grid: str, point: dict, member: int, seed: int):
    """Train ``grid`` x 2 seeds vmapped; member ``member`` must equal a run of ``point`` with ``seed`` alone."""
    from offrl.sweep import members

    algo = get_algorithm("td3bc")
    cfg = tiny_config("td3bc", steps=6, num_seeds=2, grid=grid)
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    m = members(cfg, algo.sweepable)
    assert m.points[member // 2] == point and m.seed_list()[member] == seed
    tr = make_train(algo, cfg, data)
    keys = jax.numpy.stack([seed_keys(s, 1)[0] for s in m.seed_list()])
    carry, _ = jax.jit(jax.vmap(tr.train, in_axes=(0, None, 0)))(keys, data, m.hparams())
    alone_cfg = tiny_config("td3bc", steps=6, num_seeds=1, seed=seed, **point)
    alone, _ = jax.jit(make_train(algo, alone_cfg, data).train)(seed_keys(seed, 1)[0])
    _close(jax.tree_util.tree_map(lambda x: x[member], carry.state.critic_target), alone.state.critic_target)
    _close(jax.tree_util.tree_map(lambda x: x[member], carry.state.actor.params), alone.state.actor.params)
    return m, carry


def test_grid_member_equals_a_run_of_that_point_alone(tiny_dataset):
    from offrl.sweep import parse_grid

    m, _ = _grid_member_matches_alone("agent.alpha=1,5 agent.tau=0.005,0.5", {"agent.alpha": 5.0, "agent.tau": 0.5}, 7, 1)
    assert m.size == 8
    cfg = tiny_config("td3bc")
    with pytest.raises(ValueError, match="cannot sweep 'agent.hidden_dims'"):
        parse_grid("agent.hidden_dims=1,2", cfg, get_algorithm("td3bc").sweepable)
    with pytest.raises(ValueError, match="not a config key"):
        parse_grid("agent.nope=1", cfg, get_algorithm("td3bc").sweepable)


def test_learning_rate_grid_is_vmapped_and_each_member_equals_its_point_alone(tiny_dataset):
    """Learning rates live in the optimiser state (optax.inject_hyperparams), so they sweep in one program."""
    from offrl.algos.common import learning_rate_of

    point = {"agent.actor_lr": 1e-2, "agent.critic_lr": 1e-4}
    m, carry = _grid_member_matches_alone("agent.actor_lr=3e-4,1e-2 agent.critic_lr=1e-4,3e-3", point, 5, 1)
    lrs = np.asarray(learning_rate_of(carry.state.actor.opt_state))
    np.testing.assert_allclose(lrs, [3e-4, 3e-4, 3e-4, 3e-4, 1e-2, 1e-2, 1e-2, 1e-2], rtol=1e-6)
    # the two learning rates really gave different actors
    k = carry.state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(k[1], k[5])


def test_every_declared_sweepable_key_traces_in_graph(tiny_dataset):
    """Sweepability is declared: each algorithm's sweepable keys must really be read only arithmetically,
    i.e. a run whose every sweepable key is a traced value compiles (no ConcretizationTypeError)."""
    from offrl.algos import ALGORITHMS

    for name in ALGORITHMS:
        algo = get_algorithm(name)
        cfg = tiny_config(algo.config_file, steps=2, num_seeds=1)
        data, info = load_dataset(cfg.dataset)
        data, _ = preprocess(data, info, cfg)
        tr = make_train(algo, cfg, data)
        hp = {f"agent.{k}": jax.numpy.float32(cfg.agent[k]) for k in algo.sweepable}
        jax.eval_shape(lambda k, h: tr.train(k, data, h), seed_keys(0, 1)[0], hp)


def test_runner_trains_a_learning_rate_grid(tiny_dataset, tmp_path):
    """The runner's separately compiled init and chunks carry a swept learning rate through the optimiser state."""
    from offrl.runner import run_experiment

    cfg = tiny_config("td3bc", steps=4, num_seeds=1, grid="agent.actor_lr=1e-3,1e-2")
    cfg.eval_interval = 2
    summary = run_experiment(cfg, str(tmp_path / "lr_grid"), out=open(os.devnull, "w"))
    assert [r["hparams"] for r in summary["rows"]] == [{"agent.actor_lr": 1e-3}, {"agent.actor_lr": 1e-2}]
