"""BPPO: the clipped surrogate, asymmetric weights and decay schedules by hand; MC returns; each
stage learning on tiny data; online / offline selection; Onestep never moving pi_k; the reference's
networks (ReLU outputs, PyTorch initialisation), BC checkpoint rule, selection episodes, timeout
rule and per-dataset settings."""
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


class FakeEvaluate:
    """``ctx.evaluate`` for the hooks: member m's k-th selection check scores ``scores[m][k]`` (as a
    normalised score); records (members evaluated, num_episodes, base_seed) of every call."""

    def __init__(self, cfg, scores):
        self.cfg, self.scores, self.calls = cfg, [iter(s) for s in scores], []

    def member(self, base_seed, num_episodes):
        ag = self.cfg.agent
        return (base_seed - self.cfg.eval_seed - ag.select_seed) // num_episodes - self.cfg.seed

    def __call__(self, states, num_episodes=None, base_seed=None):
        n = jax.tree_util.tree_leaves(states)[0].shape[0]
        self.calls.append((n, num_episodes, base_seed))
        members = range(n) if n > 1 else [self.member(base_seed, num_episodes)]
        val = np.array([next(self.scores[m]) for m in members])
        return types.SimpleNamespace(raw=100.0 * val, normalized=val)

    def ctx(self):
        return types.SimpleNamespace(exp=types.SimpleNamespace(config=self.cfg), evaluate=self)


def test_online_selection_replaces_per_seed_where_the_score_beats_the_best(pipeline, online):
    data, carry, _ = pipeline
    cfg, run = online
    fake = FakeEvaluate(cfg, [[3.0, 5.0, 4.0], [3.0, 1.0, 7.0]])
    ctx = fake.ctx()
    # the end of BC (update 10 of 10; no BC check beat 0, so pi_b = the last iterate): pi_b's score is the best so far
    st = bppo.after_chunk(carry.state, ctx, "bc", CHUNK - 1)
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
    # each seed plays its own episodes (the reference seeds its evaluation env with the run's seed),
    # the same at every check: one call per member, member m from eval_seed + select_seed + seed_m * E
    ag = cfg.agent
    bases = [cfg.eval_seed + ag.select_seed + (cfg.seed + m) * ag.select_episodes for m in range(2)]
    assert fake.calls == [(1, ag.select_episodes, b) for b in bases] * 3


def test_select_per_seed_off_plays_one_set_of_episodes_for_every_seed(pipeline, online):
    data, carry, _ = pipeline
    cfg, _ = online
    cfg.agent.select_per_seed = False
    try:
        fake = FakeEvaluate(cfg, [[2.0], [1.0]])
        score = bppo.select_score(carry.state, fake.ctx())
    finally:
        cfg.agent.select_per_seed = True
    np.testing.assert_allclose(np.asarray(score), [2.0, 1.0])
    assert fake.calls == [(2, cfg.agent.select_episodes, cfg.eval_seed + cfg.agent.select_seed)]


def test_online_selection_with_real_rollouts_and_runner_chunk_plan(pipeline, online):
    from offrl.evaluation import make_policy_fn
    from offrl.runner import EvalContext, _plan, prepare

    data, carry, _ = pipeline
    cfg, run = online
    ctx = EvalContext(prepare(cfg), make_policy_fn(bppo.ALGORITHM, cfg))
    st = bppo.after_chunk(carry.state, ctx, "bc", CHUNK - 1)  # the end of BC: update 10 of 10
    assert np.isfinite(np.asarray(st.best_score)).all()
    carry, _ = run(carry._replace(state=st), data, "improve", 0, 5)
    st = bppo.after_chunk(carry.state, ctx, "improve", 5)
    assert st.best_score.shape == (2,) and (np.asarray(st.best_score) >= np.asarray(carry.state.best_score)).all()
    # the runner cuts the improvement stage every select_interval updates for the hook, without
    # changing when it evaluates; the result names the variant
    assert [c for c in _plan(bppo.stages(cfg), 4, bppo.chunk_every(cfg)) if c[0] == "improve"] == [
        ("improve", 0, 4), ("improve", 4, 1), ("improve", 5, 3), ("improve", 8, 2)]
    # the improvement begins (once, at its step 0) with pi and pi_k from pi_b; no other stage has a begin
    assert {st.name: st.begin for st in bppo.stages(cfg)} == {"value": None, "q": None, "bc_first": None, "bc": None,
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


def _bc_chunks(cfg):
    """The runner's chunks of BC (stage, start, length) for ``cfg``."""
    from offrl.runner import _plan

    return [c for c in _plan(bppo.stages(cfg), cfg.eval_interval, bppo.chunk_every(cfg)) if c[0] in ("bc_first", "bc")]


def test_bc_checks_follow_updates_1_n_plus_1_and_skip_the_last():
    """The reference scores its BC policy after the update of every step with step % log_freq == 0:
    after updates 1, 2001, ..., 498001 of 5e5, never after the last one. BC's first update is a
    stage of its own so that the runner's cuts (multiples of N) fall there."""
    cfg = tiny_config("bppo", steps=10)
    cfg.agent.bc_steps, cfg.agent.bc_select_every, cfg.eval_interval = 500_000, 2000, 10_000
    ends = [(name, start + length) for name, start, length in _bc_chunks(cfg)]
    checked = []
    for name, step in ends:
        updates = step + (name == "bc")
        if (updates - 1) % cfg.agent.bc_select_every == 0:
            checked.append(updates)
    assert ends[0] == ("bc_first", 1) and ends[-1] == ("bc", 499_999)  # 1 + 499,999 = 5e5 BC updates
    assert checked == list(range(1, 500_000, 2000)) and checked[-1] == 498_001
    assert bppo.final_eval_seed(cfg) == cfg.eval_seed + 1000 * (50 + 1 - 1)  # bc: 50 evaluations, improve: 1


@pytest.mark.parametrize("every", [5, 0])
def test_pi_b_is_the_best_bc_iterate_above_zero(pipeline, every):
    """bc_select_every = N > 0 (the reference's default, 2000): BC iterates are scored online after
    updates 1, N+1, 2N+1, ... (not after the last), kept per seed where they beat the best so far,
    which starts at a normalised score of 0, and the kept one becomes pi_b (its score the improvement
    stage's first best); a seed whose checks never beat 0 keeps its last iterate. 0: the last iterate."""
    data, carry, _ = pipeline
    cfg, tr = _trainer(data, **{"agent.bc_select_every": every, "agent.select_episodes": 1})
    _, run = tr.vmapped()
    assert bppo.chunk_every(cfg) == ({"bc": 5, "improve": 1} if every else {"improve": 1})
    # seed 0: 5 after update 1, 3 after update 6; seed 1: -1, then 0 (never above 0); then pi_b's score
    fake = FakeEvaluate(cfg, [[5.0, 3.0, 9.0], [-1.0, 0.0, 2.5]] if every else [[4.0], [2.5]])
    ctx = fake.ctx()
    assert [c for c in _bc_chunks(cfg)] == ([("bc_first", 0, 1), ("bc", 0, 5), ("bc", 5, 4)] if every
                                           else [("bc_first", 0, 1), ("bc", 0, 9)])
    carry, _ = run(carry, data, "bc_first", 0, 1)
    st = bppo.after_chunk(carry.state, ctx, "bc_first", 1)
    first = st.bc.params
    assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(carry.state.bc.params, 0))  # BC training itself untouched
    for start, length in ((0, 5), (5, 4)):
        carry, _ = run(carry._replace(state=st), data, "bc", start, length)
        st = bppo.after_chunk(carry.state, ctx, "bc", start + length)
    last = carry.state.bc.params  # after the 10th and last update (bc_steps = CHUNK)
    assert not jnp.array_equal(_kernel(last, 0), _kernel(first, 0))
    if every:
        assert len(fake.calls) == 6  # 2 checks x 2 members (none after the last update), then pi_b's score
        assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(first, 0))  # seed 0: 5 after update 1 beats 3
        assert jnp.array_equal(_kernel(st.bc.params, 1), _kernel(last, 1))  # seed 1: -1 and 0 never beat 0
        # pi_b's score starts online selection: seed 0's kept score, seed 1's last iterate measured at the end
        np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 2.5])
    else:
        assert len(fake.calls) == 2  # no BC checks; only pi_b's score for online selection
        assert jnp.array_equal(_kernel(st.bc.params, 0), _kernel(last, 0))
        assert jnp.array_equal(_kernel(st.bc.params, 1), _kernel(last, 1))
        np.testing.assert_allclose(np.asarray(st.best_score), [4.0, 2.5])
    # the improvement stage starts from the chosen pi_b
    carry, _ = run(carry._replace(state=st), data, "improve", 0, 1)
    assert jnp.array_equal(_kernel(carry.state.pi_k, 0), _kernel(st.bc.params, 0))


# ----------------------------------------------------------------------------- the reference's networks
def _small_state(**agent):
    from offrl.algos import Spec

    cfg = tiny_config("bppo", **{f"agent.{k}": v for k, v in agent.items()})
    cfg.agent.v_hidden_dims, cfg.agent.q_hidden_dims, cfg.agent.pi_hidden_dims = (64, 48), (64, 48), (64, 48)
    return cfg, bppo.init(jax.random.PRNGKey(3), Spec(11, 3), cfg)


def test_value_and_q_end_in_a_relu_by_default():
    """net.py's ValueMLP and QMLP end in nn.ReLU: V, Q >= 0. With a large negative output bias the
    default networks output exactly 0; without the ReLU (value_relu_output=False) they go negative."""
    obs, act = jax.random.normal(jax.random.PRNGKey(0), (7, 11)), jax.random.normal(jax.random.PRNGKey(1), (7, 3))
    for relu in (True, False):
        cfg, st = _small_state() if relu else _small_state(value_relu_output=False)
        assert cfg.agent.value_relu_output is relu
        for ts, args in ((st.value, (obs,)), (st.q, (obs, act))):
            p = jax.tree_util.tree_map(lambda x: x, ts.params)
            last = p["params"]["MLP_0"]["Dense_2"]
            last["bias"] = last["bias"] - 100.0
            out = np.asarray(ts.apply_fn(p, *args))
            assert (out == 0.0).all() if relu else (out < -50.0).all()


def test_pytorch_default_initialisation():
    """V and Q: every layer's kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch.nn.Linear's
    reset_parameters: kaiming_uniform(a=sqrt(5)) for the weight, the same bound for the bias).
    Policy: orthogonal kernels (gain 1), biases from the same uniform (utils.orthogonal_initWeights
    touches only tensors of rank >= 2). torch_init=False: Flax's LeCun-normal kernels and zero biases."""
    _, st = _small_state()
    for ts in (st.value, st.q):
        layers = ts.params["params"]["MLP_0"]
        for name in ("Dense_0", "Dense_1", "Dense_2"):
            k, b = np.asarray(layers[name]["kernel"]), np.asarray(layers[name]["bias"])
            bound = 1.0 / np.sqrt(k.shape[0])
            assert np.abs(k).max() <= bound and np.abs(b).max() <= bound and (b != 0).all()
            if k.size >= 500:  # a uniform's std is bound / sqrt(3) (LeCun normal's: 1/sqrt(fan_in), 1.7x that)
                assert np.abs(k).max() > 0.95 * bound
                np.testing.assert_allclose(k.std(), bound / np.sqrt(3.0), rtol=0.1)
            if b.size >= 48:
                np.testing.assert_allclose(b.std(), bound / np.sqrt(3.0), rtol=0.3)
    pol = st.bc.params["params"]["MLP_0"]
    for name in ("Dense_0", "Dense_1", "Dense_2"):
        k, b = np.asarray(pol[name]["kernel"], np.float64), np.asarray(pol[name]["bias"])
        gram = k.T @ k if k.shape[0] > k.shape[1] else k @ k.T
        np.testing.assert_allclose(gram, np.eye(min(k.shape)), atol=1e-4)  # orthogonal, gain 1
        bound = 1.0 / np.sqrt(k.shape[0])
        assert np.abs(b).max() <= bound and (b != 0).all()  # not zero: PyTorch's bias init
        if b.size >= 48:
            np.testing.assert_allclose(b.std(), bound / np.sqrt(3.0), rtol=0.3)
    # pi starts as pi_b's parameters
    assert jnp.array_equal(st.pi.params["params"]["MLP_0"]["Dense_0"]["bias"], pol["Dense_0"]["bias"])
    _, flax_st = _small_state(torch_init=False)
    assert not np.asarray(flax_st.value.params["params"]["MLP_0"]["Dense_0"]["bias"]).any()
    assert not np.asarray(flax_st.bc.params["params"]["MLP_0"]["Dense_1"]["bias"]).any()


# ----------------------------------------------------------------------------- timeouts end Q's backup
def test_sarsa_backup_treats_a_timeout_as_terminal():
    """A dataset whose last episode ends in a timeout: the reference's buffer sets
    not_done = 1 - (terminal | timeout), so that transition's SARSA target is r alone (no
    Q_targ(s', a') term); bootstrap_timeouts=True bootstraps it."""
    from conftest import np_mlp
    from test_baselines import _layers

    from offrl.data.dataset import ARRAY_FIELDS, Transitions

    rng = np.random.default_rng(0)

    def episode(t, term, trunc):
        return dict(observations=rng.normal(size=(t + 1, 11)), actions=rng.uniform(-1, 1, (t, 3)), rewards=rng.uniform(1, 2, t),
                    terminations=[0] * (t - 1) + [term], truncations=[0] * (t - 1) + [trunc])

    arrays, _, _ = episodes_to_transitions([episode(3, 1, 0), episode(4, 0, 1)], discount=0.99)
    data = Transitions(**{k: jnp.asarray(arrays[k]) for k in ARRAY_FIELDS})
    assert float(data.timeouts[-1]) == 1.0 and float(data.terminals[-1]) == 0.0

    def loss(bootstrap_timeouts):
        cfg, st = _small_state(bootstrap_timeouts=bootstrap_timeouts, q_target_every=1)
        cfg.discount = 0.9
        st = st.replace(q_target=jax.tree_util.tree_map(lambda x: 0.5 * x + 0.1, st.q.params))  # target != online
        _, m = bppo.q_update(st, data, None, 0, cfg)

        def q_np(params, o, a):
            return np.maximum(np_mlp(_layers(params["params"]["MLP_0"]), np.concatenate([o, a], -1).astype(np.float64))[:, 0], 0.0)

        assert q_np(st.q_target, np.asarray(data.next_observations), np.asarray(data.next_actions))[-1] > 0  # a term to drop
        done = np.asarray(data.terminals) if bootstrap_timeouts else np.maximum(np.asarray(data.terminals), np.asarray(data.timeouts))
        y = np.asarray(data.rewards) + 0.9 * (1 - done) * q_np(st.q_target, np.asarray(data.next_observations), np.asarray(data.next_actions))
        np.testing.assert_allclose(float(m["q_loss"]), np.mean((q_np(st.q.params, np.asarray(data.observations), np.asarray(data.actions)) - y) ** 2), rtol=1e-5)
        return float(m["q_loss"])

    assert bppo.default_agent_config().bootstrap_timeouts is False  # the reference's rule is the default
    assert loss(False) != loss(True)  # the timeout row's target differs: the test sees the mask


# ----------------------------------------------------------------------------- per-dataset settings
def test_presets_default_to_the_papers_settings_and_tips_are_a_switch():
    """The settings behind the paper's numbers (Appendix K, main.py's defaults) are the default for
    every path, the tables included (reproduce.py: get_config() then cfg.dataset = ...); the code
    comments' tips apply only with agent.code_tips (the ``tips`` word)."""
    from configs.bppo import get_config

    cfg = get_config()
    cfg.dataset = "offrl/hopper/medium-v0"  # as experiments/reproduce.py sets a cell's dataset
    ag = cfg.agent
    assert (ag.entropy_weight, ag.v_steps, ag.q_steps, ag.bc_steps, cfg.normalize_obs) == (0.0, 2_000_000, 2_000_000, 500_000, False)
    assert cfg.num_steps == 4_501_000 and "reference defaults" in ag.dataset_settings
    tips = get_config("tips,hopper-medium-v2")
    assert (tips.agent.entropy_weight, tips.agent.v_steps, tips.agent.q_steps, tips.agent.bc_steps) == (0.01, 200_000, 200_000, 50_000)
    assert tips.normalize_obs is False and tips.num_steps == 451_000
    cfg.agent.code_tips = True  # the switch follows like the dataset does
    cfg.dataset = "offrl/hopper/medium-replay-v0"
    assert cfg.normalize_obs is True and cfg.agent.entropy_weight == 0.0 and cfg.agent.clip_eps == 0.1
