"""BPPO: the clipped surrogate, asymmetric weights and decay schedules by hand; MC returns; each
stage learning on tiny data; online / offline selection; Onestep never moving pi_k."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config

from offrl.algos import bppo
from offrl.algos.common import learning_rate_of
from offrl.data import load_dataset
from offrl.data.dataset import episodes_to_transitions
from offrl.train import make_train


# ----------------------------------------------------------------------------- pure maths
def test_clipped_surrogate_matches_hand_computation():
    eps = 0.2
    ratio = np.array([1.5, 0.5, 1.5, 0.5, 1.1, 0.9])
    adv = np.array([2.0, -1.0, -1.0, 3.0, 1.0, -2.0])
    # by hand: min(r A, clip(r, 0.8, 1.2) A)
    expected = np.array([
        1.2 * 2.0,   # A > 0, r above 1+eps: the upper clip binds
        0.8 * -1.0,  # A < 0, r below 1-eps: the lower clip binds
        1.5 * -1.0,  # A < 0, r above: unclipped (pessimistic) term
        0.5 * 3.0,   # A > 0, r below: unclipped term
        1.1 * 1.0,   # inside the range
        0.9 * -2.0,
    ])
    logp_old = np.array([-1.0, 0.3, 2.0, -4.0, 0.0, 1.0])
    logp = logp_old + np.log(ratio)
    got = bppo.clipped_surrogate(jnp.asarray(logp), jnp.asarray(logp_old), jnp.asarray(adv), eps)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    # where a clip binds, the objective has no gradient through the ratio
    g = jax.grad(lambda lp: bppo.clipped_surrogate(lp, jnp.asarray(logp_old), jnp.asarray(adv), eps).sum())(jnp.asarray(logp))
    np.testing.assert_allclose(np.asarray(g), [0.0, 0.0, 1.5 * -1.0, 0.5 * 3.0, 1.1, 0.9 * -2.0], rtol=1e-5)


def test_asymmetric_weight_and_advantage_normalisation():
    adv = jnp.array([2.0, -1.0, 0.0, 0.5])
    np.testing.assert_allclose(np.asarray(bppo.asymmetric_weight(adv, 0.9)), [1.8, -0.1, 0.0, 0.45], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(bppo.asymmetric_weight(adv, 0.5)), np.asarray(adv) * 0.5, rtol=1e-6)
    x = np.array([1.0, 2.0, 4.0, 7.0])
    np.testing.assert_allclose(np.asarray(bppo.normalize_advantage(jnp.asarray(x))), (x - x.mean()) / (x.std(ddof=1) + 1e-10), rtol=1e-6)


def test_decay_schedules():
    cfg = tiny_config("bppo")
    ag = cfg.agent
    eps0, lr0 = ag.clip_eps, ag.pi_lr
    clip = {i: float(bppo.clip_at(jnp.int32(i), cfg)) for i in (0, 1, 200, 201, 999)}
    lr = {i: float(bppo.lr_at(jnp.int32(i), cfg)) for i in (0, 1, 2, 3, 200, 201, 999)}
    # the reference decays the clip before each of steps 0..200 uses it (clip_decay_first)
    assert clip[0] == pytest.approx(eps0 * 0.96) and clip[1] == pytest.approx(eps0 * 0.96**2)
    assert clip[200] == pytest.approx(eps0 * 0.96**201, rel=1e-4)
    assert clip[201] == clip[200] == clip[999]
    cfg.agent.clip_decay_first = False  # the paper's Eq. 16: eps_0 sigma^i
    assert float(bppo.clip_at(jnp.int32(0), cfg)) == pytest.approx(eps0)
    assert float(bppo.clip_at(jnp.int32(200), cfg)) == pytest.approx(eps0 * 0.96**200, rel=1e-4)
    assert lr[0] == lr[1] == pytest.approx(lr0)
    assert lr[2] == lr[3] == pytest.approx(lr0 * 0.98)
    assert lr[200] == pytest.approx(lr0 * 0.98**100, rel=1e-4)
    assert lr[201] == lr[200] == lr[999]


def test_mc_returns_reset_at_episode_ends_and_timeouts():
    g = 0.9
    eps = [
        dict(observations=np.zeros((4, 1)), actions=np.zeros((3, 1)), rewards=[1.0, 2.0, 3.0],
             terminations=[0, 0, 1], truncations=[0, 0, 0]),  # terminal
        dict(observations=np.zeros((3, 1)), actions=np.zeros((2, 1)), rewards=[10.0, 20.0],
             terminations=[0, 0], truncations=[0, 1]),  # timeout
        dict(observations=np.zeros((3, 1)), actions=np.zeros((2, 1)), rewards=[5.0, 7.0],
             terminations=[0, 0], truncations=[0, 0]),  # collection stopped: treated as a timeout
    ]
    arrays, _, _ = episodes_to_transitions(eps, discount=g)
    expected = [1 + g * 2 + g * g * 3, 2 + g * 3, 3, 10 + g * 20, 20, 5 + g * 7, 7]
    np.testing.assert_allclose(arrays["returns"], expected, rtol=1e-6)
    np.testing.assert_array_equal(arrays["terminals"], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(arrays["timeouts"], [0, 0, 0, 0, 1, 0, 1])


# ----------------------------------------------------------------------------- the pipeline on tiny data
# Compilation dominates on CPU, so stages 1-3 are compiled once (2 seeds, vmapped) and every
# improvement-stage test starts from their result with its own variant of stage 4.
SEEDS = jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)])
CHUNK = 10


def _trainer(data, **over):
    cfg = tiny_config("bppo", steps=CHUNK, **{"agent.v_lr": 3e-3, "agent.q_lr": 3e-3, "agent.bc_lr": 3e-3, **over})
    return cfg, make_train(bppo.ALGORITHM, cfg, data)


@pytest.fixture(scope="module")
def pipeline(tiny_dataset):
    """Stages 1-3 trained for 30 chunks each: (data, carry, {loss: (first chunk, last chunk)})."""
    data, _ = load_dataset(tiny_dataset)
    _, tr = _trainer(data)
    _, run = tr.vmapped()
    # seeds initialised one by one and stacked: the vmapped orthogonal init compiles far slower on CPU
    init = jax.jit(tr.init)
    carry = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[init(k) for k in SEEDS])
    losses = {}
    for stage, name in (("value", "v_loss"), ("q", "q_loss"), ("bc", "bc_loss")):
        for c in range(30):
            carry, m = run(carry, data, stage, c * CHUNK, CHUNK)
            if c == 0:
                first = np.asarray(m[name])
        losses[name] = (first, np.asarray(m[name]))
    return data, carry, losses


@pytest.mark.parametrize("name", ["v_loss", "q_loss", "bc_loss"])
def test_value_q_and_bc_stages_reduce_their_losses(pipeline, name):
    first, last = pipeline[2][name]
    assert (last < 0.7 * first).all(), (name, first, last)


def test_onestep_never_changes_pi_k_iterative_moves_q_and_schedules_drive_the_step(pipeline):
    data, carry, _ = pipeline
    cfg, tr = _trainer(data, **{"agent.selection": "none", "agent.bppo_off": 2})
    _, run = tr.vmapped()
    q_steps0 = np.asarray(carry.state.q.step)
    ms = []
    for i in range(CHUNK):
        carry, m = run(carry, data, "improve", i, 1)
        ms.append(m)
    # step 0: pi = pi_k = pi_b, so both ratios are exactly 1
    np.testing.assert_allclose(np.asarray(ms[0]["ratio_pi_pik"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ms[0]["ratio_pik_pib"]), 1.0, rtol=1e-6)
    for i in (0, 1, 2, 3):  # the metrics and the optimiser see eps_i and lr_i of the stage-local step
        np.testing.assert_allclose(np.asarray(ms[i]["clip_eps"]), cfg.agent.clip_eps * 0.96 ** (i + 1), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(ms[i]["pi_lr"]), cfg.agent.pi_lr * 0.98 ** (i // 2), rtol=1e-5)
    # the decay is the optimiser's schedule: the injected base rate stays pi_lr, the schedule counts the steps
    np.testing.assert_allclose(np.asarray(learning_rate_of(carry.state.pi.opt_state)), cfg.agent.pi_lr, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(carry.state.pi.opt_state[-1].count), CHUNK)
    s = carry.state
    same = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), s.pi_k, s.bc.params)
    assert all(jax.tree_util.tree_leaves(same))  # Onestep: pi_k is pi_b throughout
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.array_equal(a, b)), s.pi.params, s.pi_k)
    assert not all(jax.tree_util.tree_leaves(moved))
    np.testing.assert_array_equal(np.asarray(s.replacements), 0)
    np.testing.assert_array_equal(np.asarray(s.q.step), q_steps0 + 2 * CHUNK)  # 2 off-policy Q steps per policy step
    assert bool(np.asarray(s.improving).all()) and np.isfinite(np.asarray(ms[-1]["pi_loss"])).all()


def _kernel(params, seed):
    return params["params"]["MLP_0"]["Dense_0"]["kernel"][seed]


def test_offline_selection_runs_in_graph_vmapped(pipeline):
    data, carry, _ = pipeline
    _, tr = _trainer(data, **{"agent.selection": "offline", "agent.select_interval": 2})
    _, run = tr.vmapped()
    carry, m = run(carry, data, "improve", 0, CHUNK)
    reps = np.asarray(carry.state.replacements)
    assert reps.shape == (2,) and (reps >= 0).all() and (reps <= CHUNK // 2).all()  # one check per 2 steps
    assert np.isfinite(np.asarray(m["j_offline_pi"])).all()
    # where pi_k was replaced it is no longer pi_b
    moved = [not bool(jnp.array_equal(_kernel(carry.state.pi_k, i), _kernel(carry.state.bc.params, i))) for i in range(2)]
    assert moved == [r > 0 for r in reps]


@pytest.fixture(scope="module")
def online(pipeline):
    cfg, tr = _trainer(pipeline[0], **{"agent.select_interval": 5, "agent.select_episodes": 1})
    return cfg, tr.vmapped()[1]


def test_online_selection_replaces_per_seed_where_the_score_beats_the_best(pipeline, online):
    data, carry, _ = pipeline
    cfg, run = online
    scores = iter([np.array([3.0, 3.0]), np.array([5.0, 1.0]), np.array([4.0, 7.0])])
    calls = []

    def evaluate(states, num_episodes=None, base_seed=None):
        calls.append((num_episodes, base_seed))
        return types.SimpleNamespace(raw=next(scores))

    ctx = types.SimpleNamespace(exp=types.SimpleNamespace(config=cfg), evaluate=evaluate)
    st = bppo.after_chunk(carry.state, ctx, "bc", CHUNK)  # end of BC: pi_b's score is the best so far
    np.testing.assert_allclose(np.asarray(st.best_score), [3.0, 3.0])
    carry, _ = run(carry._replace(state=st), data, "improve", 0, 5)
    assert bppo.after_chunk(carry.state, ctx, "improve", 3) is carry.state  # not a selection step
    st = bppo.after_chunk(carry.state, ctx, "improve", 5)  # seed 0 improves (5 > 3), seed 1 does not
    np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 3.0])
    np.testing.assert_array_equal(np.asarray(st.replacements), [1, 0])
    assert jnp.array_equal(_kernel(st.pi_k, 0), _kernel(st.pi.params, 0))
    assert jnp.array_equal(_kernel(st.pi_k, 1), _kernel(st.bc.params, 1))
    carry, _ = run(carry._replace(state=st), data, "improve", 5, 5)
    st = bppo.after_chunk(carry.state, ctx, "improve", CHUNK)  # 4 < 5 for seed 0, 7 > 3 for seed 1
    np.testing.assert_array_equal(np.asarray(st.replacements), [1, 1])
    np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 7.0])
    assert len(set(calls)) == 1 and calls[0][0] == cfg.agent.select_episodes == 1  # paired: the same episodes every time


def test_online_selection_with_real_rollouts_and_runner_chunk_plan(pipeline, online):
    from offrl.evaluation import make_policy_fn
    from offrl.runner import EvalContext, _plan, prepare

    data, carry, _ = pipeline
    cfg, run = online
    ctx = EvalContext(prepare(cfg), make_policy_fn(bppo.ALGORITHM, cfg))
    st = bppo.after_chunk(carry.state, ctx, "bc", CHUNK)
    assert np.isfinite(np.asarray(st.best_score)).all()
    carry, _ = run(carry._replace(state=st), data, "improve", 0, 5)
    st = bppo.after_chunk(carry.state, ctx, "improve", 5)
    assert st.best_score.shape == (2,) and (np.asarray(st.best_score) >= np.asarray(carry.state.best_score)).all()
    # the runner cuts the improvement stage every select_interval updates for the hook, without
    # changing when it evaluates; the result names the variant
    assert [c for c in _plan(bppo.stages(cfg), 4, bppo.chunk_every(cfg)) if c[0] == "improve"] == [
        ("improve", 0, 4), ("improve", 4, 1), ("improve", 5, 3), ("improve", 8, 2)]
    # the improvement begins (once, at its step 0) with pi and pi_k from pi_b; no other stage has a begin
    assert {st.name: st.begin for st in bppo.stages(cfg)} == {"value": None, "q": None, "bc": None,
                                                               "improve": bppo._start_improvement}
    assert bppo.variant(cfg) == "BPPO (online selection every 5 step(s))"
    cfg.agent.selection = "none"
    assert bppo.chunk_every(cfg) == {"bc": 2000} and bppo.variant(cfg) == "Onestep BPPO"  # BC checkpoint choice only


def test_validate_rejects_bad_values():
    for key, val in (("selection", "sometimes"), ("omega", 1.5), ("select_interval", 0), ("clip_decay", 0.0), ("bppo_off", -1)):
        cfg = tiny_config("bppo")
        cfg.agent[key] = val
        with pytest.raises(ValueError, match=key):
            bppo.validate(cfg)
    bppo.validate(tiny_config("bppo"))


def test_launcher_flag_dataset_gets_table6_clip():
    """`--config.dataset=` on the launcher applies the dataset's settings (hopper-medium-replay: clip 0.1);
    an explicit flag keeps its value."""
    import subprocess
    import sys

    from conftest import ROOT

    args = [sys.executable, "-m", "offrl", "--config=bppo", "--config.dataset=offrl/hopper/medium-replay-v0",
            "--config.agent.omega=0.5", "--print_config"]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if line.strip().startswith("agent.")}
    assert rows["agent.clip_eps"] == "0.1" and rows["agent.omega"] == "0.5"



def test_best_pik_reaches_results_json_next_to_the_last_iterate(tiny_dataset, tmp_path):
    """``report_best_pik`` puts the online-selected pi_k's score in results.json / results.md under
    its own name (Algorithm.extra_scores); the score stays the last iterate's. With pi_lr = 0 the
    iterate never beats pi_b, so pi_k = pi_b = the last iterate, and on the final evaluation's
    episodes its per-seed returns equal the reported ones exactly. Off, no extra score."""
    import json
    import os

    from offrl.runner import _summary, run_experiment

    cfg = tiny_config("bppo", steps=3, **{"agent.report_best_pik": True, "agent.pi_lr": 0.0,
                                          "agent.select_episodes": 1, "report_last": 1})
    wd = str(tmp_path / "run")
    run_experiment(cfg, wd, out=open(os.devnull, "w"))
    res = json.load(open(os.path.join(wd, "results.json")))
    md = open(os.path.join(wd, "results.md")).read()
    best = res["extra_scores"]["best_pik"]
    assert np.isfinite(best["per_seed_raw"]).all() and len(best["per_seed_raw"]) == cfg.num_seeds
    np.testing.assert_allclose(best["per_seed_raw"], res["per_seed_raw"], rtol=1e-6)
    np.testing.assert_allclose(best["normalized_mean"], res["normalized_mean"], rtol=1e-6)
    assert "extra score `best_pik`" in md and "not the reported score" in md
    # off: the algorithm reports no extra score, so the row has none (a whole second run adds nothing)
    cfg.agent.report_best_pik = False
    state = jax.jit(make_train(bppo.ALGORITHM, cfg, load_dataset(tiny_dataset)[0]).init)(SEEDS[0])
    assert bppo.ALGORITHM.extra_scores(state, cfg) == {}
    from offrl.runner import prepare

    evals = [{"global_step": 3, "stage": "improve", "raw": res["per_seed_raw"], "normalized": res["per_seed_normalized"]}]
    row = _summary(prepare(cfg), evals, {}, slice(0, 2), {}, bppo.ALGORITHM.extra_scores(state, cfg))
    assert "extra_scores" not in row and row["per_seed_raw"] == res["per_seed_raw"]


@pytest.mark.parametrize("every", [5, 0])
def test_pi_b_is_the_best_scoring_bc_iterate_when_bc_selection_is_on(pipeline, every):
    """bc_select_every > 0 (the reference's default, 2000): BC iterates are scored online every
    ``every`` updates and at the end of BC, and the best one per seed becomes pi_b (and its score
    the improvement stage's first best); 0: pi_b is the last iterate."""
    data, carry, _ = pipeline
    cfg, tr = _trainer(data, **{"agent.bc_select_every": every, "agent.select_episodes": 1})
    _, run = tr.vmapped()
    assert bppo.chunk_every(cfg) == ({"bc": 5, "improve": 1} if every else {"improve": 1})
    scores = iter([np.array([5.0, 1.0]), np.array([3.0, 2.0])])
    calls = []

    def evaluate(states, num_episodes=None, base_seed=None):
        calls.append((num_episodes, base_seed))
        return types.SimpleNamespace(raw=next(scores))

    ctx = types.SimpleNamespace(exp=types.SimpleNamespace(config=cfg), evaluate=evaluate)
    carry, _ = run(carry, data, "bc", 0, 5)
    st = bppo.after_chunk(carry.state, ctx, "bc", 5)
    mid = st.bc.params  # seed 0's best iterate (5 > 1 ... and the later 3 < 5)
    assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(carry.state.bc.params, 0))  # BC training itself untouched
    carry, _ = run(carry._replace(state=st), data, "bc", 5, 5)
    last = carry.state.bc.params
    assert not jnp.array_equal(_kernel(last, 0), _kernel(mid, 0))
    st = bppo.after_chunk(carry.state, ctx, "bc", CHUNK)  # the end of BC (bc_steps = CHUNK)
    if every:
        assert len(calls) == 2 and len(set(calls)) == 1  # paired checks on the same episodes
        assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(mid, 0))  # seed 0: 5 at update 5 beats 3 at the end
        assert jnp.array_equal(_kernel(st.bc.params, 1), _kernel(last, 1))  # seed 1: 2 at the end beats 1
        np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 2.0])  # pi_b's score starts online selection
    else:
        assert len(calls) == 1  # no BC checks; only pi_b's score for online selection
        assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(last, 0))
        assert jnp.array_equal(_kernel(st.bc.params, 1), _kernel(last, 1))
        np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 1.0])
    # the improvement stage starts from the chosen pi_b
    carry, _ = run(carry._replace(state=st), data, "improve", 0, 1)
    assert jnp.array_equal(_kernel(carry.state.pi_k, 0), _kernel(st.bc.params, 0))
