"""Characteristic numbers of the baselines, each against an independent (NumPy / hand) computation:
IQL's expectile and AWR weights and value loss, CQL(H)'s importance-sampled logsumexp, BRAC's sampled
KL (closed form) and MMD divergence (NumPy, and a few training steps), the shared MMD (explicit
double loop), Onestep's SARSA target and advantage weights, %BC's episode selection."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import np_mlp, tiny_config
from offrl import nets
from offrl.algos import Spec, bc, brac, cql, iql, onestep
from offrl.data.dataset import DatasetInfo, Transitions, episodes_to_transitions, to_device


# ------------------------------------------------------------------------------- helpers
def _layers(mlp, member=None):
    pick = (lambda a: np.asarray(a, np.float64)) if member is None else (lambda a: np.asarray(a[member], np.float64))
    return [(pick(mlp[f"Dense_{i}"]["kernel"]), pick(mlp[f"Dense_{i}"]["bias"])) for i in range(len(mlp))]


def _batch(b=6, obs_dim=3, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return Transitions(
        observations=f(rng.normal(size=(b, obs_dim))),
        actions=f(rng.uniform(-0.9, 0.9, size=(b, act_dim))),
        rewards=f(rng.normal(size=b)),
        next_observations=f(rng.normal(size=(b, obs_dim))),
        terminals=f((np.arange(b) % 3 == 1).astype(np.float32)),
        timeouts=jnp.zeros(b), next_actions=f(rng.uniform(-0.9, 0.9, size=(b, act_dim))),
        returns=jnp.zeros(b), episode_ids=jnp.zeros(b, jnp.int32),
    )


def _np_mmd_loops(x, y, sigma, kernel):
    """MMD of two point sets (N, d), (M, d) by explicit loops over all pairs (V-statistic, + 1e-6 under the root)."""

    def k(u, v):
        dist = sum(abs(a - b) for a, b in zip(u, v)) if kernel == "laplacian" else sum((a - b) ** 2 for a, b in zip(u, v))
        return math.exp(-dist / (2.0 * sigma))

    def mean_k(a, b):
        return sum(k(u, v) for u in a for v in b) / (len(a) * len(b))

    return math.sqrt(mean_k(x, x) + mean_k(y, y) - 2.0 * mean_k(x, y) + 1e-6)


# ------------------------------------------------------------------------------- IQL
def test_iql_expectile_loss_by_hand():
    diff = jnp.asarray([-2.0, -0.5, 0.0, 0.5, 3.0])
    got = np.asarray(iql.expectile_loss(diff, 0.7))
    # positive residuals (Q above V) weigh 0.7, negative ones 0.3
    np.testing.assert_allclose(got, [0.3 * 4.0, 0.3 * 0.25, 0.0, 0.7 * 0.25, 0.7 * 9.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(iql.expectile_loss(diff, 0.5)), 0.5 * np.asarray(diff) ** 2, rtol=1e-6)


def test_iql_awr_weights_clip():
    got = np.asarray(iql.awr_weights(jnp.asarray([-1.0, 0.0, 0.5, 2.0]), 3.0, 100.0))
    np.testing.assert_allclose(got, [math.exp(-3.0), 1.0, math.exp(1.5), 100.0], rtol=1e-6)  # exp(6) = 403 -> 100


def test_iql_value_loss_matches_numpy():
    cfg = ml_collections.ConfigDict(dict(discount=0.9, num_steps=10, agent=iql.default_agent_config()))
    cfg.agent.hidden_dims = (4,)
    state = iql.init(jax.random.PRNGKey(0), Spec(3, 2), cfg)
    # target critics differ from the online ones, so using the wrong set changes the number
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda x: 0.6 * x + 0.1, state.critic.params))
    batch = _batch()
    o, a = np.asarray(batch.observations, np.float64), np.asarray(batch.actions, np.float64)
    ens = state.critic_target["params"]["VmapCritic_0"]["MLP_0"]
    q = np.min([np_mlp(_layers(ens, i), np.concatenate([o, a], -1))[:, 0] for i in range(2)], axis=0)
    v = np_mlp(_layers(state.value.params["params"]["MLP_0"]), o)[:, 0]
    # shift V by the median residual so that both sides of the expectile are exercised
    shift = float(np.median(q - v))
    vp = jax.tree_util.tree_map(lambda x: x, state.value.params)
    vp["params"]["MLP_0"]["Dense_1"]["bias"] = vp["params"]["MLP_0"]["Dense_1"]["bias"] + shift
    loss, _ = iql.value_loss(vp, state, batch, cfg)
    u = q - (v + shift)
    assert (u > 0).sum() == 3 and (u < 0).sum() == 3
    expected = np.mean(np.where(u > 0, 0.7, 0.3) * u**2)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


# ------------------------------------------------------------------------------- CQL
def _np_logsumexp(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_cql_logsumexp_matches_numpy(temperature):
    rng = np.random.default_rng(1)
    b, n, a_dim = 4, 5, 3
    q_rand, q_pi, q_next = (rng.normal(size=(2, b, n)) * 3 for _ in range(3))
    logp_pi, logp_next = rng.normal(size=(b, n)) - 1.0, rng.normal(size=(b, n)) - 2.0
    got = cql.cql_logsumexp(*(jnp.asarray(x, jnp.float32) for x in (q_rand, q_pi, logp_pi, q_next, logp_next)),
                            a_dim, temperature)
    # importance sampling: each of the 3N actions enters as Q / q(x) in density terms, i.e. Q - log q(x);
    # the uniform proposal on [-1, 1]^3 has density 0.5^3
    log_q_uniform = np.log(0.5**a_dim)
    terms = np.concatenate([q_rand - log_q_uniform, q_pi - logp_pi[None], q_next - logp_next[None]], -1)  # (2, B, 3N)
    expected = temperature * _np_logsumexp(terms / temperature)
    assert got.shape == (2, b)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------- shared MMD (BEAR, BRAC)
@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_shared_mmd_matches_double_loop(kernel):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 6, 3)) * 0.5 + 0.3
    got = np.asarray(nets.mmd(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), 1.5, kernel))
    expected = [_np_mmd_loops(x[i], y[i], 1.5, kernel) for i in range(2)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="kernel"):
        nets.mmd(jnp.asarray(x), jnp.asarray(y), 1.5, "cosine")


# ------------------------------------------------------------------------------- BRAC
def test_brac_sampled_kl_matches_closed_form():
    rng = np.random.default_rng(3)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    mean_p, mean_b = f(rng.normal(size=(3, 2)) * 0.5), f(rng.normal(size=(3, 2)) * 0.5)
    log_std_p, log_std_b = f(rng.uniform(-0.5, 0.3, size=(3, 2))), f(rng.uniform(-0.3, 0.5, size=(3, 2)))
    key = jax.random.PRNGKey(4)
    got = brac.sampled_kl(key, mean_p, log_std_p, mean_b, log_std_b, 20_000)
    closed = nets.gaussian_kl(mean_p, log_std_p, mean_b, log_std_b)
    # the same closed form written out in NumPy, so a wrong nets.gaussian_kl cannot hide a wrong estimator
    sp, sb = np.exp(np.asarray(log_std_p, np.float64)), np.exp(np.asarray(log_std_b, np.float64))
    dm = np.asarray(mean_p, np.float64) - np.asarray(mean_b, np.float64)
    np_kl = (np.log(sb / sp) + (sp**2 + dm**2) / (2 * sb**2) - 0.5).sum(-1)
    np.testing.assert_allclose(np.asarray(closed), np_kl, rtol=1e-5)
    assert np_kl.min() > 0.05  # far enough from 0 for a relative tolerance
    np.testing.assert_allclose(np.asarray(got), np_kl, rtol=0.05)
    # reparameterised: d KL / d mean_p = (mean_p - mean_b) / std_b^2 reaches p's parameters
    g = jax.grad(lambda m: brac.sampled_kl(key, m, log_std_p, mean_b, log_std_b, 20_000).sum())(mean_p)
    np.testing.assert_allclose(np.asarray(g), dm / sb**2, rtol=0.1, atol=0.02)


def test_brac_sampled_mmd_matches_numpy_on_the_same_samples():
    rng = np.random.default_rng(5)
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    b, n, a_dim = 3, 4, 2
    mean_p, mean_b = f(rng.normal(size=(b, a_dim))), f(rng.normal(size=(b, a_dim)))
    log_std_p, log_std_b = f(rng.uniform(-1, 0, size=(b, a_dim))), f(rng.uniform(-1, 0, size=(b, a_dim)))
    key = jax.random.PRNGKey(6)
    got = np.asarray(brac.sampled_mmd(key, mean_p, log_std_p, mean_b, log_std_b, n, 0.8, "laplacian"))
    # the samples the documented key convention gives: split(key) -> (p's, b's); actions tanh(mean + std eps)
    k_p, k_b = jax.random.split(key)
    eps_p = np.asarray(jax.random.normal(k_p, (b, n, a_dim)), np.float64)
    eps_b = np.asarray(jax.random.normal(k_b, (b, n, a_dim)), np.float64)
    a_p = np.tanh(np.asarray(mean_p, np.float64)[:, None] + np.exp(np.asarray(log_std_p, np.float64))[:, None] * eps_p)
    a_b = np.tanh(np.asarray(mean_b, np.float64)[:, None] + np.exp(np.asarray(log_std_b, np.float64))[:, None] * eps_b)
    expected = [_np_mmd_loops(a_p[i], a_b[i], 0.8, "laplacian") for i in range(b)]
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    # gradients reach pi through its reparameterised samples; pi_b's samples are constants
    gp, gb = jax.grad(lambda mp, mb: brac.sampled_mmd(key, mp, log_std_p, mb, log_std_b, n, 0.8).sum(), (0, 1))(mean_p, mean_b)
    assert float(jnp.abs(gp).sum()) > 0 and float(jnp.abs(gb).sum()) == 0


def test_brac_validates_mmd_options():
    cfg = tiny_config("brac_vp", **{"agent.divergence": "mmd"})
    brac.validate(cfg)
    for key, bad in (("mmd_sigma", 0.0), ("mmd_sigma", -1.0), ("mmd_kernel", "cosine"), ("divergence", "js")):
        c = tiny_config("brac_vp", **{"agent.divergence": "mmd", f"agent.{key}": bad})
        with pytest.raises(ValueError, match=key):
            brac.validate(c)


def test_brac_mmd_enters_penalty_and_regulariser_and_trains():
    cfg = tiny_config("brac_vp", steps=3, num_seeds=1, **{"agent.divergence": "mmd", "agent.mmd_sigma": 0.5,
                                                           "agent.mmd_kernel": "gaussian", "agent.warm_start": 2})
    brac.validate(cfg)
    spec = Spec(3, 2)
    batch = _batch(b=cfg.batch_size)
    state0 = brac.init(jax.random.PRNGKey(7), spec, cfg)
    key = jax.random.PRNGKey(8)

    def mmd_at(state, obs, k_div):  # the configured sigma is the reference's: exp(-d / sigma) = nets.mmd at sigma / 2
        mp, lp = state.actor.apply_fn(state.actor.params, obs)
        mb, lb = state.behavior.apply_fn(state.behavior.params, obs)
        return brac.sampled_mmd(k_div, mp, lp, mb, lb, cfg.agent.num_div_samples, 0.25, "gaussian", squared=True)

    # policy regulariser: the reported divergence is the MMD with the configured kernel and bandwidth
    _, info = brac.actor_loss(state0.actor.params, state0, batch, key, jnp.int32(0), cfg)
    k_div = jax.random.split(key)[1]
    np.testing.assert_allclose(float(info["divergence"]), float(mmd_at(state0, batch.observations, k_div).mean()), rtol=1e-5)
    # the divergence's gradient reaches the actor
    g = jax.grad(lambda p: brac._divergence(k_div, p, state0, batch.observations, cfg).mean())(state0.actor.params)
    assert sum(float(jnp.abs(x).sum()) for x in jax.tree_util.tree_leaves(g)) > 0

    # value penalty: vp's target is pr's minus gamma (1 - d) alpha MMD(s'), with the same sampled a'
    loss_vp, _ = brac.critic_loss(state0.critic.params, state0, batch, key, cfg)
    cfg_pr = cfg.copy_and_resolve_references()
    cfg_pr.agent.variant = "pr"
    loss_pr, _ = brac.critic_loss(state0.critic.params, state0, batch, key, cfg_pr)
    k_a, k_div = jax.random.split(jax.random.split(key)[0])  # critic key -> (target, penalty); target -> (a', D)
    mean, log_std = state0.actor.apply_fn(state0.actor.params, batch.next_observations)
    next_a = jnp.tanh(mean + jnp.exp(log_std) * jax.random.normal(k_a, (1,) + mean.shape))[0]
    next_v = np.asarray(state0.critic.apply_fn(state0.critic_target, batch.next_observations, next_a).min(0), np.float64)
    q = np.asarray(state0.critic.apply_fn(state0.critic.params, batch.observations, batch.actions), np.float64)
    r, d = np.asarray(batch.rewards, np.float64), np.asarray(batch.terminals, np.float64)
    div = np.asarray(mmd_at(state0, batch.next_observations, k_div), np.float64)
    y_pr = r + cfg.discount * (1 - d) * next_v
    y_vp = r + cfg.discount * (1 - d) * (next_v - cfg.agent.alpha * div)
    np.testing.assert_allclose(float(loss_pr), ((q - y_pr) ** 2).mean(-1).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(loss_vp), ((q - y_vp) ** 2).mean(-1).sum(), rtol=1e-5)

    # a few updates of every stage: finite losses, a positive divergence, the actor moves
    state, metrics = state0, {}
    for stage in brac.stages(cfg):
        upd = jax.jit(stage.update)
        for t in range(stage.num_steps):
            state, m = upd(state, batch, jax.random.fold_in(key, t), jnp.int32(t))
            metrics.update({f"{stage.name}/{k}": float(v) for k, v in m.items()})
    assert metrics and all(np.isfinite(v) for v in metrics.values()), metrics
    assert metrics["train/divergence"] > 0
    moved = [not np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(state.actor.params),
                                                        jax.tree_util.tree_leaves(state0.actor.params))]
    assert all(moved)


def test_brac_default_mmd_is_the_references_squared_laplacian_at_20():
    """divergences.py: laplacian_kernel(sigma=20) = exp(-|x - y|_1 / 20), mmd(use_sqrt=False), V-statistic."""
    cfg = tiny_config("brac_vp", **{"agent.divergence": "mmd"})
    assert (cfg.agent.mmd_sigma, cfg.agent.mmd_kernel, cfg.agent.mmd_squared) == (20.0, "laplacian", True)
    state = brac.init(jax.random.PRNGKey(3), Spec(3, 2), cfg)
    obs = _batch(b=5).observations
    key = jax.random.PRNGKey(4)
    got = np.asarray(brac._divergence(key, state.actor.params, state, obs, cfg), np.float64)
    n = cfg.agent.num_div_samples
    k_p, k_b = jax.random.split(key)
    mp, lp = (np.asarray(x, np.float64) for x in state.actor.apply_fn(state.actor.params, obs))
    mb, lb = (np.asarray(x, np.float64) for x in state.behavior.apply_fn(state.behavior.params, obs))
    a_p = np.tanh(mp[:, None] + np.exp(lp)[:, None] * np.asarray(jax.random.normal(k_p, (5, n, 2)), np.float64))
    a_b = np.tanh(mb[:, None] + np.exp(lb)[:, None] * np.asarray(jax.random.normal(k_b, (5, n, 2)), np.float64))

    def k(x, y):
        return np.exp(-np.abs(x[:, None] - y[None]).sum(-1) / 20.0).mean()

    want = [k(a_p[i], a_p[i]) + k(a_b[i], a_b[i]) - 2 * k(a_p[i], a_b[i]) for i in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)


def test_brac_defaults_equal_the_reference_code():
    """google-research behavior_regularized_offline_rl: README / run_primal.sh (brac_primal), the BC run
    in the README, brac_primal_agent.Agent and bc_agent.Agent signatures, networks.py."""
    import configs.brac_pr as pr_mod
    import configs.brac_vp as vp_mod

    c = vp_mod.get_config()
    ag = c.agent
    assert (c.algo, c.num_steps, c.batch_size, c.discount) == ("brac", 500_000, 256, 0.99)
    assert (ag.variant, ag.divergence, ag.alpha, ag.num_div_samples, ag.warm_start) == ("vp", "kl", 0.1, 4, 20_000)
    assert (ag.actor_lr, ag.critic_lr, ag.tau) == (3e-4, 1e-3, 0.005)  # PLR=3e-04; ('adam', 1e-3); update_rate
    assert (ag.alpha_entropy, ag.train_alpha_entropy) == (0.0, False)
    assert (ag.behavior_steps, ag.behavior_lr, tuple(ag.behavior_lr_milestones)) == (300_000, 5e-4, ())
    assert (ag.behavior_entropy, ag.behavior_clip_eps) == (True, 1e-3)
    assert tuple(ag.critic_hidden_dims) == (300, 300) and ag.num_critics == 2
    assert tuple(ag.actor_hidden_dims) == tuple(ag.behavior_hidden_dims) == (200, 200)
    assert (ag.log_std_min, ag.log_std_max, ag.log_std_mode) == (-5.0, 0.0, "tanh")
    assert (ag.reward_bonus, ag.grad_penalty, ag.num_target_samples, ag.shared_target_samples) == (0.0, 0.0, 1, False)
    assert (ag.mmd_sigma, ag.mmd_kernel, ag.mmd_squared) == (20.0, "laplacian", True)
    p = pr_mod.get_config()
    assert p.agent.variant == "pr" and {k: v for k, v in p.agent.items() if k != "variant"} == {
        k: v for k, v in ag.items() if k != "variant"}


def test_brac_warm_start_and_log_std_squash():
    cfg = tiny_config("brac_vp", **{"agent.warm_start": 5})
    state = brac.init(jax.random.PRNGKey(5), Spec(3, 2), cfg)
    batch = _batch(b=8)
    key = jax.random.PRNGKey(6)
    # the reference: q_start = global_step > warm_start (the update count before this one)
    losses = {t: float(brac.actor_loss(state.actor.params, state, batch, key, jnp.int32(t), cfg)[0]) for t in (4, 5, 6)}
    q, _, div = brac.policy_estimates(key, state.actor.params, state, batch.observations, state.critic.params, cfg)
    np.testing.assert_allclose(losses[5], cfg.agent.alpha * float(div.mean()), rtol=1e-5)
    np.testing.assert_allclose(losses[6], float((cfg.agent.alpha * div - q).mean()), rtol=1e-5)
    assert losses[4] == losses[5]
    # the actor's log-std lies in [-5, 0] through tanh, and is -2.5 where the raw output is 0
    net = brac.policy_net(2, (4,), cfg.agent)
    params = jax.tree_util.tree_map(jnp.zeros_like, net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3))))
    np.testing.assert_allclose(np.asarray(net.apply(params, jnp.ones((1, 3)))[1]), -2.5)
    big = jax.tree_util.tree_map(lambda x: x + 50.0, params)
    ls = np.asarray(net.apply(big, jnp.ones((1, 3)))[1])
    assert np.all(ls <= 0.0) and np.all(ls > -0.01)


def test_brac_sample_actions_log_density_is_the_tanh_change_of_variables():
    rng = np.random.default_rng(7)
    mean = jnp.asarray(rng.normal(size=(4, 2)) * 0.5, jnp.float32)
    log_std = jnp.asarray(rng.uniform(-1.0, -0.3, size=(4, 2)), jnp.float32)
    a, logp = brac.sample_actions(jax.random.PRNGKey(9), mean, log_std, 3)
    assert a.shape == (3, 4, 2) and logp.shape == (3, 4)
    u = np.arctanh(np.asarray(a, np.float64))
    m, s = np.asarray(mean, np.float64), np.exp(np.asarray(log_std, np.float64))
    gauss = (-0.5 * ((u - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(np.asarray(logp), gauss - np.log(1 - np.tanh(u) ** 2).sum(-1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("trained", [False, True])
def test_brac_target_is_the_soft_value_less_the_entropy_weight_times_log_density(trained):
    """y = r + bonus + gamma (1 - d) (Q(s', a') - w_ent log pi(a'|s') - alpha D(s')); w_ent is the config's
    alpha_entropy, or exp of the learned log-temperature with train_alpha_entropy."""
    cfg = tiny_config("brac_vp", **{"agent.alpha_entropy": 0.2, "agent.train_alpha_entropy": trained,
                                    "agent.reward_bonus": 0.5})
    state = brac.init(jax.random.PRNGKey(13), Spec(3, 2), cfg)
    state = state.replace(log_ent=state.log_ent.replace(
        params=jax.tree_util.tree_map(lambda x: jnp.full_like(x, math.log(0.3)), state.log_ent.params)))
    w_ent = 0.3 if trained else 0.2
    batch, key = _batch(b=8), jax.random.PRNGKey(14)
    q, logp, div = (np.asarray(x, np.float64) for x in brac.policy_estimates(
        key, state.actor.params, state, batch.next_observations, state.critic_target, cfg))
    assert np.abs(logp).min() > 0.1
    r, d = np.asarray(batch.rewards, np.float64), np.asarray(batch.terminals, np.float64)
    want = r + 0.5 + cfg.discount * (1 - d) * (q - w_ent * logp - cfg.agent.alpha * div)
    np.testing.assert_allclose(np.asarray(brac.critic_target(state, batch, key, cfg)), want, rtol=1e-5, atol=1e-5)


def test_brac_behaviour_temperature_steps_towards_minus_action_dim_entropy():
    """bc_agent's entropy bonus: log alpha_b descends log alpha_b (H + |A|); one Adam step (at the BC
    lr: the reference's behaviour optimizer steps both) moves it by -lr sign(H + |A|)."""
    cfg = tiny_config("brac_vp", **{"agent.log_std_min": -9.0})  # log-std about -4.5 at init: H well below -|A|
    assert cfg.agent.behavior_entropy
    state = brac.init(jax.random.PRNGKey(11), Spec(3, 2), cfg)
    new, info = brac.behavior_update(state, _batch(b=64), jax.random.PRNGKey(12), jnp.int32(0), cfg)
    h = float(info["behavior_entropy"])
    assert -64 < h < -2  # H + |A| and H + batch size differ in sign
    before = float(state.behavior_ent.params["value"])
    np.testing.assert_allclose(float(new.behavior_ent.params["value"]), before + cfg.agent.behavior_lr, rtol=1e-4)
    np.testing.assert_allclose(float(info["behavior_alpha"]), math.exp(before + cfg.agent.behavior_lr), rtol=1e-4)


def test_brac_critic_loss_adds_the_weighted_action_gradient_penalty():
    cfg = tiny_config("brac_vp", **{"agent.grad_penalty": 0.3})
    state = brac.init(jax.random.PRNGKey(15), Spec(3, 2), cfg)
    batch, key = _batch(b=8), jax.random.PRNGKey(16)
    loss, info = brac.critic_loss(state.critic.params, state, batch, key, cfg)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)  # pi's actions on the penalty's key
    a = jnp.tanh(mean + jnp.exp(log_std) * jax.random.normal(jax.random.split(key)[1], mean.shape))
    gp = float(brac.action_grad_penalty(state.critic.params, state, batch.observations, a))
    assert gp > 0
    np.testing.assert_allclose(float(info["grad_penalty"]), gp, rtol=1e-4)
    np.testing.assert_allclose(float(loss), float(info["critic_loss"]) + 0.3 * gp, rtol=1e-5)


def test_brac_actor_loss_and_learned_entropy_temperature():
    """After the warm start: L = mean(w_ent log pi(a|s) + alpha D(s) - Q(s, a)); with train_alpha_entropy the
    log-temperature then takes one Adam step on log w (H + |A|), H = -mean log pi."""
    cfg = tiny_config("brac_vp", **{"agent.alpha_entropy": 0.2, "agent.train_alpha_entropy": True, "agent.warm_start": 1,
                                    "agent.log_std_min": -9.0})  # log-std about -4.5: -16 < H < -2
    state = brac.init(jax.random.PRNGKey(17), Spec(3, 2), cfg)
    batch, key = _batch(b=16), jax.random.PRNGKey(18)
    q, logp, div = brac.policy_estimates(key, state.actor.params, state, batch.observations, state.critic.params, cfg)
    loss, info = brac.actor_loss(state.actor.params, state, batch, key, jnp.int32(5), cfg)
    np.testing.assert_allclose(float(loss), float((0.2 * logp + cfg.agent.alpha * div - q).mean()), rtol=1e-5)
    np.testing.assert_allclose(float(info["entropy"]), -float(logp.mean()), rtol=1e-5)
    new, info = brac.update(state, batch, jax.random.PRNGKey(19), jnp.int32(5), cfg)
    h = float(info["entropy"])
    assert -16 < h < -2  # so H + |A| and H + batch size differ in sign
    want = math.log(0.2) + cfg.agent.ent_lr  # H + |A| < 0: log w rises by lr (Adam's first step)
    np.testing.assert_allclose(float(new.log_ent.params["value"]), want, rtol=1e-4)
    np.testing.assert_allclose(float(info["alpha_ent"]), math.exp(want), rtol=1e-4)


def test_brac_acts_with_the_squashed_mean_or_a_squashed_sample():
    cfg = tiny_config("brac_vp")
    state = brac.init(jax.random.PRNGKey(20), Spec(3, 2), cfg)
    obs, key = _batch(b=5).observations, jax.random.PRNGKey(21)
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    np.testing.assert_allclose(np.asarray(brac.act(state, obs, key, cfg)), np.tanh(np.asarray(mean)), rtol=1e-6)
    sample = np.tanh(np.asarray(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)))
    np.testing.assert_allclose(np.asarray(brac.act(state, obs, key, cfg, deterministic=False)), sample, rtol=1e-5, atol=1e-6)


def test_brac_behaviour_lr_milestones_are_fractions_of_the_behaviour_steps():
    ag = tiny_config("brac_vp", **{"agent.behavior_steps": 10, "agent.behavior_lr_milestones": (0.5, 0.8)}).agent
    sched = brac.behavior_schedule(ag)
    np.testing.assert_allclose([float(sched(t)) for t in (4, 5, 7, 8)], [1.0, 0.1, 0.1, 0.01], rtol=1e-6)
    ag.behavior_steps, ag.behavior_lr_milestones = 3, (0.1,)  # rounds to step 0: the drop comes after one update
    np.testing.assert_allclose([float(brac.behavior_schedule(ag)(t)) for t in (0, 1)], [1.0, 0.1], rtol=1e-6)
    ag.behavior_lr_milestones = ()
    assert brac.behavior_schedule(ag) is None


# ------------------------------------------------------------------------------- Onestep
def test_onestep_sarsa_target_by_hand():
    got = onestep.sarsa_target(jnp.asarray([1.0, -0.5, 2.0]), jnp.asarray([0.0, 1.0, 0.0]),
                               jnp.asarray([3.0, 10.0, -1.0]), 0.9)
    np.testing.assert_allclose(np.asarray(got), [1.0 + 0.9 * 3.0, -0.5, 2.0 - 0.9], rtol=1e-6)


def test_onestep_advantage_weights_by_hand():
    q_data = jnp.asarray([1.0, 0.0, 5.0])
    q_samples = jnp.asarray([[0.0, 1.0, 2.0], [1.0, 1.0, -2.0], [0.0, 0.0, 0.0]])
    w, adv = onestep.advantage_weights(q_data, q_samples, 0.5, 20.0)
    np.testing.assert_allclose(np.asarray(adv), [0.0, 0.0, 5.0], rtol=1e-6)  # Q(s, a) - mean_j Q(s, a_j)
    np.testing.assert_allclose(np.asarray(w), [1.0, 1.0, 20.0], rtol=1e-6)  # exp(5 / 0.5) = 22026 -> clip 20
    w, adv = onestep.advantage_weights(jnp.asarray([0.5]), jnp.asarray([[0.0, 0.0]]), 2.0, 20.0)
    np.testing.assert_allclose(np.asarray(w), [math.exp(0.25)], rtol=1e-6)


# ------------------------------------------------------------------------------- %BC
def test_percent_bc_keeps_exactly_the_top_episodes():
    returns = [3.0, 10.0, -1.0, 7.0, 5.0]  # per episode; lengths differ so row counts tell them apart
    lengths = [2, 3, 4, 1, 2]
    eps = []
    for i, (ret, t) in enumerate(zip(returns, lengths)):
        eps.append(dict(observations=np.full((t + 1, 2), i, np.float32), actions=np.full((t, 1), 0.1 * i, np.float32),
                        rewards=np.full(t, ret / t), terminations=np.eye(1, t, t - 1)[0].astype(bool),
                        truncations=np.zeros(t, bool)))
    arrays, ep_ret, ep_len = episodes_to_transitions(eps)
    np.testing.assert_allclose(ep_ret, returns, rtol=1e-6)
    info = DatasetInfo("hand", None, 2, 1, -np.ones(1), np.ones(1), ep_ret, ep_len)
    data = to_device(arrays)
    for frac, top in ((0.4, [1, 3]), (0.5, [1, 3, 4]), (0.2, [1]), (0.01, [1])):  # ceil(frac * 5) episodes
        cfg = ml_collections.ConfigDict(dict(agent=dict(top_fraction=frac, top_by="episodes")))
        kept, kinfo = bc.prepare_data(data, info, cfg)
        obs_ids = np.asarray(kept.observations[:, 0]).astype(int)
        np.testing.assert_array_equal(np.unique(obs_ids), top, err_msg=f"top_fraction={frac}")
        assert len(obs_ids) == sum(lengths[i] for i in top)  # every transition of a kept episode, nothing else
        np.testing.assert_allclose(kinfo.episode_returns, [returns[i] for i in top])
        # episode ids renumbered 0..k-1 in the original order
        np.testing.assert_array_equal(np.asarray(kept.episode_ids), np.searchsorted(top, obs_ids))
    same, sinfo = bc.prepare_data(data, info, ml_collections.ConfigDict(dict(agent=dict(top_fraction=1.0))))
    assert same is data and sinfo is info
    assert bc.variant(ml_collections.ConfigDict(dict(agent=dict(top_fraction=0.1)))) == "10%bc"
    assert bc.variant(ml_collections.ConfigDict(dict(agent=dict(top_fraction=1.0)))) == "bc"
