"""BPPO, Onestep RL, IQL and BC against hand computations on fixed tiny batches, and their
defaults against the reference codes their docstrings name.

Each loss is recomputed in NumPy from the networks' weights, with target parameters made
different from the online ones and next states/actions different from the current ones, so a
term evaluated at the wrong state, with the wrong parameters, the wrong action or without its
terminal mask changes the number.
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import np_mlp
from test_baselines import _batch, _layers
from offrl.algos import Spec, bc, bppo, iql, onestep

LOG_2PI = math.log(2 * math.pi)
OBS, ACT = 3, 2


def np_logp(x, mean, log_std):
    z = (x - mean) * np.exp(-log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * LOG_2PI, axis=-1)


def perturb(tree, scale=0.7, shift=0.05):
    return jax.tree_util.tree_map(lambda x: scale * x + shift, tree)


def critic_np(params, *inputs):
    return np_mlp(_layers(params["params"]["MLP_0"]), np.concatenate([np.asarray(x, np.float64) for x in inputs], -1))[:, 0]


def timeout_batch():
    """_batch with one terminal, one timeout and one transition that is neither."""
    b = _batch()
    return b._replace(timeouts=jnp.asarray([0.0, 0.0, 1.0, 0.0, 0.0, 1.0]))


# ============================================================================ BPPO
def bppo_setup(**agent):
    ag = bppo.default_agent_config()
    ag.v_hidden_dims, ag.q_hidden_dims, ag.pi_hidden_dims = (5,), (5,), (5,)
    ag.update(agent)
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=ag))
    state = bppo.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    return cfg, state


def bppo_critic_np(params, *inputs):
    """BPPO's V and Q: the MLP, then the ReLU that ends the reference's ValueMLP and QMLP."""
    return np.maximum(critic_np(params, *inputs), 0.0)


def bppo_policy_np(params, obs):
    out = np.tanh(np_mlp(_layers(params["params"]["MLP_0"]), np.asarray(obs, np.float64)))
    return out[:, :ACT], -5.0 + 2.5 * (out[:, ACT:] + 1.0)


@pytest.mark.parametrize("bootstrap_timeouts", [False, True])
def test_bppo_sarsa_step_by_hand(bootstrap_timeouts):
    cfg, state = bppo_setup(bootstrap_timeouts=bootstrap_timeouts, q_target_every=1)
    state = state.replace(q_target=perturb(state.q.params))
    batch = timeout_batch()
    new, m = bppo.q_update(state, batch, None, 0, cfg)
    o, a, o2, a2 = (np.asarray(x, np.float64) for x in (batch.observations, batch.actions, batch.next_observations, batch.next_actions))
    done = np.asarray(batch.terminals) if bootstrap_timeouts else np.maximum(np.asarray(batch.terminals), np.asarray(batch.timeouts))
    y = np.asarray(batch.rewards) + 0.9 * (1 - done) * bppo_critic_np(state.q_target, o2, a2)  # target net at (s', a'_data)
    q = bppo_critic_np(state.q.params, o, a)  # online net at (s, a)
    np.testing.assert_allclose(float(m["q_loss"]), np.mean((q - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(m["q"]), q.mean(), rtol=1e-5)
    # Polyak towards the new online parameters (every step here)
    exp = jax.tree_util.tree_map(lambda t, o: 0.995 * t + 0.005 * o, state.q_target, new.q.params)
    for x, y_ in zip(jax.tree_util.tree_leaves(new.q_target), jax.tree_util.tree_leaves(exp)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y_), rtol=1e-6)


def test_bppo_target_moves_only_every_second_step():
    cfg, state = bppo_setup()  # q_target_every = 2, as the reference's target_update_freq
    batch = _batch()
    s1, _ = bppo.q_update(state, batch, None, 0, cfg)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(s1.q_target), jax.tree_util.tree_leaves(state.q_target)))
    s2, _ = bppo.q_update(s1, batch, None, 1, cfg)
    exp = jax.tree_util.tree_map(lambda t, o: 0.995 * t + 0.005 * o, s1.q_target, s2.q.params)
    for x, y in zip(jax.tree_util.tree_leaves(s2.q_target), jax.tree_util.tree_leaves(exp)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_bppo_value_and_bc_losses_by_hand():
    cfg, state = bppo_setup()
    batch = _batch()._replace(returns=jnp.asarray([1.0, 2.0, -1.0, 0.5, 3.0, 0.0]))
    _, m = bppo.value_update(state, batch, None, 0, cfg)
    v = bppo_critic_np(state.value.params, batch.observations)  # V at s, regressed on the return-to-go
    np.testing.assert_allclose(float(m["v_loss"]), np.mean((v - np.asarray(batch.returns)) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(m["v"]), v.mean(), rtol=1e-5)
    _, m = bppo.bc_update(state, batch, None, 0, cfg)
    mean, log_std = bppo_policy_np(state.bc.params, batch.observations)
    np.testing.assert_allclose(float(m["bc_loss"]), -np.mean(np_logp(np.asarray(batch.actions), mean, log_std)), rtol=1e-5)
    np.testing.assert_allclose(float(m["bc_std"]), np.exp(log_std).mean(), rtol=1e-5)


def test_bppo_policy_loss_by_hand():
    cfg, state = bppo_setup(entropy_weight=0.1, omega=0.8)
    state = state.replace(pi_k=perturb(state.bc.params, 1.0, 0.003), q_target=perturb(state.q.params))
    obs = _batch(b=8, seed=3).observations
    key, eps = jax.random.PRNGKey(7), 0.05
    loss, info = bppo.policy_loss(state.pi.params, state, obs, key, eps, cfg)
    o = np.asarray(obs, np.float64)
    mk, lk = bppo_policy_np(state.pi_k, o)
    a = mk + np.exp(lk) * np.asarray(jax.random.normal(key, mk.shape), np.float64)  # a ~ pi_k(.|s)
    adv = bppo_critic_np(state.q.params, o, a) - bppo_critic_np(state.value.params, o)  # online Q, not the target
    adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-10)
    adv = np.where(adv > 0, 0.8, 0.2) * adv
    mean, log_std = bppo_policy_np(state.pi.params, o)
    ratio = np.exp(np_logp(a, mean, log_std) - np_logp(a, mk, lk))
    assert 0 < np.mean(np.abs(ratio - 1) > eps) < 1  # both sides of the clip are exercised
    surr = np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv)
    ent = np.sum(log_std + 0.5 * (1 + LOG_2PI), -1)
    np.testing.assert_allclose(float(loss), -np.mean(surr + 0.1 * ent), rtol=1e-4)
    np.testing.assert_allclose(float(info["ratio_pi_pik"]), ratio.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(info["pi_loss"]), float(loss), rtol=1e-6)
    np.testing.assert_allclose(float(info["clip_fraction"]), np.mean(np.abs(ratio - 1) > eps), rtol=1e-6)
    np.testing.assert_allclose(float(info["entropy"]), ent.mean(), rtol=1e-5)


def test_bppo_clip_schedule_follows_the_reference_or_the_paper():
    cfg, _ = bppo_setup(clip_eps=0.25, clip_decay=0.96)
    steps = jnp.asarray([0, 1, 199, 200, 201, 500])
    # reference: the clip is multiplied by sigma before steps 0..200 use it, then frozen
    np.testing.assert_allclose(np.asarray(bppo.clip_at(steps, cfg)), 0.25 * 0.96 ** np.asarray([1, 2, 200, 201, 201, 201]), rtol=1e-5)
    cfg.agent.clip_decay_first = False  # the paper's Eq. 16
    np.testing.assert_allclose(np.asarray(bppo.clip_at(steps, cfg)), 0.25 * 0.96 ** np.asarray([0, 1, 199, 200, 200, 200]), rtol=1e-5)
    # lr: StepLR(step_size=2, gamma=0.98) stepped after steps 0..200
    np.testing.assert_allclose(np.asarray(bppo.lr_at(steps, cfg)), 1e-4 * 0.98 ** np.asarray([0, 0, 99, 100, 100, 100]), rtol=1e-5)


def test_bppo_acts_with_pi_b_until_improvement_then_with_pi():
    cfg, state = bppo_setup()
    state = state.replace(pi=state.pi.replace(params=perturb(state.bc.params)))
    obs = _batch().observations
    np.testing.assert_allclose(np.asarray(bppo.act(state, obs, None, cfg)), bppo_policy_np(state.bc.params, obs)[0], rtol=1e-5)
    on = state.replace(improving=jnp.asarray(True))
    np.testing.assert_allclose(np.asarray(bppo.act(on, obs, None, cfg)), bppo_policy_np(on.pi.params, obs)[0], rtol=1e-5)
    pik = bppo.act_with_pik(on.replace(pi_k=perturb(state.bc.params, 1.2)))
    np.testing.assert_allclose(np.asarray(bppo.act(pik, obs, None, cfg)), bppo_policy_np(perturb(state.bc.params, 1.2), obs)[0], rtol=1e-5)


def test_bppo_improvement_starts_from_pi_b_and_offline_selection_keeps_the_better_policy():
    cfg, state = bppo_setup(selection="offline", select_interval=1)
    state = state.replace(pi=state.pi.replace(params=perturb(state.bc.params)), pi_k=perturb(state.bc.params, 2.0))
    batch = _batch(b=8)
    # the stage's begin (tests/test_bppo.py: the improvement stage begins with _start_improvement), then step 0
    _, m0 = bppo.improve_update(bppo._start_improvement(state), batch, jax.random.PRNGKey(1), jnp.asarray(0), cfg)
    np.testing.assert_allclose(float(m0["ratio_pi_pik"]), 1.0, rtol=1e-6)  # step 0: pi = pi_k = pi_b
    # later steps: of two policies far apart (pi moves by ~lr per step), the better one must end as pi_k
    p1, p2 = perturb(state.bc.params, 1.5, 0.1), perturb(state.bc.params, 0.5, -0.1)
    j1, j2 = (float(bppo.offline_score(state, p, batch.observations)) for p in (p1, p2))
    better, worse = (p1, p2) if j1 > j2 else (p2, p1)
    assert j1 != j2
    for pi, pik in ((better, worse), (worse, better)):
        s = state.replace(pi=state.pi.replace(params=pi), pi_k=pik, improving=jnp.asarray(True))
        s, m = bppo.improve_update(s, batch, jax.random.PRNGKey(2), jnp.asarray(3), cfg)
        want = s.pi.params if pi is better else pik
        assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(s.pi_k), jax.tree_util.tree_leaves(want)))
        assert int(s.replacements) == int(pi is better)
    # J(pi) = E_s Q(s, mean pi(s)) with the online Q
    o = np.asarray(batch.observations, np.float64)
    j = bppo_critic_np(state.q.params, o, bppo_policy_np(p1, o)[0]).mean()
    np.testing.assert_allclose(j1, j, rtol=1e-5)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _close(a, b, rtol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7)


def test_bppo_improvement_step_0_starts_pi_and_pi_k_from_pi_b_with_a_fresh_optimiser():
    cfg, state = bppo_setup(selection="none")
    batch = _batch(b=8)
    s1, _ = bppo.improve_update(state.replace(pi=state.pi.replace(params=perturb(state.bc.params))), batch,
                                jax.random.PRNGKey(1), jnp.asarray(3), cfg)  # a later step: no restart
    moved = s1.replace(bc=s1.bc.replace(params=perturb(state.bc.params, 0.9)))
    s, m = bppo.improve_update(bppo._start_improvement(moved), batch, jax.random.PRNGKey(1), jnp.asarray(0), cfg)
    assert bool(s.improving) and not bool(state.improving)
    assert _same(s.pi_k, moved.bc.params)  # pi_k = pi_b (Onestep keeps it)
    np.testing.assert_allclose(float(m["ratio_pi_pik"]), 1.0, rtol=1e-6)  # pi = pi_b when the loss is taken
    np.testing.assert_allclose(float(m["ratio_pik_pib"]), 1.0, rtol=1e-6)
    assert int(s.pi.step) == 1 and int(s.pi.opt_state[-1].count) == 1  # fresh optimiser, one step
    assert not _same(s.pi.params, moved.bc.params)


@pytest.mark.parametrize("actor", ["pi", "pi_k"])
def test_bppo_iterative_update_policy_step_then_q_steps_on_later_rows(actor):
    """improve_update = one policy step on the first B rows (key k_pi, eps_i), then N off-policy Q steps
    on rows B..2B, 2B..3B with a' ~ pi after its step (reference) or pi_k (paper), clipped to the box."""
    cfg, state = bppo_setup(bppo_off=2, selection="none", q_target_every=1, off_policy_actor=actor)
    # saturated means and wide stds, so that samples leave the box
    state = state.replace(pi=state.pi.replace(params=perturb(state.bc.params, 3.0, 0.3)), improving=jnp.asarray(True),
                          pi_k=perturb(state.bc.params, 3.5, 0.25), q_target=perturb(state.q.params))
    batch = _batch(b=10, seed=5)  # B = 10 // 3 = 3 rows per part; row 9 is left over
    key, step = jax.random.PRNGKey(3), jnp.asarray(5)
    new, m = bppo.improve_update(state, batch, key, step, cfg)
    k_pi, k_q = jax.random.split(key)
    g, _ = jax.grad(bppo.policy_loss, has_aux=True)(state.pi.params, state, batch.observations[:3], k_pi,
                                                   0.25 * 0.96**6, cfg)
    s = state.replace(pi=state.pi.apply_gradients(grads=g))
    clipped = 0
    for j, k in enumerate(jax.random.split(k_q, 2)):
        qb = jax.tree_util.tree_map(lambda x: x[3 + 3 * j : 6 + 3 * j], batch)
        mean, ls = bppo_policy_np(s.pi.params if actor == "pi" else state.pi_k, qb.next_observations)
        raw = mean + np.exp(ls) * np.asarray(jax.random.normal(k, mean.shape), np.float64)
        clipped += int((np.abs(raw) > 1).sum())
        s, _ = bppo._q_step(s, qb, jnp.asarray(np.clip(raw, -1, 1), jnp.float32), cfg)
    assert clipped > 0  # the box clip of a' is exercised
    _close(new.pi.params, s.pi.params)
    _close(new.q.params, s.q.params, rtol=1e-4)
    _close(new.q_target, s.q_target, rtol=1e-4)
    assert int(new.q.step) == int(state.q.step) + 2 and _same(new.pi_k, state.pi_k)
    np.testing.assert_allclose(float(m["clip_eps"]), 0.25 * 0.96**6, rtol=1e-5)
    np.testing.assert_allclose(float(m["pi_lr"]), 1e-4 * 0.98**2, rtol=1e-5)
    a, o = np.asarray(batch.actions[:3], np.float64), batch.observations[:3]
    log_kb = np_logp(a, *bppo_policy_np(state.pi_k, o)) - np_logp(a, *bppo_policy_np(state.bc.params, o))
    np.testing.assert_allclose(float(m["ratio_pik_pib"]), np.exp(log_kb).mean(), rtol=1e-4)
    np.testing.assert_allclose(float(m["log_ratio_pik_pib"]), log_kb.mean(), rtol=1e-4)
    assert float(m["replacements"]) == 0.0
    cfg.agent.off_policy_actor = "pi_b"
    with pytest.raises(ValueError, match="off_policy_actor"):
        bppo.validate(cfg)


def test_bppo_offline_selection_checks_every_select_interval_steps_and_needs_a_strictly_better_pi():
    cfg, state = bppo_setup(selection="offline", select_interval=3)
    batch = _batch(b=8)
    good, bad = perturb(state.bc.params, 1.5, 0.1), perturb(state.bc.params, 0.5, -0.1)
    if bppo.offline_score(state, good, batch.observations) < bppo.offline_score(state, bad, batch.observations):
        good, bad = bad, good
    s = state.replace(pi=state.pi.replace(params=good), pi_k=bad, improving=jnp.asarray(True))
    for step, checked in ((1, False), (2, True), (3, False), (5, True)):  # a check after steps 3, 6, ...: (i + 1) % 3 == 0
        out, m = bppo.improve_update(s, batch, jax.random.PRNGKey(2), jnp.asarray(step), cfg)
        assert int(out.replacements) == int(checked), step
        assert _same(out.pi_k, out.pi.params if checked else bad)
        np.testing.assert_allclose(float(m["j_offline_pi"]), float(bppo.offline_score(out, out.pi.params, batch.observations)), rtol=1e-5)
        np.testing.assert_allclose(float(m["j_offline_pik"]), float(bppo.offline_score(out, bad, batch.observations)), rtol=1e-5)
    # a tie (pi = pi_k, unmoved at lr 0) is no improvement: pi_k is not replaced
    cfg.agent.pi_lr = 0.0
    tie = state.replace(pi=bppo.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg).pi.replace(params=good), pi_k=good,
                        improving=jnp.asarray(True))
    out, m = bppo.improve_update(tie, batch, jax.random.PRNGKey(2), jnp.asarray(2), cfg)
    assert float(m["j_offline_pi"]) == float(m["j_offline_pik"]) and int(out.replacements) == 0


def _members(*trees):
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def test_bppo_after_chunk_chooses_pi_b_and_pi_k_per_seed_by_strictly_better_online_scores():
    import types

    # one set of selection episodes for both seeds here (select_per_seed=False); tests/test_bppo.py checks per-seed episodes
    cfg, state = bppo_setup(bc_steps=4, bc_select_every=2, pi_steps=5, select_interval=2, select_episodes=3, select_per_seed=False)
    cfg.update(dict(eval_seed=100, eval_interval=10, eval_episodes=5))
    assert bppo.chunk_every(cfg) == {"bc": 2, "improve": 2}
    A, B, C, D = (perturb(state.bc.params, 1.0 + 0.1 * i, 0.01 * i) for i in range(1, 5))
    st = _members(state, state)
    scores, calls = [], []

    def evaluate(states, num_episodes=None, base_seed=None):
        calls.append((num_episodes, base_seed))
        return types.SimpleNamespace(raw=np.asarray(scores.pop(0)), normalized=np.asarray([np.nan, np.nan]))

    ctx = types.SimpleNamespace(exp=types.SimpleNamespace(config=cfg), evaluate=evaluate)
    with_bc = lambda s, p: s.replace(bc=s.bc.replace(params=p))  # noqa: E731
    # BC's first update is the stage bc_first; checks follow updates 1, 3 (reference: step % log_freq == 0)
    assert bppo.after_chunk(with_bc(st, _members(A, A)), ctx, "bc", 1) .bc_best_score[0] == 0.0 and not calls  # update 2
    scores.append([5.0, 1.0])
    st = bppo.after_chunk(with_bc(st, _members(A, A)), ctx, "bc_first", 1)  # update 1
    assert _same(st.bc.params, _members(A, A)) and _same(st.bc_best, _members(A, A))
    scores.append([5.0, 2.0])  # update 3: a tie keeps the earlier iterate (seed 0), 2 > 1 takes B (seed 1)
    st = bppo.after_chunk(with_bc(st, _members(B, B)), ctx, "bc", 2)
    assert _same(st.bc_best, _members(A, B)) and _same(st.bc.params, _members(B, B))  # not the end of BC yet
    st = bppo.after_chunk(with_bc(st, _members(C, C)), ctx, "bc", 3)  # the end of BC (update 4): no check there
    assert _same(st.bc.params, _members(A, B)) and len(calls) == 2
    np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 2.0])  # pi_b's scores start the selection
    np.testing.assert_allclose(np.asarray(st.bc_best_score), [5.0, 2.0])
    with_pi = lambda s, p: s.replace(pi=s.pi.replace(params=p), improving=jnp.ones(2, bool))  # noqa: E731
    st = st.replace(pi_k=st.bc.params)
    assert bppo.after_chunk(with_pi(st, _members(C, C)), ctx, "improve", 1) .replacements.sum() == 0 and len(calls) == 2
    scores.append([4.0, 9.0])
    st = bppo.after_chunk(with_pi(st, _members(C, C)), ctx, "improve", 2)
    assert _same(st.pi_k, _members(A, C))  # 4 < 5 keeps seed 0's pi_k; 9 > 2 replaces seed 1's
    np.testing.assert_array_equal(np.asarray(st.replacements), [0, 1])
    np.testing.assert_allclose(np.asarray(st.best_score), [5.0, 9.0])
    scores.append([6.0, 9.0])
    st = bppo.after_chunk(with_pi(st, _members(D, D)), ctx, "improve", 5)  # the stage's end, though 5 % 2 != 0
    assert _same(st.pi_k, _members(D, C))  # 6 > 5 replaces; 9 = 9 does not (strictly better only)
    np.testing.assert_array_equal(np.asarray(st.replacements), [1, 1])
    np.testing.assert_allclose(np.asarray(st.best_score), [6.0, 9.0])
    assert calls == [(3, 100 + cfg.agent.select_seed)] * 4  # paired: the same episodes for every check
    assert np.isneginf(np.asarray(st.best_pik_raw)).all() and bppo.extra_scores(st, cfg) == {}
    cfg.agent.report_best_pik = True
    assert bppo.extra_scores(st, cfg).keys() == {"best_pik"}
    # off: no BC checks (pi_b = the last iterate) and, without online selection, no evaluation at all
    cfg.agent.update(dict(bc_select_every=0, selection="none", report_best_pik=False))
    assert bppo.chunk_every(cfg) == {}
    for stage, n in (("bc", 2), ("bc", 4), ("improve", 2), ("improve", 5)):
        assert bppo.after_chunk(st, ctx, stage, n) is st
    assert len(calls) == 4
    cfg.agent.selection = "online"
    scores.append([7.0, 8.0])
    out = bppo.after_chunk(with_bc(st, _members(B, C)), ctx, "bc", 3)  # the end of BC
    assert _same(out.bc.params, _members(B, C)) and len(calls) == 5  # one check: pi_b's score for the selection
    np.testing.assert_allclose(np.asarray(out.best_score), [7.0, 8.0])


def test_bppo_final_eval_seed_is_the_runners_last_evaluation():
    cfg = ml_collections.ConfigDict(dict(eval_seed=10_000, eval_interval=4, agent=dict(bc_steps=10, pi_steps=8)))
    # bc evaluates at 4, 8, 10; improve at 4, 8: the last of 5 evaluations has index 4
    assert bppo.final_eval_seed(cfg) == 10_000 + 4000
    cfg.agent.update(dict(bc_steps=0, pi_steps=3))  # a single evaluation (no BC stage): index 0
    assert bppo.final_eval_seed(cfg) == 10_000


def test_bppo_reports_the_best_pik_on_the_final_evaluations_episodes():
    import types

    cfg, state = bppo_setup(report_best_pik=True, pi_steps=4, bc_steps=4, select_episodes=3, select_per_seed=False)
    cfg.update(dict(eval_seed=100, eval_interval=2, eval_episodes=5))
    state = state.replace(pi=state.pi.replace(params=perturb(state.bc.params)), pi_k=perturb(state.bc.params, 1.1),
                          best_score=jnp.asarray(10.0), improving=jnp.asarray(True))
    calls = []

    def evaluate(st, num_episodes=None, base_seed=None):
        calls.append((st, num_episodes, base_seed))
        return types.SimpleNamespace(raw=np.asarray([4.0 if num_episodes == 3 else 7.0]), normalized=np.asarray([np.nan]))

    ctx = types.SimpleNamespace(exp=types.SimpleNamespace(config=cfg), evaluate=evaluate)
    out = bppo.after_chunk(state, ctx, "improve", 4)
    assert len(calls) == 2 and calls[0][1] == 3  # the selection check (4 < 10: pi_k kept), then pi_k's report
    st, n, seed = calls[1]
    assert n is None and seed == bppo.final_eval_seed(cfg) == 100 + 1000 * 3  # the runner's episodes and seeds
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(st.pi.params), jax.tree_util.tree_leaves(state.pi_k)))
    np.testing.assert_allclose(np.asarray(out.best_pik_raw), [7.0])
    assert np.isneginf(float(bppo.after_chunk(state, ctx, "improve", 2).best_pik_raw)) and len(calls) == 3  # only at the end
    cfg.agent.selection = "offline"
    with pytest.raises(ValueError, match="report_best_pik"):
        bppo.validate(cfg)


def test_bppo_dataset_settings_follow_the_dataset_wherever_it_is_set():
    from configs.bppo import get_config
    from configs.bppo_presets import bppo_dataset_settings

    c = get_config()
    c.dataset = "offrl/hopper/medium-replay-v0"  # as --config.dataset= or reproduce.py sets it
    assert c.agent.clip_eps == 0.1 and c.agent.omega == 0.9 and c.agent.entropy_weight == 0.0 and not c.normalize_obs
    assert c.num_steps == 2_000_000 + 2_000_000 + 500_000 + 1000
    c.agent.code_tips = True  # the reference's code-comment tips: for hopper-medium shorter pretraining, entropy 0.01
    c.dataset = "offrl/hopper/medium-v0"
    assert (c.agent.v_steps, c.agent.q_steps, c.agent.bc_steps, c.agent.clip_eps) == (200_000, 200_000, 50_000, 0.25)
    assert c.agent.entropy_weight == 0.01 and not c.normalize_obs and "hopper-medium-v2" in c.agent.dataset_settings
    c.agent.code_tips = False
    c.agent.clip_eps = 0.2  # an explicit setting keeps its value
    c.dataset = "offrl/hopper/medium-replay-v0"
    assert c.agent.clip_eps == 0.2 and c.agent.omega == 0.9
    a = get_config("cpu,antmaze-large-play-v2")  # a task word: Table 6's AntMaze row; 'cpu' keeps its shorter stages
    assert a.dataset == "offrl/antmaze/large-play-v0"
    assert (a.agent.pi_lr, a.agent.clip_eps, a.agent.omega, a.agent.pi_steps, a.agent.v_steps) == (1e-5, 0.5, 0.7, 100, 10_000)
    assert bppo_dataset_settings("/d4rl/pen-human-v1.hdf5")["agent.pi_lr"] == 1e-5  # a legacy D4RL file
    assert bppo_dataset_settings("pen-cloned-v1")["agent.pi_lr"] == 1e-4
    assert bppo_dataset_settings("kitchen-mixed-v0")["agent.omega"] == 0.7
    with pytest.raises(ValueError, match="unknown configs/bppo.py word"):
        get_config("fast")


def test_bppo_defaults_equal_the_reference_main_py():
    # github.com/Dragon-Zhuang/BPPO main.py argparse defaults
    ag = bppo.default_agent_config()
    assert (ag.v_steps, ag.v_hidden_dims, ag.v_lr) == (2_000_000, (512, 512, 512), 1e-4)
    assert (ag.q_steps, ag.q_hidden_dims, ag.q_lr, ag.q_target_every, ag.tau) == (2_000_000, (1024, 1024), 1e-4, 2, 0.005)
    assert (ag.bc_steps, ag.pi_hidden_dims, ag.bc_lr) == (500_000, (1024, 1024), 1e-4)
    assert (ag.pi_steps, ag.pi_lr, ag.clip_eps, ag.entropy_weight, ag.clip_decay, ag.omega) == (1000, 1e-4, 0.25, 0.0, 0.96, 0.9)
    assert (ag.lr_decay, ag.lr_decay_every, ag.decay_until, ag.grad_clip) == (0.98, 2, 200, 0.5)  # ppo.py StepLR, clip_grad_norm_
    assert ag.selection == "online" and ag.select_interval == 1 and ag.select_episodes == 10 and ag.bppo_off == 0
    assert not ag.bootstrap_timeouts and ag.clip_decay_first  # buffer.py's not_done; bppo.py's decay-then-use
    assert ag.bc_select_every == 2000  # main.py keeps the best BC iterate scored every log_freq = 2000 steps
    assert ag.value_relu_output and ag.torch_init and ag.select_per_seed  # net.py's ReLU outputs, PyTorch init, env.seed(seed)
    from configs.bppo import get_config

    c = get_config()
    assert c.batch_size == 512 and c.discount == 0.99


# ============================================================================ Onestep RL
def onestep_setup(**agent):
    ag = onestep.default_agent_config()
    ag.hidden_dims, ag.q_hidden_dims = (5,), (5,)
    ag.update(agent)
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=ag))
    state = onestep.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    return cfg, state


def onestep_policy_np(params, obs):
    p = params["params"]
    h = np.maximum(np_mlp(_layers(p["MLP_0"]), np.asarray(obs, np.float64)), 0.0)  # activate_final
    mean = np.tanh(h @ np.asarray(p["Dense_0"]["kernel"], np.float64) + np.asarray(p["Dense_0"]["bias"], np.float64))
    raw = h @ np.asarray(p["Dense_1"]["kernel"], np.float64) + np.asarray(p["Dense_1"]["bias"], np.float64)
    return mean, -5.0 + 0.5 * 5.0 * (np.tanh(raw) + 1.0)  # GaussMLP: soft clamp into (-5, 0)


@pytest.mark.parametrize("drop_timeouts", [True, False])
def test_onestep_sarsa_loss_by_hand(drop_timeouts):
    cfg, state = onestep_setup(drop_timeouts=drop_timeouts)
    state = state.replace(critic_target=perturb(state.critic.params))
    batch = timeout_batch()
    loss, _ = onestep.q_loss(state.critic.params, state, batch, cfg)
    y = np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * critic_np(
        state.critic_target, batch.next_observations, batch.next_actions)
    se = (critic_np(state.critic.params, batch.observations, batch.actions) - y) ** 2
    w = 1 - np.asarray(batch.timeouts) if drop_timeouts else np.ones_like(se)
    np.testing.assert_allclose(float(loss), np.sum(w * se) / np.sum(w), rtol=1e-5)
    if drop_timeouts:  # one transition left: its own squared error (the max(., 1) guard only stops 0 / 0)
        only = batch._replace(timeouts=jnp.asarray([0.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
        np.testing.assert_allclose(float(onestep.q_loss(state.critic.params, state, only, cfg)[0]), se[0], rtol=1e-5)


def test_onestep_target_moves_every_second_step():
    cfg, state = onestep_setup()
    batch = _batch()
    s1, _ = onestep.q_update(state, batch, None, 0, cfg)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(s1.critic_target), jax.tree_util.tree_leaves(state.critic_target)))
    s2, _ = onestep.q_update(s1, batch, None, 1, cfg)
    exp = jax.tree_util.tree_map(lambda t, o: 0.995 * t + 0.005 * o, s1.critic_target, s2.critic.params)
    for x, y in zip(jax.tree_util.tree_leaves(s2.critic_target), jax.tree_util.tree_leaves(exp)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_onestep_reverse_kl_loss_by_hand():
    cfg, state = onestep_setup(alpha=0.7, num_kl_samples=3)
    state = state.replace(behavior_params=perturb(state.actor.params), critic_target=perturb(state.critic.params, 0.5))
    obs = _batch().observations
    key = jax.random.PRNGKey(5)
    loss, info = onestep.reverse_kl_loss(state.actor.params, state, obs, key, cfg)
    k1, k2 = jax.random.split(key)
    mean, ls = onestep_policy_np(state.actor.params, obs)
    mb, lb = onestep_policy_np(state.behavior_params, obs)
    a = mean + np.exp(ls) * np.asarray(jax.random.normal(k1, mean.shape), np.float64)  # a ~ pi, not pi_b
    a_kl = mean + np.exp(ls) * np.asarray(jax.random.normal(k2, (3,) + mean.shape), np.float64)
    kl = (np_logp(a_kl, mean, ls) - np_logp(a_kl, mb, lb)).mean(0)  # KL(pi || pi_b): log pi - log pi_b at a_j ~ pi
    q = critic_np(state.critic.params, obs, a)  # the online critic
    np.testing.assert_allclose(float(loss), np.mean(-q + 0.7 * kl), rtol=1e-4)
    np.testing.assert_allclose(float(info["kl"]), kl.mean(), rtol=1e-4)


def test_onestep_reverse_kl_step_raises_q():
    cfg, state = onestep_setup(alpha=0.0)
    obs = _batch(b=16).observations
    key = jax.random.PRNGKey(0)

    def q_of(params):
        mean, _ = state.actor.apply_fn(params, obs)
        return float(state.critic.apply_fn(state.critic.params, obs, mean).mean())

    g, _ = jax.grad(onestep.reverse_kl_loss, has_aux=True)(state.actor.params, state, obs, key, cfg)
    stepped = jax.tree_util.tree_map(lambda p, d: p - 1e-2 * d, state.actor.params, g)
    assert q_of(stepped) > q_of(state.actor.params)


def test_onestep_exp_weight_loss_by_hand():
    cfg, state = onestep_setup(operator="exp_weight", temperature=0.05, weight_clip=3.0, num_adv_samples=4)
    state = state.replace(behavior_params=perturb(state.actor.params), critic_target=perturb(state.critic.params, 0.5))
    batch = _batch()
    # saturated and out-of-box actions: log pi sees them clipped to +-(1 - 1e-4) (the reference's
    # stable_action), Q sees them as they are
    batch = batch._replace(actions=batch.actions.at[0, 0].set(1.0).at[1, 1].set(-1.0).at[2, 0].set(1.3).at[3, 1].set(-1.2))
    key = jax.random.PRNGKey(2)
    loss, _ = onestep.exp_weight_loss(state.actor.params, state, batch, key, cfg)
    o, a = np.asarray(batch.observations, np.float64), np.asarray(batch.actions, np.float64)
    mb, lb = onestep_policy_np(state.behavior_params, o)
    a_b = mb + np.exp(lb) * np.asarray(jax.random.normal(key, (4,) + mb.shape), np.float64)  # a_j ~ pi_b, unclipped
    q_s = np.stack([critic_np(state.critic.params, o, a_b[j]) for j in range(4)], -1)
    adv = critic_np(state.critic.params, o, a) - q_s.mean(-1)
    w = np.minimum(np.exp(adv / 0.05), 3.0)
    assert 0 < np.mean(w == 3.0) < 1  # the clip is active for some, not all
    mean, ls = onestep_policy_np(state.actor.params, o)
    a_stable = np.clip(a, -1 + 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(float(loss), -np.mean(w * np_logp(a_stable, mean, ls)), rtol=1e-4)
    assert abs(-np.mean(w * np_logp(a, mean, ls)) - float(loss)) > 1e-2 * abs(float(loss))  # the clip matters here


def test_onestep_stable_action_clips_inside_the_box():
    got = np.asarray(onestep.stable_action(jnp.asarray([-1.2, -1.0, -0.99995, 0.3, 1.0, 1.5])))
    np.testing.assert_allclose(got, [-0.9999, -0.9999, -0.9999, 0.3, 0.9999, 0.9999], rtol=1e-7)


def test_onestep_acts_inside_the_box():
    """The reference's improved pi is beta's deep-copied Normal GaussMLP (load_from_pilearner), its
    actions clamped to [-1, 1] when acting: sampled actions here are clipped, the mean is not moved
    (the losses' plain-Gaussian log pi is pinned by the reverse-KL and exp-weight tests above)."""
    cfg, state = onestep_setup()
    state = state.replace(actor=state.actor.replace(params=perturb(state.actor.params, 3.0, 0.5)))
    obs = _batch(b=64, seed=4).observations
    mean, ls = onestep_policy_np(state.actor.params, obs)
    a = np.asarray(onestep.act(state, obs, jax.random.PRNGKey(3), cfg, deterministic=False))
    raw = mean + np.exp(ls) * np.asarray(jax.random.normal(jax.random.PRNGKey(3), mean.shape), np.float64)
    assert (np.abs(raw) > 1).any()  # some samples leave the box ...
    np.testing.assert_allclose(a, np.clip(raw, -1, 1), rtol=1e-5, atol=1e-6)  # ... and are clipped back
    np.testing.assert_allclose(np.asarray(onestep.act(state, obs, None, cfg)), mean, rtol=1e-5, atol=1e-6)


def test_onestep_improvement_resets_the_optimiser_only_at_its_first_step():
    cfg, state = onestep_setup()
    batch = _batch()
    s, m = onestep.behavior_update(state, batch, None, 0, cfg)  # pi_b: the plain NLL of dataset actions at s
    mean, ls = onestep_policy_np(state.actor.params, batch.observations)
    np.testing.assert_allclose(float(m["behavior_loss"]), -np.mean(np_logp(np.asarray(batch.actions, np.float64), mean, ls)), rtol=1e-5)
    count = lambda st: int(jax.tree_util.tree_leaves(st.actor.opt_state)[0])  # noqa: E731
    assert count(s) == 1
    # the improvement stage's start (its ``begin``, once; tests/test_runtime.py runs it through the stage):
    # pi_b frozen as the behaviour stage left it, a fresh Adam
    start = onestep.start_improvement(s)
    assert _same(start.behavior_params, s.actor.params) and _same(start.actor.params, s.actor.params) and count(start) == 0
    s0, _ = onestep.improve_update(start, batch, jax.random.PRNGKey(0), jnp.asarray(0), cfg)
    assert count(s0) == 1  # fresh Adam at step 0, then one update
    s1, m1 = onestep.improve_update(s0, batch, jax.random.PRNGKey(1), jnp.asarray(1), cfg)
    assert count(s1) == 2
    assert "kl" in m1 and "adv_weight" not in m1  # the default operator is the reverse KL ...
    cfg.agent.operator = "exp_weight"
    s2, m2 = onestep.improve_update(s1, batch, jax.random.PRNGKey(2), jnp.asarray(2), cfg)
    assert "adv_weight" in m2 and "kl" not in m2 and count(s2) == 3  # ... and exp_weight switches to the weighted NLL
    # pi_b stays frozen while pi improves
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(s1.behavior_params), jax.tree_util.tree_leaves(s.actor.params)))


def test_onestep_defaults_equal_the_reference_configs():
    # github.com/davidbrandfonbrener/onestep-rl config/train.yaml, beta/bc.yaml, q/sarsa.yaml, pi/reverse_kl.yaml, pi/exp_weight.yaml
    ag = onestep.default_agent_config()
    assert (ag.behavior_steps, ag.q_steps) == (500_000, 2_000_000)
    assert ag.hidden_dims == ag.q_hidden_dims == (1024, 1024) and ag.lr == ag.q_lr == 1e-4
    assert (ag.tau, ag.q_target_every, ag.drop_timeouts) == (0.005, 2, True)
    assert (ag.operator, ag.alpha, ag.num_kl_samples) == ("reverse_kl", 1.0, 10)
    assert 1.0 / ag.temperature == pytest.approx(0.01) and ag.weight_clip == 100.0 and ag.num_adv_samples == 10
    assert (ag.log_std_min, ag.log_std_max) == (-5.0, 0.0)
    from configs.onestep import get_config

    c = get_config()
    assert (c.batch_size, c.num_steps, c.discount, c.normalize_obs) == (512, 100_000, 0.99, False)
    assert onestep.variant(c) == "onestep"
    c.agent.operator = "exp_weight"
    assert onestep.variant(c) == "onestep-exp"
    c.agent.operator = "awr"
    with pytest.raises(ValueError, match="operator"):
        onestep.validate(c)


# ============================================================================ IQL
def iql_setup(**agent):
    ag = iql.default_agent_config()
    ag.hidden_dims = (5,)
    ag.update(agent)
    cfg = ml_collections.ConfigDict(dict(discount=0.9, num_steps=10, agent=ag))
    state = iql.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    return cfg, state


def iql_q_np(params, o, a):
    ens = params["params"]["VmapCritic_0"]["MLP_0"]
    x = np.concatenate([np.asarray(o, np.float64), np.asarray(a, np.float64)], -1)
    return np.stack([np_mlp(_layers(ens, i), x)[:, 0] for i in range(2)])


def iql_policy_np(params, obs):
    p = params["params"]
    h = np.maximum(np_mlp(_layers(p["MLP_0"]), np.asarray(obs, np.float64)), 0.0)
    mean = np.tanh(h @ np.asarray(p["Dense_0"]["kernel"], np.float64) + np.asarray(p["Dense_0"]["bias"], np.float64))
    return mean, np.broadcast_to(np.clip(np.asarray(p["log_std"], np.float64), -5.0, 2.0), mean.shape)


def test_iql_critic_and_actor_losses_by_hand():
    cfg, state = iql_setup()
    state = state.replace(critic_target=perturb(state.critic.params))
    batch = _batch()
    o, a = batch.observations, batch.actions
    loss, _ = iql.critic_loss(state.critic.params, state, batch, cfg)
    y = np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * critic_np(state.value.params, batch.next_observations)
    q = iql_q_np(state.critic.params, o, a)  # online critics at (s, a); V at s'
    np.testing.assert_allclose(float(loss), np.sum(np.mean((q - y) ** 2, -1)), rtol=1e-5)
    loss, _ = iql.actor_loss(state.actor.params, state, batch, cfg)
    adv = iql_q_np(state.critic_target, o, a).min(0) - critic_np(state.value.params, o)  # target critics, V at s
    w = np.minimum(np.exp(3.0 * adv), 100.0)
    mean, ls = iql_policy_np(state.actor.params, o)
    np.testing.assert_allclose(float(loss), -np.mean(w * np_logp(np.asarray(a, np.float64), mean, ls)), rtol=1e-5)


def test_iql_actor_and_critic_use_the_freshly_updated_value():
    cfg, state = iql_setup()
    batch = _batch()
    new, m = iql.update(state, batch, None, 0, cfg)
    with_new_v = state.replace(value=new.value)
    np.testing.assert_allclose(float(m["critic_loss"]), float(iql.critic_loss(state.critic.params, with_new_v, batch, cfg)[0]), rtol=1e-6)
    np.testing.assert_allclose(float(m["actor_loss"]), float(iql.actor_loss(state.actor.params, with_new_v, batch, cfg)[0]), rtol=1e-6)
    exp = jax.tree_util.tree_map(lambda t, o: 0.995 * t + 0.005 * o, state.critic_target, new.critic.params)
    for x, y in zip(jax.tree_util.tree_leaves(new.critic_target), jax.tree_util.tree_leaves(exp)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_iql_actor_learning_rate_follows_the_cosine_schedule():
    # learner.py: scale_by_adam then a cosine decay of actor_lr over the run's max_steps (num_steps)
    cfg, state = iql_setup()
    cfg.num_steps = 4
    state = iql.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    tx, params = state.actor.tx, state.actor.params
    grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.3), params)  # constant gradients: Adam's step is lr * factor
    opt = tx.init(params)
    for k in range(3):
        upd, opt = tx.update(grads, opt, params)
        factor = 0.5 * (1 + math.cos(math.pi * k / 4))
        for u in jax.tree_util.tree_leaves(upd):
            np.testing.assert_allclose(np.asarray(u), -3e-4 * factor, rtol=1e-3, err_msg=f"update {k}")


def test_iql_defaults_and_orthogonal_init_equal_the_reference():
    # github.com/ikostrikov/implicit_q_learning configs/mujoco_config.py, learner.py, common.default_init
    ag = iql.default_agent_config()
    assert (ag.actor_lr, ag.critic_lr, ag.value_lr, ag.hidden_dims, ag.tau) == (3e-4, 3e-4, 3e-4, (256, 256), 0.005)
    assert (ag.expectile, ag.temperature, ag.weight_clip, ag.cosine_actor_lr) == (0.7, 3.0, 100.0, True)
    assert (ag.log_std_min, ag.log_std_max, ag.orthogonal_init) == (-5.0, 2.0, True)
    from configs.iql import get_config

    c = get_config()
    assert (c.batch_size, c.num_steps, c.discount, c.reward_normalization, c.normalize_obs) == (256, 1_000_000, 0.99, "traj_return", False)
    _, state = iql_setup(hidden_dims=(8, 8))
    kernels = [(path, x) for path, x in jax.tree_util.tree_flatten_with_path(
        (state.actor.params, state.critic.params, state.value.params))[0] if "kernel" in jax.tree_util.keystr(path)]
    assert len(kernels) == 3 + 3 + 3  # policy (2 hidden + mean), critics (3 layers, both members in one leaf), V (3 layers)
    for path, k in kernels:
        k = np.asarray(k)
        for m in (k if k.ndim == 3 else k[None]):  # ensemble members
            g = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
            np.testing.assert_allclose(g, 2.0 * np.eye(len(g)), atol=1e-4, err_msg=jax.tree_util.keystr(path))  # orthogonal x sqrt 2


# ============================================================================ BC and %BC
def test_bc_losses_by_hand():
    ag = bc.default_agent_config()
    ag.hidden_dims = (5,)
    cfg = ml_collections.ConfigDict(dict(agent=ag))
    state = bc.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    batch = _batch()
    loss, _ = bc.loss_fn(state.actor.params, state, batch, cfg)
    out = np.tanh(np_mlp(_layers(state.actor.params["params"]["MLP_0"]), np.asarray(batch.observations, np.float64)))
    np.testing.assert_allclose(float(loss), np.mean((out - np.asarray(batch.actions)) ** 2), rtol=1e-5)
    cfg.agent.loss = "nll"
    state = bc.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    loss, _ = bc.loss_fn(state.actor.params, state, batch, cfg)
    p = state.actor.params["params"]
    h = np.maximum(np_mlp(_layers(p["MLP_0"]), np.asarray(batch.observations, np.float64)), 0.0)
    mean = h @ np.asarray(p["Dense_0"]["kernel"]) + np.asarray(p["Dense_0"]["bias"])
    ls = np.clip(h @ np.asarray(p["Dense_1"]["kernel"]) + np.asarray(p["Dense_1"]["bias"]), -5.0, 2.0)
    a = np.asarray(batch.actions, np.float64)
    u = np.arctanh(a)
    logp = np_logp(u, mean, ls) - np.sum(np.log(1 - a**2), -1)  # change of variables through tanh
    np.testing.assert_allclose(float(loss), -np.mean(logp), rtol=1e-4)


def test_percent_bc_by_timesteps_as_the_decision_transformer_code():
    returns, lengths = [5.0, 1.0, 9.0, 3.0, 7.0], [10, 20, 30, 25, 15]  # 100 timesteps
    # best first: 2 (30 steps), 4 (15), 0 (10), 3 (25), 1 (20); kept while the total stays <= X% of 100
    for frac, want in ((0.3, [2]), (0.45, [2, 4]), (0.55, [2, 4, 0]), (0.8, [2, 4, 0, 3]), (0.05, [2]), (1.0, [2, 4, 0, 3, 1])):
        np.testing.assert_array_equal(bc.top_episodes(returns, lengths, frac, "timesteps"), want, err_msg=str(frac))
    np.testing.assert_array_equal(bc.top_episodes(returns, lengths, 0.4, "episodes"), [2, 4])  # ceil(0.4 * 5)
    # the budget floor is one timestep (int(0.01 * 2) = 0 -> 1): only the best episode, even when the next fits in 2
    np.testing.assert_array_equal(bc.top_episodes([3.0, 2.0], [1, 1], 0.01, "timesteps"), [0])
    assert bc.default_agent_config().top_by == "timesteps"
    cfg = ml_collections.ConfigDict(dict(agent=dict(loss="mse", top_fraction=0.1, top_by="trajectories")))
    with pytest.raises(ValueError, match="top_by"):
        bc.validate(cfg)
