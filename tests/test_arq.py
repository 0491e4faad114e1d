"""ARQ and its score-based behaviour model (offrl/diffusion.py, offrl/algos/arq.py).

The sampler and the likelihood are checked against a Gaussian whose score is known in closed
form (no learning involved), so a wrong SDE coefficient, sign or step fails them; the training
code against a conditional two-mode mixture; the K-th target, the AWR advantage and the implicit
policy against hand computations. Tiny sizes throughout (CPU).
"""
import io
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import np_mlp, size_one_batched_dots
from configs.arq import get_config
from offrl import nets
from offrl.algos import Spec, arq
from offrl.data.dataset import Transitions, sample
from offrl.diffusion import VPSDE, log_likelihood, pc_sample

SDE = VPSDE()
MU = np.array([0.5, -1.0])
SIGMA = np.array([[0.3, 0.12], [0.12, 0.2]])


def gaussian_score(x, c, t):
    """Exact score of p_t when x_0 | c ~ N(MU + c, SIGMA): p_t = N(m (MU + c), m^2 SIGMA + s^2 I)."""
    m, s = SDE.marginal(t)
    cov = m[:, None, None] ** 2 * jnp.asarray(SIGMA, x.dtype) + (s**2)[:, None, None] * jnp.eye(2)
    return -jnp.linalg.solve(cov, (x - m[:, None] * (jnp.asarray(MU, x.dtype) + c))[..., None])[..., 0]


@pytest.fixture(scope="module")
def conditions():
    return jnp.asarray(0.5 * np.random.default_rng(0).normal(size=(2000, 2)), jnp.float32)


def _moments(x, c):
    r = np.asarray(x) - np.asarray(c)  # x - c ~ N(MU, SIGMA) for every condition
    return r.mean(0), np.cov(r.T)


@pytest.mark.parametrize("snr,per_row", [(0.0, True), (0.16, False)])
def test_pc_sampler_with_exact_score_matches_gaussian(conditions, snr, per_row):
    """Predictor alone, and predictor + batch-mean corrector: 500 steps, 2000 samples; mean within
    0.05 and covariance within 0.04 (sampling error ~0.01; the corrector's bias ~2%)."""
    x = jax.jit(lambda k: pc_sample(gaussian_score, conditions, k, SDE, 2, 500, snr=snr, per_row_step=per_row))(
        jax.random.PRNGKey(1))
    mean, cov = _moments(x, conditions)
    np.testing.assert_allclose(mean, MU, atol=0.05)
    np.testing.assert_allclose(cov, SIGMA, atol=0.04)


def test_per_row_corrector_widens_low_dimensional_samples(conditions):
    """The reference's per-row Langevin step size 2 (snr |z| / |score|)^2 is heavy-tailed in 2-D:
    the same exact score gives samples with the right mean but a much wider spread (docs/arq.md)."""
    x = jax.jit(lambda k: pc_sample(gaussian_score, conditions, k, SDE, 2, 500, snr=0.16, per_row_step=True))(
        jax.random.PRNGKey(1))
    mean, cov = _moments(x, conditions)
    assert np.trace(cov) > 1.5 * np.trace(SIGMA)
    np.testing.assert_allclose(np.median(np.asarray(x) - np.asarray(conditions), axis=0), MU, atol=0.1)


def test_ode_log_likelihood_matches_closed_form():
    """Exact trace: within 0.03 nats of log N(x; MU + c, SIGMA) (what remains is the prior mismatch,
    p_1 = N(m(1)(MU + c), ...) with m(1) = e^-5.03 taken as N(0, I)); Hutchinson with 10 Rademacher
    probes: unbiased, mean |error| < 0.2 nats."""
    rng = np.random.default_rng(2)
    c = 0.3 * rng.normal(size=(64, 2))
    x = rng.multivariate_normal(MU, SIGMA, 64) + c
    ref = np.array([multivariate_normal(MU + ci, SIGMA).logpdf(xi) for xi, ci in zip(x, c)])
    x, c = jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32)
    exact = np.asarray(log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, estimator="exact"))
    np.testing.assert_allclose(exact, ref, atol=0.03)
    hutch = np.asarray(log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, num_probes=10))
    assert np.mean(np.abs(hutch - ref)) < 0.2 and abs(np.mean(hutch - ref)) < 0.1


def _np_vp(t, bmin=0.1, bmax=20.0):
    """(beta(t), m(t), s(t)) of the VP-SDE, written out."""
    c = 0.5 * t**2 * (bmax - bmin) + t * bmin
    return bmin + t * (bmax - bmin), np.exp(-0.5 * c), np.sqrt(1 - np.exp(-c))


@pytest.mark.parametrize("num_steps,per_row", [(2, True), (3, False)])
def test_pc_sampler_steps_by_hand(num_steps, per_row):
    """Every corrector and predictor step of pc_sample against NumPy on the same draws, for a score that
    depends on x, c and t; the time grid runs from 1 to t_end and the last x_mean is returned."""
    from offrl.diffusion import pc_sample as pc

    score = lambda x, c, t: -(x - c) * (1.0 + t[:, None])  # noqa: E731
    c = jnp.asarray([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1]], jnp.float32)
    key, snr, t_end = jax.random.PRNGKey(3), 0.2, 0.05
    got = np.asarray(pc(score, c, key, SDE, 2, num_steps=num_steps, snr=snr, t_end=t_end, per_row_step=per_row))
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    cc = f64(c)
    np_score = lambda x, t: -(x - cc) * (1.0 + t)  # noqa: E731
    k_init, k_steps = jax.random.split(key)
    x = f64(jax.random.normal(k_init, (3, 2)))
    times = np.linspace(1.0, t_end, num_steps)
    dt = times[0] - times[1]
    for t, k in zip(times, jax.random.split(k_steps, num_steps)):
        k_c, k_p = jax.random.split(k)
        z, s = f64(jax.random.normal(k_c, (3, 2))), np_score(x, t)
        zn, sn = np.linalg.norm(z, axis=-1, keepdims=True), np.linalg.norm(s, axis=-1, keepdims=True)
        if not per_row:
            zn, sn = zn.mean(), sn.mean()
        eps = 2.0 * (snr * zn / sn) ** 2
        x = x + eps * s + np.sqrt(2 * eps) * z
        beta = _np_vp(t)[0]
        x_mean = x - (-0.5 * beta * x - beta * np_score(x, t)) * dt
        x = x_mean + np.sqrt(dt) * np.sqrt(beta) * f64(jax.random.normal(k_p, (3, 2)))
    np.testing.assert_allclose(got, x_mean, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="num_steps >= 2"):
        pc(score, c, key, SDE, 2, num_steps=1)


def test_ode_solve_past_its_step_limit_gives_nan_rows_not_an_error_and_steps_are_counted():
    x = jnp.asarray([[0.4, -0.9], [1.2, 0.3]], jnp.float32)
    c = jnp.zeros((2, 2), jnp.float32)
    ll = np.asarray(log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, estimator="exact", max_steps=2))
    assert ll.shape == (2,) and np.isnan(ll).all()
    # with_steps (bench.py's sampler mode): the same values and the solver's step count, at its limit and below it
    ll2, steps = log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, estimator="exact", max_steps=2, with_steps=True)
    assert np.isnan(np.asarray(ll2)).all() and int(steps) == 2
    ok = log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, estimator="exact")
    ok2, steps = log_likelihood(gaussian_score, x, c, jax.random.PRNGKey(0), SDE, estimator="exact", with_steps=True)
    np.testing.assert_array_equal(np.asarray(ok2), np.asarray(ok))
    assert np.isfinite(np.asarray(ok)).all() and 2 < int(steps) < 4096


def test_dsm_loss_and_fourier_features_by_hand():
    """dsm_loss: t ~ U(t_min, 1) and z from split(key), x_t = m(t) x0 + s(t) z, mean_B sum_D (net + z)^2;
    the time embedding [sin(2 pi t W), cos(2 pi t W)] with its dim / 2 fixed frequencies W."""
    from offrl.diffusion import GaussianFourierFeatures, dsm_loss

    x0 = jnp.asarray([[0.3, -0.2, 1.0], [1.5, 0.1, -0.4]], jnp.float32)
    c = jnp.asarray([[1.0], [-2.0]], jnp.float32)
    net = lambda params, x, cond, t: params * x + cond + t[:, None]  # noqa: E731
    key = jax.random.PRNGKey(7)
    got = float(dsm_loss(net, 0.5, x0, c, key, SDE, t_min=0.01))
    k_t, k_z = jax.random.split(key)
    t = np.asarray(jax.random.uniform(k_t, (2,), jnp.float32, 0.01, 1.0), np.float64)
    z = np.asarray(jax.random.normal(k_z, (2, 3)), np.float64)
    _, m, sd = _np_vp(t)
    xt = m[:, None] * np.asarray(x0, np.float64) + sd[:, None] * z
    out = 0.5 * xt + np.asarray(c, np.float64) + t[:, None]
    np.testing.assert_allclose(got, np.mean(np.sum((out + z) ** 2, -1)), rtol=1e-5)

    gff = GaussianFourierFeatures(6, scale=2.0)
    tt = jnp.asarray([0.0, 0.3, 1.0], jnp.float32)
    params = gff.init(jax.random.PRNGKey(0), tt)
    w = np.asarray(params["params"]["W"], np.float64)
    assert w.shape == (3,)
    proj = 2 * np.pi * np.asarray(tt, np.float64)[:, None] * w
    np.testing.assert_allclose(np.asarray(gff.apply(params, tt)), np.concatenate([np.sin(proj), np.cos(proj)], -1),
                               rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- ARQ's own training code
def small_config(**agent):
    cfg = get_config()
    ag = cfg.agent
    ag.score_hidden_dims, ag.critic_hidden_dims, ag.actor_hidden_dims = (64, 64), (8, 8), (8, 8)
    ag.score_lr, ag.score_batch_size, ag.stats_batch_size = 1e-3, 256, 4000
    ag.sampler_steps, ag.corrector_step, ag.trace = 100, "batch", "exact"
    for k, v in agent.items():
        ag[k] = v
    return cfg


def two_mode_data(n=4000, seed=0):
    """s in {-1, +1}; a | s=+1 ~ 0.75 N(0.6, 0.05^2) + 0.25 N(-0.6, 0.05^2), mirrored for s=-1."""
    rng = np.random.default_rng(seed)
    s = rng.choice([-1.0, 1.0], size=n)
    upper = rng.random(n) < np.where(s > 0, 0.75, 0.25)
    a = np.where(upper, 0.6, -0.6) + 0.05 * rng.normal(size=n)
    z = np.zeros(n, np.float32)
    f = lambda x: jnp.asarray(np.asarray(x, np.float32).reshape(n, -1))  # noqa: E731
    return Transitions(f(s), f(a), jnp.asarray(z), f(s), jnp.asarray(z), jnp.asarray(z), f(a), jnp.asarray(z),
                       jnp.zeros(n, jnp.int32))


@pytest.fixture(scope="module")
def two_mode_model():
    """ARQ's standardise + DSM code, 3000 updates on the two-mode data: (state, config, losses)."""
    cfg = small_config(num_candidates=1000)
    data = two_mode_data()
    state = arq.init(jax.random.PRNGKey(0), Spec(1, 1), cfg)
    state, _ = arq.standardize_update(state, sample(jax.random.PRNGKey(1), data, 4000), None, 0, cfg)

    @jax.jit
    def train(state, key):
        def body(st, k):
            k_b, k_u = jax.random.split(k)
            return arq.score_update(st, sample(k_b, data, 256), k_u, 0, cfg)

        return jax.lax.scan(body, state, jax.random.split(key, 3000))

    state, metrics = train(state, jax.random.PRNGKey(2))
    return state, cfg, np.asarray(metrics["score_loss"])


def test_score_training_on_two_mode_mixture_puts_samples_in_both_modes(two_mode_model):
    state, cfg, losses = two_mode_model
    assert losses[-200:].mean() < losses[:200].mean()
    obs = jnp.asarray([[1.0], [-1.0]])
    a = np.asarray(jax.jit(lambda k: arq.sample_candidates(state, obs, k, cfg))(jax.random.PRNGKey(3)))[..., 0]
    near_mode = np.abs(np.abs(a) - 0.6) < 0.2
    assert near_mode.mean() > 0.85, near_mode.mean()
    upper = (a > 0).mean(1)
    assert abs(upper[0] - 0.75) < 0.08 and abs(upper[1] - 0.25) < 0.08, upper
    # the learned likelihood: a mode is far likelier than the gap between the modes
    probe = jnp.asarray([[[0.6], [0.0], [-0.6]]])
    ll = np.asarray(arq.candidate_log_lik(state, obs[:1], probe, jax.random.PRNGKey(4), cfg))[0]
    assert ll[0] > ll[1] + 2 and ll[2] > ll[1] + 2, ll


def test_implicit_policy_acts_with_in_support_candidates(two_mode_model):
    """ARQ+s's act: 30 fresh candidates, their likelihoods, a softmax draw; at alpha -> inf with a Q
    that increases in a, the largest in-support candidate (the upper mode, not an outlier)."""
    state, cfg, _ = two_mode_model
    cfg = small_config(num_candidates=30, policy="implicit")
    mlp = jax.tree_util.tree_map(jnp.zeros_like, state.critic_target["params"]["VmapCritic_0"]["MLP_0"])
    mlp["Dense_0"]["kernel"] = mlp["Dense_0"]["kernel"].at[:, 1, 0].set(1.0)  # hidden unit 0 = relu(a) ...
    for i in range(1, len(mlp)):
        mlp[f"Dense_{i}"]["kernel"] = mlp[f"Dense_{i}"]["kernel"].at[:, 0, 0].set(1.0)  # ... passed on: Q = relu(a)
    q_up = {"params": {"VmapCritic_0": {"MLP_0": mlp}}}
    state = state.replace(critic_target=q_up, alpha=jnp.asarray(1e6))
    obs = jnp.asarray([[1.0], [-1.0]])
    key = jax.random.PRNGKey(5)
    a = np.asarray(jax.jit(lambda k: arq.act(state, obs, k, cfg, True))(key))
    assert a.shape == (2, 1) and np.all(np.abs(a) <= 1.0)
    k_s, k_l, _ = jax.random.split(key, 3)  # act's own draws, redone: candidates and their likelihoods
    cand = jnp.clip(arq.sample_candidates(state, obs, k_s, cfg), -1.0, 1.0)
    ll = np.asarray(arq.candidate_log_lik(state, obs, cand, k_l, cfg))
    cand = np.asarray(cand)[..., 0]
    best = np.where(ll > -5.0, cand, -np.inf).max(1)
    np.testing.assert_allclose(a[:, 0], best, rtol=1e-5)
    assert np.all(best > 0.4)  # the upper mode at 0.6 for both states


# ---------------------------------------------------------------- targets and policies by hand
def test_kth_next_value_by_hand():
    q = np.array([[1.0, 5.0, 4.0, 3.0, 2.0, 0.5],    # all in support: 3rd largest of [1, 5, 4, 3, 2, .5] = 3
                  [1.0, 5.0, 4.0, 3.0, 2.0, 0.5],    # 5 and 3 penalised: 3rd largest of [1, 4, 2, .5] = 1 -> floor 1
                  [2.5, 9.0, 8.0, -1.0, -2.0, 7.0],  # 9, 8 penalised: [2.5, -1, -2, 7] -> 3rd = -1 -> floor 2.5
                  [0.0, 9.0, 8.0, 6.0, -4.0, 7.0]])  # all candidates penalised: -inf -> floor 0
    ll = np.array([[0, 0, 0, 0, 0], [-6, 0, -5, 0, 0], [-7, -9, 0, 0, 0], [-5, -5, -8, -100, -np.inf]], np.float32)
    pen = np.concatenate([np.zeros((4, 1)), np.where(ll > -5.0, 0.0, np.inf)], axis=1)
    pen_j = jnp.concatenate([jnp.zeros((4, 1)), arq.penalty(jnp.asarray(ll), -5.0)], axis=1)
    got = np.asarray(arq.kth_next_value(jnp.asarray(q, jnp.float32), pen_j, 3))
    np.testing.assert_allclose(got, [3.0, 1.0, 2.5, 0.0])
    expect = [max(np.sort(qi - pi)[::-1][2], qi[0]) for qi, pi in zip(q, pen)]
    np.testing.assert_allclose(got, expect)


def test_awr_advantage_and_implicit_choice_by_hand():
    q = jnp.asarray([[1.0, 3.0, -2.0, 10.0], [0.0, 1.0, 2.0, 3.0]])
    pen = jnp.asarray([[0.0, 0.0, 0.0, jnp.inf], [0.0, jnp.inf, jnp.inf, jnp.inf]])
    np.testing.assert_allclose(np.asarray(arq.awr_advantage(q, pen)), [1.0 - (1 + 3 - 2) / 3, 0.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 50)
    pick = jax.vmap(lambda k: arq.implicit_choice(k, q, pen, 1e6))(keys)
    assert np.all(np.asarray(pick) == np.array([1, 0]))  # argmax among the in-support candidates
    none = jnp.full_like(pen, jnp.inf)  # nothing in support: all candidates compete
    assert np.all(np.asarray(jax.vmap(lambda k: arq.implicit_choice(k, q, none, 1e6))(keys)) == np.array([3, 3]))
    uniform = np.asarray(jax.vmap(lambda k: arq.implicit_choice(k, q, pen, 0.0))(jax.random.split(keys[0], 3000)))
    np.testing.assert_allclose(np.bincount(uniform[:, 0], minlength=4) / 3000, [1 / 3, 1 / 3, 1 / 3, 0], atol=0.04)


def _layers(mlp, member):
    return [(np.asarray(mlp[f"Dense_{i}"]["kernel"][member], np.float64), np.asarray(mlp[f"Dense_{i}"]["bias"][member], np.float64))
            for i in range(len(mlp))]


@pytest.mark.parametrize("online", [False, True])
def test_q_update_target_and_loss_from_pregenerated_support_by_hand(online):
    """y = r + gamma (1 - d) max(K-th of min_i Qtarg_i(s', [a', cands(s')]) - pen, Qtarg(s', a')),
    with candidates looked up at each sampled row's next state (or, without a table, drawn at s' on the
    update's key); loss sum_i mean 0.5 (Q_i(s, a) - y)^2; then a critic step and a Polyak target."""
    cfg = small_config(num_candidates=4, kth=2, sampler_steps=4, score_hidden_dims=(8,))
    rng = np.random.default_rng(5)
    n, m, obs_dim, act_dim = 6, 8, 3, 2
    state = arq.init(jax.random.PRNGKey(0), Spec(obs_dim, act_dim), cfg)
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda p: p + 0.3, state.critic_target))
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    data = Transitions(f(n, obs_dim), f(n, act_dim), f(n), f(n, obs_dim), jnp.asarray([0, 1, 0, 0, 1, 0], jnp.float32),
                       jnp.zeros(n), f(n, act_dim), f(n), jnp.zeros(n, jnp.int32))
    ll = jnp.asarray(rng.choice([-9.0, -5.0, -1.0], size=(m, 4)), jnp.float32).at[:, 0].set(-1.0)
    at_next = rng.integers(0, m, n)
    thr = -1e9 if online else -5.0  # online: every candidate in support, so where they are drawn (s') decides y
    state = state.replace(threshold=jnp.asarray(thr, jnp.float32))
    if not online:
        state = state.replace(support=arq.Support(jnp.asarray(at_next, jnp.int32), f(m, 4, act_dim), ll))
    d = jax.device_get(sample(jax.random.PRNGKey(7), data, n))  # the batch the runtime's sampler draws
    new, metrics = arq.q_update(state, d, jax.random.PRNGKey(8), 0, cfg)
    rows = at_next[np.asarray(d.index)]  # the table rows of each batch row's next state
    if online:
        cand, ll_rows = (np.asarray(x) for x in arq.candidates(state, d.next_observations, jax.random.PRNGKey(8), cfg))
    else:
        cand, ll_rows = np.asarray(state.support.actions)[rows], np.asarray(ll)[rows]
    acts = np.concatenate([np.asarray(d.next_actions)[:, None], cand], 1)
    tgt = state.critic_target["params"]["VmapCritic_0"]["MLP_0"]
    qn = np.min([np_mlp(_layers(tgt, i), np.concatenate([np.repeat(np.asarray(d.next_observations)[:, None], 5, 1), acts], -1))[..., 0]
                 for i in range(2)], axis=0)
    pen = np.concatenate([np.zeros((n, 1)), np.where(ll_rows > thr, 0.0, np.inf)], 1)
    nxt = np.array([max(np.sort(qi - pi)[::-1][1], qi[0]) for qi, pi in zip(qn, pen)])
    y = np.asarray(d.rewards) + 0.99 * (1 - np.asarray(d.terminals)) * nxt
    onl = state.critic.params["params"]["VmapCritic_0"]["MLP_0"]
    q = [np_mlp(_layers(onl, i), np.concatenate([np.asarray(d.observations), np.asarray(d.actions)], -1))[:, 0] for i in range(2)]
    loss = sum(np.mean(0.5 * (qi - y) ** 2) for qi in q)
    np.testing.assert_allclose(float(metrics["target"]), y.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(metrics["critic_loss"]), loss, rtol=1e-4, atol=1e-5)
    assert float(metrics["online_support"]) == float(online)
    np.testing.assert_allclose(float(metrics["in_support"]), np.mean(pen[:, 1:] == 0), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["q"]), np.mean(q), rtol=1e-4, atol=1e-5)
    moved = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(new.critic.params),
                                                        jax.tree_util.tree_leaves(state.critic.params))]
    assert all(moved)
    for t, old_t, p in zip(*(jax.tree_util.tree_leaves(x) for x in (new.critic_target, state.critic_target, new.critic.params))):
        np.testing.assert_allclose(np.asarray(t), (1 - cfg.agent.tau) * np.asarray(old_t) + cfg.agent.tau * np.asarray(p),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("online", [False, True])
def test_policy_update_weights_from_candidates_at_each_rows_own_state_by_hand(online):
    """w = min(exp(alpha (Qtarg_1(s, a) - mean of in-support Qtarg_1(s, [a, cands(s)]))), clip), with
    the candidates of table row ``batch.index`` (the sampled row's own state, not its next state's), or
    without a table drawn at s on the update's key."""
    cfg = small_config(num_candidates=3, alpha=0.7, sampler_steps=4, score_hidden_dims=(8,))
    rng = np.random.default_rng(6)
    n, obs_dim, act_dim = 7, 3, 2
    state = arq.init(jax.random.PRNGKey(1), Spec(obs_dim, act_dim), cfg)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    data = Transitions(f(n, obs_dim), f(n, act_dim), f(n), f(n, obs_dim), jnp.zeros(n), jnp.zeros(n), f(n, act_dim), f(n),
                       jnp.zeros(n, jnp.int32))
    m = n + 2
    ll = jnp.asarray(rng.choice([-9.0, -1.0], size=(m, 3)), jnp.float32)
    table = f(m, 3, act_dim)
    thr = -1e9 if online else -5.0
    state = state.replace(threshold=jnp.asarray(thr, jnp.float32))
    if not online:
        state = state.replace(support=arq.Support(jnp.asarray(rng.integers(0, m, n), jnp.int32), table, ll))
    b = jax.device_get(sample(jax.random.PRNGKey(2), data, 16))
    _, metrics = arq.policy_update(state, b, jax.random.PRNGKey(3), 0, cfg)
    i = np.asarray(b.index)
    if online:
        cand, ll_rows = (np.asarray(x) for x in arq.candidates(state, b.observations, jax.random.PRNGKey(3), cfg))
    else:
        cand, ll_rows = np.asarray(table)[i], np.asarray(ll)[i]
    acts = np.concatenate([np.asarray(b.actions)[:, None], cand], 1)
    tgt = state.critic_target["params"]["VmapCritic_0"]["MLP_0"]
    q = np_mlp(_layers(tgt, 0), np.concatenate([np.repeat(np.asarray(b.observations)[:, None], 4, 1), acts], -1))[..., 0]
    keep = np.concatenate([np.ones((16, 1), bool), ll_rows > thr], 1)
    adv = q[:, 0] - np.array([qi[k].mean() for qi, k in zip(q, keep)])
    w = np.minimum(np.exp(0.7 * adv), 100.0)
    np.testing.assert_allclose(float(metrics["adv_weight"]), w.mean(), rtol=1e-4)
    assert float(metrics["online_support"]) == float(online)
    # the AWR loss: -mean_b w_b log N(a_b; mu(s_b), sigma(s_b)) under the (untanh-ed) Gaussian actor
    mean, log_std = (np.asarray(x, np.float64) for x in state.actor.apply_fn(state.actor.params, b.observations))
    z = (np.asarray(b.actions, np.float64) - mean) / np.exp(log_std)
    logp = (-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(float(metrics["actor_loss"]), -(w * logp).mean(), rtol=1e-4)
    if not online:
        with pytest.raises(ValueError, match="Transitions.index"):
            arq.policy_update(state, data, jax.random.PRNGKey(3), 0, cfg)  # a batch not drawn by the sampler


# ---------------------------------------------------------------- pre-generation
def test_standardize_stage_takes_the_whole_datasets_statistics_as_the_reference():
    """The runtime's ``standardize`` stage (batch WHOLE_DATASET) against NumPy in float64 over every row,
    ddof 0, with the reference's floor: a constant column keeps std 0, a narrow one gets the floor."""
    from offrl.algos import get_algorithm
    from offrl.train import make_train

    rng = np.random.default_rng(3)
    n = 1000
    obs = np.stack([rng.normal(2.0, 3.0, n), np.full(n, 4.0), rng.normal(0, 0.01, n)], 1).astype(np.float32)
    act = np.stack([rng.uniform(-1, 1, n), rng.normal(0.3, 0.02, n)], 1).astype(np.float32)
    z = jnp.zeros(n)
    data = Transitions(jnp.asarray(obs), jnp.asarray(act), z, jnp.asarray(obs), z, z, jnp.asarray(act), z,
                       jnp.zeros(n, jnp.int32))
    cfg = small_config(stats_batch_size=0)
    tr = make_train(get_algorithm("arq"), cfg, data)
    carry, _ = tr.run(tr.init(jax.random.PRNGKey(0)), data, "standardize", 0, 1)

    def ref(x):
        std = x.astype(np.float64).std(0)
        return x.astype(np.float64).mean(0), np.where((std > 0) & (std < 0.05), 0.05, std)

    for got_mean, got_std, x in [(carry.state.std.s_mean, carry.state.std.s_std, obs),
                                 (carry.state.std.a_mean, carry.state.std.a_std, act)]:
        mean, std = ref(x)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_std, std, rtol=1e-5, atol=1e-7)
    assert carry.state.std.s_std[1] == 0 and carry.state.std.s_std[2] == np.float32(0.05)
    _, m = arq.standardize_update(tr.init(jax.random.PRNGKey(0)).state, data, None, 0, cfg)
    np.testing.assert_allclose([float(m["s_std"]), float(m["a_std"])],
                               [ref(obs)[1].mean(), ref(act)[1].mean()], rtol=1e-5)
    batch = sample(jax.random.PRNGKey(0), data, 0)
    np.testing.assert_array_equal(batch.index, np.arange(n))
    np.testing.assert_array_equal(batch.observations, obs)


def test_support_mean_averages_the_finite_entries_only():
    v = jnp.asarray([[1.0, jnp.inf, 3.0], [-jnp.inf, 2.5, -jnp.inf], [jnp.inf, -jnp.inf, jnp.nan]])
    np.testing.assert_allclose(np.asarray(arq.support_mean(v)), [[2.0], [2.5], [0.0]], rtol=1e-6)
    # the AWR advantage of the dataset action (column 0) against the in-support candidates' mean
    q = jnp.asarray([[1.0, 4.0, 2.0], [0.5, 7.0, 9.0]])
    pen = jnp.asarray([[0.0, 0.0, jnp.inf], [0.0, jnp.inf, jnp.inf]])
    np.testing.assert_allclose(np.asarray(arq.awr_advantage(q, pen)), [1.0 - 2.5, 0.0], rtol=1e-6)


def test_score_update_keeps_an_ema_of_the_weights():
    cfg = small_config(score_hidden_dims=(8,), score_batch_size=16)
    state = arq.init(jax.random.PRNGKey(0), Spec(1, 1), cfg)
    state = state.replace(score_ema=jax.tree_util.tree_map(lambda x: x + 1.0, state.score_ema))
    new, m = arq.score_update(state, two_mode_data(n=16), jax.random.PRNGKey(1), 0, cfg)
    for e, old, p in zip(*(jax.tree_util.tree_leaves(t) for t in (new.score_ema, state.score_ema, new.score.params))):
        np.testing.assert_allclose(np.asarray(e), 0.999 * np.asarray(old) + 0.001 * np.asarray(p), rtol=1e-5, atol=1e-6)
    assert np.isfinite(float(m["score_loss"]))


@pytest.mark.parametrize("members", [1, 2])
def test_score_loss_is_each_members_dsm_loss_on_its_own_slice_and_key(members):
    """The ensemble's loss: member i's DSM loss on the i-th slice of the batch with the i-th split key,
    summed for the gradient and averaged for the log. One member is not vmapped: a dot batched over an
    axis of size 1 made XLA's GPU program copy the score net's weights and Adam moments on every update
    (measured on an H200 target; offrl.nets.vmap_members)."""
    from offrl.diffusion import dsm_loss

    cfg = small_config(score_hidden_dims=(8,), score_batch_size=8, num_score_models=members)
    state = arq.init(jax.random.PRNGKey(0), Spec(1, 1), cfg)
    state, _ = arq.standardize_update(state, two_mode_data(n=64), None, 0, cfg)
    batch, key = two_mode_data(n=8 * members, seed=3), jax.random.PRNGKey(4)
    _, m = arq.score_update(state, batch, key, 0, cfg)
    x0 = state.std.actions(batch.actions).reshape(members, 8, 1)
    c = state.std.states(batch.observations).reshape(members, 8, 1)
    keys = jax.random.split(key, members)
    want = [float(dsm_loss(state.score.apply_fn, jax.tree_util.tree_map(lambda p: p[i], state.score.params), x0[i], c[i],
                           keys[i], arq._sde(cfg), cfg.agent.dsm_t_min)) for i in range(members)]
    np.testing.assert_allclose(float(m["score_loss"]), np.mean(want), rtol=1e-5)

    jaxpr = jax.make_jaxpr(lambda st: arq.score_update(st, batch, key, 0, cfg))(state)
    assert not size_one_batched_dots(jaxpr.jaxpr), "one score model's update is vmapped over a member axis of size 1"


@pytest.mark.parametrize("act_likelihood", [True, False])
def test_implicit_act_clips_candidates_and_picks_among_the_supported(monkeypatch, act_likelihood):
    """act with its parts replaced by fixed values: candidates clipped to the action box before Q sees them,
    out-of-support ones (log-lik <= threshold) excluded only with act_likelihood, a softmax draw at alpha -> inf."""
    cfg = small_config(num_candidates=3, policy="implicit", act_likelihood=act_likelihood, critic_hidden_dims=(4,))
    state = arq.init(jax.random.PRNGKey(0), Spec(1, 1), cfg).replace(alpha=jnp.asarray(1e6))
    cand = jnp.asarray([[[-1.7], [0.5], [0.9]], [[0.2], [1.4], [-0.3]]])
    seen = {}

    def q_of(critic, params, obs, actions, first_only=False):
        seen["actions"] = actions
        return jnp.stack([actions[..., 0]] * (1 if first_only else 2))  # (members, B, C)

    monkeypatch.setattr(arq, "sample_candidates", lambda *a: cand)
    monkeypatch.setattr(arq, "candidate_log_lik", lambda *a: jnp.asarray([[0.0, 0.0, -9.0], [0.0, 0.0, 0.0]]))
    monkeypatch.setattr(arq, "_q_of", q_of)  # Q(s, a) = a
    got = np.asarray(arq.act(state, jnp.zeros((2, 1)), jax.random.PRNGKey(1), cfg))
    np.testing.assert_allclose(np.asarray(seen["actions"])[..., 0], [[-1.0, 0.5, 0.9], [0.2, 1.0, -0.3]])
    np.testing.assert_allclose(got[:, 0], [0.5 if act_likelihood else 0.9, 1.0], rtol=1e-6)


def test_explicit_act_is_the_clipped_gaussian_actor():
    cfg = small_config(policy="explicit", actor_hidden_dims=(4,))
    state = arq.init(jax.random.PRNGKey(2), Spec(3, 2), cfg)
    state = state.replace(actor=state.actor.replace(params=jax.tree_util.tree_map(lambda x: 3.0 * x + 0.4, state.actor.params)))
    obs, key = jnp.asarray(np.random.default_rng(3).normal(size=(5, 3)), jnp.float32), jax.random.PRNGKey(4)
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    np.testing.assert_allclose(np.asarray(arq.act(state, obs, key, cfg)), np.clip(np.asarray(mean), -1, 1), rtol=1e-6)
    noisy = np.asarray(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape))
    assert np.abs(noisy).max() > 1  # the clip matters
    np.testing.assert_allclose(np.asarray(arq.act(state, obs, key, cfg, deterministic=False)), np.clip(noisy, -1, 1),
                               rtol=1e-5, atol=1e-6)


def test_support_rows_map_states_and_episode_ends():
    obs = np.arange(10, dtype=np.float32).reshape(5, 2)
    nxt = np.concatenate([obs[1:], [[100.0, 100.0]]])
    nxt[2] = [50.0, 50.0]  # episode 0 ends after row 2 (its next state is not row 3's state)
    ep = np.array([0, 0, 0, 1, 1], np.int32)
    z = jnp.zeros(5)
    data = Transitions(jnp.asarray(obs), jnp.zeros((5, 1)), z, jnp.asarray(nxt), z, z, jnp.zeros((5, 1)), z, jnp.asarray(ep))
    table, at_next = arq.support_rows(data)
    np.testing.assert_array_equal(at_next, [1, 2, 5, 4, 6])
    np.testing.assert_array_equal(table[:5], obs)
    np.testing.assert_array_equal(table[at_next], nxt)
    nxt[2] = obs[3]  # the episode still ends after row 2 when its last next state equals the next episode's first state
    table, at_next = arq.support_rows(data._replace(next_observations=jnp.asarray(nxt)))
    np.testing.assert_array_equal(at_next, [1, 2, 5, 4, 6])
    np.testing.assert_array_equal(table[at_next], nxt)


def test_pregenerate_caches_chunks_and_resumes(tmp_path, capsys):
    cfg = small_config(num_candidates=3, sampler_steps=4, support_chunk=4, cache_dir=str(tmp_path),
                       score_hidden_dims=(8,))
    data = two_mode_data(n=10)
    data = data._replace(next_observations=jnp.concatenate([data.observations[1:], jnp.full((1, 1), 7.0)]))  # one episode
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = jax.vmap(lambda k: arq.init(k, Spec(1, 1), cfg))(keys)
    states = jax.vmap(lambda s: arq.standardize_update(s, data, None, 0, cfg)[0])(states)
    first = arq.pregenerate(states, data, cfg)
    m = 10 + 1  # every next state is a state of the following row, except the last row's
    assert first.support.actions.shape == (2, m, 3, 1) and first.support.log_lik.shape == (2, m, 3)
    np.testing.assert_array_equal(first.support.at_next, np.broadcast_to(np.arange(1, 11), (2, 10)))  # no copy of the data
    assert not np.allclose(first.support.actions[0], first.support.actions[1])  # each seed its own model and key
    assert "ETA" in capsys.readouterr().out
    (cache,) = os.listdir(tmp_path)
    chunks = sorted(os.listdir(tmp_path / cache))
    assert chunks == [f"chunk_{i:06d}.npz" for i in range(3)]
    os.remove(tmp_path / cache / chunks[1])  # as if killed while computing chunk 1
    again = arq.pregenerate(states, data, cfg)
    np.testing.assert_allclose(again.support.actions, first.support.actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.support.log_lik, first.support.log_lik, rtol=1e-4, atol=1e-4)


def test_with_support_is_pregenerates_layout_for_any_values(tmp_path):
    """bench.py's synthetic table goes through ``with_support``; ``pregenerate`` builds its table with it
    too, so its shapes, dtypes and ``at_next`` are the ones a real run looks candidates up in."""
    cfg = small_config(num_candidates=3, sampler_steps=4, support_chunk=4, score_hidden_dims=(8,), cache_dir=str(tmp_path))
    data = two_mode_data(n=10)
    data = data._replace(next_observations=jnp.concatenate([data.observations[1:], jnp.full((1, 1), 7.0)]))
    states = jax.vmap(lambda k: arq.init(k, Spec(1, 1), cfg))(jax.random.split(jax.random.PRNGKey(0), 2))
    real = arq.pregenerate(states, data, cfg, out=io.StringIO())
    table, at_next = arq.support_rows(data)
    made = arq.with_support(states, at_next, jnp.zeros((2, len(table), 3, 1)), jnp.ones((2, len(table), 3)))
    for r, m in zip(jax.tree_util.tree_leaves(real.support), jax.tree_util.tree_leaves(made.support)):
        assert r.shape == m.shape and r.dtype == m.dtype
    np.testing.assert_array_equal(made.support.at_next, real.support.at_next)
    one = arq.with_support(jax.tree_util.tree_map(lambda x: x[0], states), at_next, jnp.zeros((len(table), 3, 1)),
                           jnp.ones((len(table), 3)))  # a single member: no seed axis
    np.testing.assert_array_equal(one.support.at_next, at_next)
    with pytest.raises(ValueError, match="seed axes"):
        arq.with_support(states, at_next, jnp.zeros((len(table), 3, 1)), jnp.ones((len(table), 3)))
    with pytest.raises(ValueError, match="max\\(at_next\\)"):
        arq.with_support(states, at_next, jnp.zeros((2, 5, 3, 1)), jnp.ones((2, 5, 3)))
    m = int(np.max(at_next))  # one row short: the largest at_next would index past the table
    with pytest.raises(ValueError, match="max\\(at_next\\)"):
        arq.with_support(states, at_next, jnp.zeros((2, m, 3, 1)), jnp.ones((2, m, 3)))


def test_validate_names_the_bad_key():
    for key, value in [("policy", "greedy"), ("kth", 40), ("sampler_steps", 1), ("score_hidden_dims", (8, 16)),
                       ("trace", "gauss"), ("support", "cached")]:
        cfg = get_config()
        cfg.agent[key] = value
        with pytest.raises(ValueError, match=f"agent.{key}"):
            arq.validate(cfg)
    arq.validate(get_config("explicit,antmaze,cpu"))
    assert arq.variant(get_config()) == "ARQ+π" and arq.variant(get_config("s")) == "ARQ+s"


def test_bench_times_q_and_policy_on_a_table_of_pregenerations_layout():
    """experiments/tools/bench.py gives ARQ's q and policy stages (not score) a support table: pregenerate's row
    count for its episodic synthetic data (n states + one per episode end), and the timed update and
    its FLOP count then look candidates up (online_support 0) instead of running the sampler."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench
    from offrl.algos import get_algorithm
    from offrl.train import make_train, seed_keys

    cfg = small_config(num_candidates=4, kth=2, sampler_steps=3)
    cfg.batch_size = 8
    data = bench.synthetic(2500, episode_len=1000)
    tr = make_train(get_algorithm("arq"), cfg, data)
    assert [bench.needs_support(cfg, tr.stages, s.name) for s in tr.stages] == [False, False, True, True]
    init, run = tr.vmapped()
    carry = init(seed_keys(0, 2))
    state = bench.synthetic_support(carry.state, data, cfg)
    assert state.support.actions.shape == (2, 2500 + 3, 4, 3) and state.support.log_lik.shape == (2, 2503, 4)
    np.testing.assert_array_equal(state.support.at_next[1], arq.support_rows(data)[1])
    for stage in ("q", "policy"):
        _, m = run(carry._replace(state=state), data, stage, 0, 2)
        np.testing.assert_array_equal(m["online_support"], 0.0)
        flops = bench.update_flops(tr, stage, data, 1, lambda st: bench.synthetic_support(st, data, cfg))
        online = bench.update_flops(tr, stage, data, 1)  # no table: 3 sampler steps and the ODE in the update
        assert 0 < flops < 0.1 * online  # a lookup and tiny critics (~5e4 FLOPs here), not the score model
    cfg.agent.support = "online"
    assert not any(bench.needs_support(cfg, tr.stages, s.name) for s in tr.stages)


def test_bench_sampler_mode_times_pregeneration(capsys):
    """experiments/tools/bench.py --config=arq --sampler: one row each for the sampler, the likelihood (with its
    ODE step count) and both together, at the asked states per call; a non-ARQ config is refused."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    bench.FLAGS.unparse_flags()
    bench.FLAGS(["bench", "--sampler", "--sampler_states=1", "--sampler_steps=3", "--sampler_train=2",
                 "--sampler_traces=exact", "--sampler_repeats=1"])
    try:
        bench.bench_support("arq", bench.synthetic(1000), [1])
        out = capsys.readouterr().out
        rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 1 | 1 | 30 |")]
        assert [r[3].strip() for r in rows] == ["candidates", "likelihoods (exact)", "candidates with likelihoods (exact)"]
        assert all(float(r[6]) > 0 for r in rows) and int(rows[1][7]) > 0
        assert "3 PC steps" in out
        with pytest.raises(ValueError, match="--config=arq"):
            bench.bench_support("iql", bench.synthetic(10), [1])
    finally:
        bench.FLAGS.unparse_flags()


def test_awr_step_reads_the_first_target_critic_and_clips_its_weights():
    """w = min(exp(alpha A), weight_clip) with A from Qtarg_1 (not the online critic), at an alpha large enough
    that some weights are clipped and some are not; the actor's SGD step is then the gradient of
    -mean w log pi(a|s) with those weights."""
    import optax

    cfg = small_config(num_candidates=3, alpha=40.0, weight_clip=100.0, score_hidden_dims=(8,))
    rng = np.random.default_rng(9)
    n, m, obs_dim, act_dim = 8, 8, 3, 2
    state = arq.init(jax.random.PRNGKey(4), Spec(obs_dim, act_dim), cfg)
    actor = state.actor.replace(tx=optax.sgd(0.1), opt_state=optax.sgd(0.1).init(state.actor.params))
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda p: 0.6 * p + 0.1, state.critic.params), actor=actor,
                          threshold=jnp.asarray(-5.0, jnp.float32))
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    ll = jnp.asarray(rng.choice([-9.0, -1.0], size=(m, 3)), jnp.float32)
    table = f(m, 3, act_dim)
    state = state.replace(support=arq.Support(jnp.arange(n, dtype=jnp.int32), table, ll))
    data = Transitions(f(n, obs_dim), f(n, act_dim), f(n), f(n, obs_dim), jnp.zeros(n), jnp.zeros(n), f(n, act_dim), f(n),
                       jnp.zeros(n, jnp.int32))
    b = jax.device_get(sample(jax.random.PRNGKey(5), data, 0))  # every row once
    new, metrics = arq.policy_update(state, b, jax.random.PRNGKey(6), 0, cfg)
    acts = np.concatenate([np.asarray(b.actions)[:, None], np.asarray(table)], 1)
    keep = np.concatenate([np.ones((n, 1), bool), np.asarray(ll) > -5.0], 1)

    def weights(params):
        q = np_mlp(_layers(params["params"]["VmapCritic_0"]["MLP_0"], 0),
                   np.concatenate([np.repeat(np.asarray(b.observations)[:, None], 4, 1), acts], -1))[..., 0]
        adv = q[:, 0] - np.array([qi[k].mean() for qi, k in zip(q, keep)])
        return np.exp(40.0 * adv), np.minimum(np.exp(40.0 * adv), 100.0)

    raw, w = weights(state.critic_target)
    assert (raw > 100.0).any() and (raw < 100.0).any()  # the clip binds for some rows only
    np.testing.assert_allclose(float(metrics["adv_weight"]), w.mean(), rtol=1e-4)
    assert abs(float(metrics["adv_weight"]) - weights(state.critic.params)[1].mean()) > 1e-2 * w.mean()

    def loss(params):
        mean, log_std = state.actor.apply_fn(params, b.observations)
        return -(jnp.asarray(w, jnp.float32) * nets.gaussian_log_prob(b.actions, mean, log_std)).mean()

    g = jax.grad(loss)(state.actor.params)
    for x, p, gx in zip(*(jax.tree_util.tree_leaves(t) for t in (new.actor.params, state.actor.params, g))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(p) - 0.1 * np.asarray(gx), rtol=1e-4, atol=1e-5)
