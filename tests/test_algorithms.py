"""The shared harness: every registered algorithm (``offrl.algos.ALGORITHMS``) on the tiny dataset.

Each algorithm is compiled a few times only: one seed-vmapped run and one single-seed run per
algorithm, cached for the module (``_run``); every test reads from that cache. The config is
``configs/<algo>.py``, or ``configs/<config_file>.py`` when the algorithm record names one (BRAC).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import cond_eqns, contracting_dims, tiny_config
from offrl import checkpoint
from offrl.algos import ALGORITHMS, get_algorithm
from offrl.runner import prepare
from offrl.train import make_train, seed_keys

NUM_SEEDS = 2
STEPS = 8

_CACHE = {}


def config_name(name: str) -> str:
    return get_algorithm(name).config_file


def _run(name):
    """(config, algo, Train, init carry, vmapped final carry + metrics, single-seed runs), computed once."""
    if name not in _CACHE:
        cfg = tiny_config(config_name(name), steps=STEPS, num_seeds=NUM_SEEDS)
        exp = prepare(cfg)
        tr = make_train(exp.algo, cfg, exp.data)
        keys = seed_keys(cfg.seed, NUM_SEEDS)
        init = jax.jit(jax.vmap(tr.init))(keys)
        carry_v, metrics_v = jax.jit(jax.vmap(tr.train))(keys)
        single = jax.jit(tr.train)
        alone = [single(keys[i]) for i in range(NUM_SEEDS)]
        _CACHE[name] = dict(cfg=cfg, algo=exp.algo, tr=tr, init=init, carry=carry_v, metrics=metrics_v, alone=alone)
    return _CACHE[name]


@pytest.fixture(params=ALGORITHMS)
def run(request, tiny_dataset):
    return _run(request.param)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_stages_cover_the_run(run):
    stages = run["tr"].stages
    assert stages, "an algorithm declares at least one stage"
    assert stages[-1].evaluate, "the last stage trains the policy that is evaluated"
    assert len({s.name for s in stages}) == len(stages), "stage names are unique"
    assert len(run["metrics"]) == sum(1 for s in stages if s.num_steps)


def test_losses_and_metrics_are_finite(run):
    for stage_metrics in run["metrics"]:
        assert stage_metrics, "every stage reports metrics"
        for k, v in stage_metrics.items():
            v = np.asarray(v)
            assert v.shape == (NUM_SEEDS,), f"metric {k} is one scalar per seed, got {v.shape}"
            assert np.all(np.isfinite(v)), f"metric {k} is not finite: {v}"
    for leaf in _leaves(run["carry"].state):
        if np.issubdtype(leaf.dtype, np.floating):
            assert not np.any(np.isnan(leaf))  # +-inf is allowed as a sentinel (BPPO's best score so far)


def test_updates_change_parameters_and_policy(run):
    before = _leaves(run["init"].state)
    after = _leaves(run["carry"].state)
    assert len(before) == len(after)
    changed = [not np.array_equal(a, b) for a, b in zip(before, after) if np.issubdtype(a.dtype, np.floating)]
    assert sum(changed) >= 2, "training changed (almost) no parameter"
    cfg, algo = run["cfg"], run["algo"]
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(4, run["tr"].spec.obs_dim)), jnp.float32)
    key = jax.random.PRNGKey(0)
    act = jax.vmap(lambda s: algo.act(s, obs, key, cfg, True))
    assert not np.allclose(np.asarray(act(run["init"].state)), np.asarray(act(run["carry"].state)))
    # the seeds really differ
    a = np.asarray(act(run["carry"].state))
    assert not np.allclose(a[0], a[1])


def test_vmapped_seeds_equal_single_seed_runs(run):
    carry_v, metrics_v = run["carry"], run["metrics"]
    for i, (carry_1, metrics_1) in enumerate(run["alone"]):
        for x, y in zip(_leaves(jax.tree_util.tree_map(lambda t: t[i], carry_v.state)), _leaves(carry_1.state)):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        for mv, m1 in zip(metrics_v, metrics_1):
            assert mv.keys() == m1.keys()
            for k in mv:
                np.testing.assert_allclose(np.asarray(mv[k])[i], np.asarray(m1[k]), rtol=1e-3, atol=1e-4, err_msg=k)


def test_checkpoint_round_trip(run, tmp_path):
    path = str(tmp_path / "ckpt.msgpack")
    checkpoint.save(path, run["carry"], {"stage": 0, "step": STEPS})
    restored, progress = checkpoint.restore(path, run["init"])
    assert progress == {"stage": 0, "step": STEPS}
    # same leaves at the same paths (static fields such as apply_fn closures need not be the same objects)
    paths = lambda t: [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(t)[0]]  # noqa: E731
    assert paths(restored) == paths(run["carry"])
    for x, y in zip(_leaves(restored), _leaves(run["carry"])):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("deterministic", [True, False])
def test_act_in_box_with_right_shape(run, deterministic):
    cfg, algo, spec = run["cfg"], run["algo"], run["tr"].spec
    obs = jnp.asarray(3.0 * np.random.default_rng(1).normal(size=(5, spec.obs_dim)), jnp.float32)
    keys = seed_keys(0, NUM_SEEDS)
    a = np.asarray(jax.vmap(lambda s, k: algo.act(s, obs, k, cfg, deterministic))(run["carry"].state, keys))
    assert a.shape == (NUM_SEEDS, 5, spec.act_dim)
    assert np.all(np.isfinite(a)) and np.all(np.abs(a) <= 1.0)


def test_every_algorithm_has_a_config():
    for name in ALGORITHMS:
        cfg = tiny_config(config_name(name))
        assert cfg.algo == name


def _forwarded_by_conds(jaxpr) -> int:
    """Elements that the ``lax.cond``s of the scanned update body (``jaxpr`` holds the scan over updates) return
    straight from their operands: per cond, the most any one branch passes through unchanged, summed over the
    conds."""
    total = 0
    for e in cond_eqns(jaxpr, update_body=True):
        passed = [[v for v in b.jaxpr.outvars if v in set(b.jaxpr.invars)] for b in e.params["branches"]]
        total += max(sum(int(np.prod(v.aval.shape)) for v in vs) for vs in passed)
    return total


def _stage_carries(run):
    """(stage, single-seed carry) for every stage with updates. ARQ's stages after pre-generation read its
    table, filled with synthetic values as bench does."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    tr, cfg = run["tr"], run["cfg"]
    carry = jax.tree_util.tree_map(lambda x: x[0], run["init"])
    for st in tr.stages:
        if st.num_steps:
            c = carry
            if bench.needs_support(cfg, tr.stages, st.name):
                c = carry._replace(state=bench.synthetic_support(carry.state, tr.data, cfg))
            yield st, c


def test_every_matmul_of_a_cpu_update_contracts_one_axis(run):
    """In the program lowered for the CPU, no matmul of an update contracts two axes at once: a layer's
    input of rank > 2 (states x sampled actions) is folded into a matrix (``nets.folding_dot_general``), and
    BRAC+'s VAE members read their own copy of a shared input. XLA's CPU program transposes activations for
    such a matmul: CQL's update, with its critics on (256 states x 10 actions), ran 1.2-1.3x slower on the
    CPU."""
    tr = run["tr"]
    matmuls = 0
    for st, c in _stage_carries(run):
        dims = contracting_dims(jax.jit(lambda c: tr.run(c, tr.data, st.name, 0, 2)).lower(c).as_text())
        matmuls += len(dims)
        wide = [d for d in dims if len(d) > 1]
        assert not wide, f"stage {st.name}: matmuls contracting axes {wide[:3]}"
    assert matmuls, "the pattern reads the lowered program's matmuls"


def test_no_update_passes_its_state_through_a_cond(run):
    """No ``lax.cond`` in a stage's scanned update returns what it was given unchanged (more than a few
    counters). A cond that returns the state (``lax.cond(pred, step_fn, lambda s: s, state)``) copies it twice
    on every step it changes nothing: into the cond's result, then back into the loop's carry. For TD3+BC's
    delayed actor step on a GPU that was, on average, 50 copy kernels and 5.0 MB per seed per update.
    A cond that returns a gradient, zeros on the other branch, and a ``select`` of
    the changed values after it, copies nothing."""
    tr = run["tr"]
    for st, c in _stage_carries(run):
        jaxpr = jax.make_jaxpr(lambda c: tr.run(c, tr.data, st.name, 0, 2))(c).jaxpr
        n = _forwarded_by_conds(jaxpr)
        assert n <= 16, f"stage {st.name}: conds pass {n} elements of their operands through unchanged"
