"""BRAC+ equations on tiny networks, against NumPy hand computations and closed forms."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_close, np_mlp, trees_differ
from offrl import nets
from offrl.algos import Spec
from offrl.algos import bracplus as bp
from offrl.algos.common import adam
from offrl.config import base_config
from offrl.data import Transitions

A, OBS, Z = 2, 3, 4


def np_softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def layers(tree):
    """[(kernel, bias)] of one MLP's Dense_i, in order, as float64 NumPy."""
    keys = sorted(tree, key=lambda k: int(k.split("_")[1]))
    return [(np.asarray(tree[k]["kernel"], np.float64), np.asarray(tree[k]["bias"], np.float64)) for k in keys]


def np_gaussian(raw, lo=-10.0, hi=5.0):
    mean, r = np.split(raw, 2, axis=-1)
    return mean, np_softplus(np.clip(r, lo, hi))


def np_log_normal(x, mean, std):
    return np.sum(-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi), axis=-1)


def np_kl(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) summed over the last axis, written out."""
    return np.sum(np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5, axis=-1)


def small_config(discount=None, **agent):
    """The base config with BRAC+'s defaults, 8-unit networks, ``discount`` when given and ``agent`` overrides."""
    cfg = base_config()
    if discount is not None:
        cfg.discount = discount
    cfg.agent = bp.default_agent_config()
    for k in [k for k in cfg.agent if k.endswith("hidden_dims")]:
        cfg.agent[k] = (8,)
    cfg.agent.update(agent)
    return cfg


@pytest.fixture(scope="module")
def vae():
    module = bp.BehaviorVAE(A, Z, (16,))
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    params = jax.vmap(lambda k: module.init(k, jnp.zeros((1, OBS)), jnp.zeros((1, A))))(keys)
    return module, params


def member(params, i):
    return jax.tree_util.tree_map(lambda p: p[i], params)


def np_vae(p):
    p = p["params"]
    enc, dec = layers(p["encoder"]), layers(p["decoder"])

    def encode(obs, u):
        return np_gaussian(np_mlp(enc, np.concatenate([u, obs], -1)))

    def decode(obs, z):
        return np_gaussian(np_mlp(dec, np.concatenate([z, obs], -1)))

    return encode, decode


def test_gaussian_kls_match_closed_form_and_quadrature():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(5, A)), rng.normal(size=(5, A))
    s1, s2 = np.exp(rng.normal(size=(5, A)) * 0.5), np.exp(rng.normal(size=(5, A)) * 0.5)
    got = np.asarray(nets.gaussian_kl(jnp.asarray(m1), jnp.log(jnp.asarray(s1)), jnp.asarray(m2), jnp.log(jnp.asarray(s2))))
    np.testing.assert_allclose(got, np_kl(m1, s1, m2, s2), rtol=1e-5)
    got0 = np.asarray(nets.standard_normal_kl(jnp.asarray(m1), jnp.log(jnp.asarray(s1))))
    np.testing.assert_allclose(got0, np_kl(m1, s1, 0 * m1, 1 + 0 * s1), rtol=1e-5)
    # the closed form itself, by quadrature in one dimension
    x = np.linspace(-30, 30, 600_001)
    p = np.exp(-0.5 * ((x - m1[0, 0]) / s1[0, 0]) ** 2) / (s1[0, 0] * math.sqrt(2 * math.pi))
    log_p = np_log_normal(x[:, None], m1[0, 0], s1[0, 0])
    log_q = np_log_normal(x[:, None], m2[0, 0], s2[0, 0])
    quad = np.trapezoid(p * (log_p - log_q), x)
    np.testing.assert_allclose(np_kl(m1[:1, :1], s1[:1, :1], m2[:1, :1], s2[:1, :1])[0], quad, rtol=1e-6)


def test_elbo_matches_hand_computation(vae):
    module, params = vae
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(6, OBS)).astype(np.float32)
    act = np.tanh(rng.normal(size=(6, A))).astype(np.float32)
    act[0, 0] = 1.0  # clipped to 1 - 1e-6 before atanh
    batch = Transitions(jnp.asarray(obs), jnp.asarray(act), *(None,) * 7)
    state = bp.BRACPlusState(*(None,) * 11).replace(behavior=type("B", (), {"apply_fn": module.apply})())
    key = jax.random.PRNGKey(7)
    total, info = bp.behavior_loss(params, state, batch, key)
    eps = np.asarray(jax.random.normal(key, (2, 6, Z)), np.float64)
    u = np.arctanh(np.clip(act, np.float32(-1 + 1e-6), np.float32(1 - 1e-6)).astype(np.float64))
    want, nlls, kls = 0.0, [], []
    for b in range(2):
        encode, decode = np_vae(member(params, b))
        mu, std = encode(obs, u)
        z = mu + std * eps[b]
        mean, dstd = decode(obs, z)
        log_det = np.sum(np.log(1 - np.tanh(u) ** 2), -1)
        nll = -(np_log_normal(u, mean, dstd) - log_det)
        kl = np.sum(0.5 * (mu**2 + std**2) - np.log(std) - 0.5, -1)
        want += np.mean(nll + kl)
        nlls.append(nll)
        kls.append(kl)
    np.testing.assert_allclose(float(total), want, rtol=2e-4)
    np.testing.assert_allclose(float(info["behavior_loss"]), want / 2, rtol=2e-4)
    np.testing.assert_allclose(float(info["behavior_nll"]), np.mean(nlls), rtol=2e-4)
    np.testing.assert_allclose(float(info["behavior_kl"]), np.mean(kls), rtol=2e-4)


def test_bound_is_above_monte_carlo_kl(vae):
    """E_u[bound] >= KL(pi || pi_b) with pi_b's marginal density by importance sampling over z."""
    module, params = vae
    one = jax.tree_util.tree_map(lambda p: p[:1], params)  # pi_b = member 0 alone
    encode, decode = np_vae(member(params, 0))
    rng = np.random.default_rng(2)
    S, M, K = 3, 400, 400
    obs = rng.normal(size=(S, OBS))
    mean_pi, std_pi = 0.5 * rng.normal(size=(S, A)), np.exp(0.3 * rng.normal(size=(S, A)) - 0.5)
    u = mean_pi + std_pi * rng.normal(size=(M, S, A))
    obs_m = np.broadcast_to(obs, (M, S, OBS))
    bound = bp.kl_upper_bound(module.apply, one, jnp.asarray(obs_m, jnp.float32), jnp.asarray(u, jnp.float32),
                              jnp.asarray(np.broadcast_to(mean_pi, u.shape), jnp.float32),
                              jnp.log(jnp.asarray(np.broadcast_to(std_pi, u.shape), jnp.float32)),
                              jax.random.PRNGKey(0), 8)
    bound = np.asarray(bound).mean(0)
    # log pi_b(u|s) = log E_{z~q(z|s,u)} [p(u|s,z) N(z; 0, I) / q(z|s,u)]
    mu_q, std_q = encode(obs_m, u)
    z = mu_q + std_q * rng.normal(size=(K,) + mu_q.shape)
    mean_b, std_b = decode(np.broadcast_to(obs_m, (K,) + obs_m.shape), z)
    log_w = np_log_normal(u, mean_b, std_b) + np_log_normal(z, 0.0, 1.0) - np_log_normal(z, mu_q, std_q)
    log_pb = np.logaddexp.reduce(log_w, axis=0) - math.log(K)
    kl_mc = (np_log_normal(u, mean_pi, std_pi) - log_pb).mean(0)
    assert np.all(bound >= kl_mc), (bound, kl_mc)
    assert np.all(kl_mc > 0)


def test_bound_is_the_gaussian_kl_when_decoder_ignores_z_and_encoder_is_the_prior(vae):
    module, params = vae
    p = jax.tree_util.tree_map(lambda x: np.array(x[:1]), params)
    dec0 = p["params"]["decoder"]["Dense_0"]
    dec0["kernel"][:, :Z, :] = 0.0  # rows reading z
    enc_out = p["params"]["encoder"]["Dense_1"]
    enc_out["kernel"][:] = 0.0
    enc_out["bias"][:, :Z] = 0.0  # mu = 0
    enc_out["bias"][:, Z:] = math.log(math.e - 1.0)  # softplus(raw) = 1
    p = jax.tree_util.tree_map(jnp.asarray, p)
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(5, OBS))
    mean_pi, std_pi = rng.normal(size=(5, A)), np.exp(0.3 * rng.normal(size=(5, A)))
    u = mean_pi + std_pi * rng.normal(size=(5, A))
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    bound = np.asarray(bp.kl_upper_bound(module.apply, p, f(obs), f(u), f(mean_pi), jnp.log(f(std_pi)),
                                         jax.random.PRNGKey(1), 5))
    _, decode = np_vae(member(p, 0))
    mean_b, std_b = decode(obs, rng.normal(size=(5, Z)))  # any z
    np.testing.assert_allclose(bound, np_kl(mean_pi, std_pi, mean_b, std_b), rtol=1e-4, atol=1e-5)


def test_bound_by_hand_with_the_documented_latent_draws(vae):
    """kl_upper_bound on the fixture's two members: member m's latents z = mu + std eps, eps from
    split(key, 2)[m], KL to each decoded Gaussian averaged over the latents, plus KL(q || N(0, I))."""
    module, params = vae
    rng = np.random.default_rng(4)
    S, L = 4, 3
    obs = rng.normal(size=(S, OBS))
    mean_pi, log_std_pi = 0.5 * rng.normal(size=(S, A)), 0.3 * rng.normal(size=(S, A)) - 0.5
    u = mean_pi + np.exp(log_std_pi) * rng.normal(size=(S, A))
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    key = jax.random.PRNGKey(5)
    got = np.asarray(bp.kl_upper_bound(module.apply, params, f(obs), f(u), f(mean_pi), f(log_std_pi), key, L))
    want = 0.0
    for m, k in enumerate(jax.random.split(key, 2)):
        encode, decode = np_vae(member(params, m))
        mu, std = encode(obs, u)
        z = mu + std * np.asarray(jax.random.normal(k, (L, S, Z)), np.float64)
        mean_b, std_b = decode(np.broadcast_to(obs, (L, S, OBS)), z)
        prior_kl = np.sum(0.5 * (mu**2 + std**2) - np.log(std) - 0.5, -1)
        want = want + np_kl(mean_pi, np.exp(log_std_pi), mean_b, std_b).mean(0) + prior_kl
    np.testing.assert_allclose(got, want / 2, rtol=1e-4, atol=1e-5)


def _dual_setup(state_dependent):
    mod = bp.Multiplier(state_dependent, hidden_dims=(), initial=10.0)
    obs = jnp.eye(4, dtype=jnp.float32)  # one-hot states: alpha(s_i) has its own weight
    params = mod.init(jax.random.PRNGKey(0), obs)
    if state_dependent:  # equal raw outputs, so the shared bias sees a zero gradient below
        params = jax.tree_util.tree_map(jnp.zeros_like, params)
    from flax.training.train_state import TrainState

    return TrainState.create(apply_fn=mod.apply, params=params, tx=adam(1e-2)), obs


def test_dual_step_raises_alpha_where_kl_exceeds_eps_and_lowers_it_elsewhere():
    alpha, obs = _dual_setup(True)
    eps = 0.7
    kl = eps + jnp.asarray([1.0, -1.0, 2.0, -2.0])  # deltas sum to zero
    before = np.asarray(alpha.apply_fn(alpha.params, obs))
    after = np.asarray(bp.alpha_step(alpha, obs, kl, eps).apply_fn(bp.alpha_step(alpha, obs, kl, eps).params, obs))
    np.testing.assert_allclose(before, 10.0, rtol=1e-5)
    assert after[0] > before[0] and after[2] > before[2]
    assert after[1] < before[1] and after[3] < before[3]


def test_multiplier_starts_at_its_value_and_is_capped():
    np.testing.assert_allclose(float(jax.nn.softplus(bp.inverse_softplus(0.1))), 0.1, rtol=1e-5)
    np.testing.assert_allclose(float(bp.inverse_softplus(1e4)), 1e4, rtol=1e-6)
    mod = bp.Multiplier(True, hidden_dims=(), initial=10.0)
    obs = jnp.eye(2, dtype=jnp.float32)
    params = jax.tree_util.tree_map(lambda x: x + 1e5, mod.init(jax.random.PRNGKey(0), obs))
    np.testing.assert_allclose(np.asarray(mod.apply(params, obs)), bp.LAGRANGE_MAX, rtol=1e-6)


def test_multiplier_lower_bound_holds_in_the_forward_pass():
    """The gradient-penalty weight's multiplier is floored at its start value (lo): clipped in the value only."""
    mod = bp.Multiplier(False, initial=2.0, lo=2.0)
    obs = jnp.zeros((3, OBS), jnp.float32)
    params = jax.tree_util.tree_map(lambda x: x - 50.0, mod.init(jax.random.PRNGKey(0), obs))
    np.testing.assert_allclose(np.asarray(mod.apply(params, obs)), 2.0, rtol=1e-5)
    free = bp.Multiplier(False, initial=2.0)
    assert float(free.apply(params, obs)[0]) < 1e-10


def test_actor_std_is_softplus_of_the_output_clipped_to_minus_20_and_5():
    actor = bp.SquashedGaussianActor(A, (4,))
    obs = jnp.ones((2, OBS), jnp.float32)
    params = jax.tree_util.tree_map(jnp.zeros_like, actor.init(jax.random.PRNGKey(0), obs))
    for raw, want in ((-30.0, np_softplus(-20.0)), (-19.0, np_softplus(-19.0)), (4.0, np_softplus(4.0)), (30.0, np_softplus(5.0))):
        p = jax.tree_util.tree_map(lambda x: x, params)
        p["params"]["MLP_0"]["Dense_1"]["bias"] = jnp.full((2 * A,), raw, jnp.float32)
        mean, log_std = actor.apply(p, obs)
        np.testing.assert_allclose(np.asarray(mean), raw, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(log_std), math.log(want), rtol=1e-5)


def test_clip_atanh_is_finite_at_the_box_edges():
    edge = math.atanh(1 - bp.ATANH_EPS)
    got = np.asarray(bp.clip_atanh(jnp.asarray([-1.0, -0.5, 1.0])), np.float64)
    np.testing.assert_allclose(got, [-edge, math.atanh(-0.5), edge], rtol=1e-3)


def test_step_decay_is_the_references_piecewise_constant_at_fifths():
    sched = bp.step_decay(2.0, 10)  # boundaries 2, 4, 6, 8; factors .5, .2, .5, .2 (cumulative 1, .5, .1, .05, .01)
    got = [float(sched(t)) for t in range(10)]
    np.testing.assert_allclose(got, 2.0 * np.array([1, 1, .5, .5, .1, .1, .05, .05, .01, .01]), rtol=1e-6)
    np.testing.assert_allclose(float(bp.step_decay(1.0, 3)(1)), 0.5, rtol=1e-6)  # fewer than 5 steps: every step
    np.testing.assert_allclose([float(bp.step_decay(1.0, 12)(t)) for t in (1, 2)], [1.0, 0.5], rtol=1e-6)  # 12 // 5 = 2


def test_scalar_switch_gives_one_shared_alpha():
    alpha, obs = _dual_setup(False)
    kl = 0.7 + jnp.asarray([1.0, -0.5, 2.0, -0.5])  # violated on average
    new = bp.alpha_step(alpha, obs, kl, 0.7)
    vals = np.asarray(new.apply_fn(new.params, obs))
    assert np.all(vals == vals[0]) and vals[0] > 10.0
    assert jax.tree_util.tree_leaves(new.params)[0].shape == ()
    # the agent's switch
    cfg = small_config()
    o = jnp.asarray(np.random.default_rng(0).normal(size=(4, OBS)), jnp.float32)
    for flag, shared in ((False, True), (True, False)):
        cfg.agent.state_alpha = flag
        s = bp.init(jax.random.PRNGKey(0), Spec(OBS, A), cfg)
        v = np.asarray(s.alpha.apply_fn(s.alpha.params, o))
        assert np.allclose(v, v[0]) == shared


def _critic():
    critic = nets.critic_ensemble(2, (8,))
    params = critic.init(jax.random.PRNGKey(4), jnp.zeros((1, OBS)), jnp.zeros((1, A)))
    return critic, params


def _np_min_q_grad(params, obs, act, h=1e-5):
    nets_np = [layers(jax.tree_util.tree_map(lambda x: x[i], params["params"]["VmapCritic_0"]["MLP_0"])) for i in range(2)]

    def min_q(a):
        x = np.concatenate([obs, a], -1)
        return np.minimum(*[np_mlp(n, x)[..., 0] for n in nets_np])

    g = np.zeros_like(act)
    for j in range(act.shape[-1]):
        d = np.zeros_like(act)
        d[:, j] = h
        g[:, j] = (min_q(act + d) - min_q(act - d)) / (2 * h)
    return g


@pytest.mark.parametrize("gate", ["hard", "softplus"])
def test_gated_gradient_penalty(gate):
    critic, params = _critic()
    rng = np.random.default_rng(5)
    obs, act = rng.normal(size=(4, OBS)), np.tanh(rng.normal(size=(4, A)))
    kl, eps_gp = np.asarray([0.1, 0.7, 1.0, 2.0]), 0.7
    cfg = base_config()
    cfg.agent = bp.default_agent_config()
    cfg.agent.gp_gate = gate
    cfg.agent.gp_squared = gate == "hard"  # the paper's hard gate on the squared norm; the reference's norm
    gp = np.asarray(bp.gradient_penalty(critic.apply, params, jnp.asarray(obs, jnp.float32), jnp.asarray(act, jnp.float32),
                                        jnp.asarray(kl, jnp.float32), eps_gp, cfg))
    g = _np_min_q_grad(jax.tree_util.tree_map(np.asarray, params), obs, act)
    norm2 = (g**2).sum(-1)
    if gate == "hard":
        assert np.all(gp[:2] == 0.0)  # KL <= eps_GP: exactly zero
        np.testing.assert_allclose(gp[2:], norm2[2:], rtol=1e-3)
    else:
        w = np_softplus(kl - eps_gp)
        np.testing.assert_allclose(gp, np.sqrt(norm2) * w / w.max(), rtol=1e-3)
    # every state far under the gate (softplus underflows to 0): no penalty, and finite
    far = bp.gradient_penalty(critic.apply, params, jnp.asarray(obs, jnp.float32), jnp.asarray(act, jnp.float32),
                              jnp.asarray(kl, jnp.float32), 1e4, cfg)
    assert np.all(np.asarray(far) == 0.0)


def test_epoch_statistic_is_mean_plus_std_of_the_epochs_kls():
    st = bp.Stats.zeros()
    a, b = np.asarray([0.5, 1.0, 4.0]), np.asarray([2.0, 3.0, 0.0])
    st = bp.accumulate(st, jnp.asarray(a), jnp.asarray(True))
    st = bp.end_epoch(st, jnp.asarray(False))
    st = bp.accumulate(st, jnp.asarray(b), jnp.asarray(True))
    st = bp.end_epoch(st, jnp.asarray(True))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(float(st.eps_gp), both.mean() + both.std(), rtol=1e-5)
    assert float(st.kl_n) == 0.0 and float(st.kl_sum) == 0.0


def _batch(rng, n=16, terminal=0.0):
    d = dict(observations=rng.normal(size=(n, OBS)), actions=np.tanh(rng.normal(size=(n, A))), rewards=rng.uniform(size=n),
             next_observations=rng.normal(size=(n, OBS)), terminals=np.full(n, terminal), timeouts=np.zeros(n),
             next_actions=np.zeros((n, A)), returns=np.zeros(n), episode_ids=np.zeros(n))
    return Transitions(**{k: jnp.asarray(v, jnp.float32) for k, v in d.items()})


def test_stages_set_thresholds_and_hand_pi0_to_the_main_policy():
    cfg = small_config(behavior_steps=3, pretrain_steps=3, epoch_length=2, generalization_threshold=0.5, num_ensembles=2)
    cfg.reward_normalization = "minmax"
    cfg.num_steps = 2
    rng = np.random.default_rng(6)
    state = bp.init(jax.random.PRNGKey(0), Spec(OBS, A), cfg)
    behavior, pretrain, train = [jax.jit(s.update) for s in bp.stages(cfg)]
    losses, kls = [], []
    for t in range(3):
        state, m = behavior(state, _batch(rng), jax.random.PRNGKey(t), jnp.int32(t))
        losses.append(float(m["behavior_loss"]))
    np.testing.assert_allclose(float(state.stats.target_entropy), np.mean(losses[1:]) - A * math.log(4.0), rtol=1e-5)
    for t in range(3):
        state, m = pretrain(state, _batch(rng), jax.random.PRNGKey(10 + t), jnp.int32(t))
        kls.append(float(m["pretrain_kl"]))
    np.testing.assert_allclose(float(state.stats.eps_kl), np.mean(kls[1:]) + 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(state.stats.eps_gp), np.mean(kls[1:]) + 1.0, rtol=1e-5)
    pi0 = state.pretrain_actor.params
    started = bp.start_main(state)
    for x, y in zip(jax.tree_util.tree_leaves(started.actor.params), jax.tree_util.tree_leaves(pi0)):
        np.testing.assert_array_equal(x, y)
    state, m = train(state, _batch(rng), jax.random.PRNGKey(20), jnp.int32(0))
    assert np.isfinite(float(m["critic_loss"])) and float(m["eps_kl"]) == float(state.stats.eps_kl)
    for stage in bp.stages(cfg):  # experiments/tools/bench.py traces each stage with a Python int step
        jax.make_jaxpr(lambda s, b, k: stage.update(s, b, k, 1))(state, _batch(rng), jax.random.PRNGKey(0))


def test_backup_uses_next_states_terminals_and_target_critic():
    cfg = small_config(0.9, max_q_backup=False, target_policy=False)  # the paper's plain backup
    state = bp.init(jax.random.PRNGKey(1), Spec(OBS, A), cfg)
    state = state.replace(critic_target=jax.tree_util.tree_map(lambda x: x + 0.3, state.critic_target))
    batch = _batch(np.random.default_rng(7))
    batch = batch._replace(terminals=batch.terminals.at[:5].set(1.0))
    key = jax.random.PRNGKey(2)
    y = np.asarray(bp.target_q(state, batch, key, cfg))
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.next_observations)
    a = nets.tanh_gaussian_sample(key, mean[None], log_std[None])[0][0]
    q = np.asarray(state.critic.apply_fn(state.critic_target, batch.next_observations, a)).min(0)
    want = np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * q
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    # the reference's backup: max over 5 actions of the Polyak-averaged policy
    cfg.agent.max_q_backup, cfg.agent.target_policy = True, True
    state = state.replace(actor_target=jax.tree_util.tree_map(lambda x: 0.5 * x, state.actor.params))
    y5 = np.asarray(bp.target_q(state, batch, key, cfg))
    mean, log_std = state.actor.apply_fn(state.actor_target, batch.next_observations)
    a5 = nets.tanh_gaussian_sample(key, jnp.broadcast_to(mean, (5,) + mean.shape), jnp.broadcast_to(log_std, (5,) + mean.shape))[0]
    q5 = np.stack([np.asarray(state.critic.apply_fn(state.critic_target, batch.next_observations, x)).min(0) for x in a5])
    np.testing.assert_allclose(y5, np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * q5.max(0),
                               rtol=1e-5, atol=1e-6)


def test_validate_names_the_bad_key():
    cfg = base_config()
    cfg.agent = bp.default_agent_config()
    cfg.agent.gp_gate = "sigmoid"
    with pytest.raises(ValueError, match="gp_gate"):
        bp.validate(cfg)


def test_kl_backup_switch_subtracts_alpha_of_next_state_times_kl():
    """The reference's kl_backup (off by default, as there): y_on = y_off - gamma (1 - d) alpha(s')
    mean_j KL(s'; u_j) / c, with alpha at s' (state-dependent here, so s in place of s' would differ),
    the KL of the backup policy's own samples, and nothing for terminal transitions."""
    cfg = small_config(0.9)
    assert cfg.agent.kl_backup is False
    cfg.agent.state_alpha, cfg.agent.kl_backup_scale = True, 2.5
    state = bp.init(jax.random.PRNGKey(4), Spec(OBS, A), cfg)
    state = state.replace(actor_target=jax.tree_util.tree_map(lambda x: 0.5 * x, state.actor.params))
    batch = _batch(np.random.default_rng(8))
    batch = batch._replace(terminals=batch.terminals.at[:5].set(1.0))
    key = jax.random.PRNGKey(5)
    y_off = np.asarray(bp.target_q(state, batch, key, cfg))
    cfg.agent.kl_backup = True
    y_on = np.asarray(bp.target_q(state, batch, key, cfg))
    mean, log_std = state.actor.apply_fn(state.actor_target, batch.next_observations)
    shape = (cfg.agent.num_samples,) + mean.shape
    mean_n, log_std_n = jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape)
    u = nets.tanh_gaussian_sample(key, mean_n, log_std_n)[2]
    s2 = jnp.broadcast_to(batch.next_observations, (shape[0],) + batch.next_observations.shape)
    kl = np.asarray(bp.kl_upper_bound(state.behavior.apply_fn, state.behavior.params, s2, u, mean_n, log_std_n,
                                      jax.random.fold_in(key, 1), cfg.agent.num_latents)).mean(0)
    alpha_next = np.asarray(state.alpha.apply_fn(state.alpha.params, batch.next_observations))
    alpha_here = np.asarray(state.alpha.apply_fn(state.alpha.params, batch.observations))
    assert np.all(kl > 0) and not np.allclose(alpha_next, alpha_here)
    live = 1.0 - np.asarray(batch.terminals)
    np.testing.assert_allclose(y_on, y_off - 0.9 * live * alpha_next * kl / 2.5, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y_on[:5], y_off[:5])  # terminal: no backup, no penalty
    assert np.all(y_on[5:] < y_off[5:])  # a penalty, not a bonus


def test_paper_table_columns_have_their_own_configs_and_thresholds():
    """Each column of configs/tables/bracplus_table1.py maps to its own config file (reproduce.py
    names a cell's run folder after it), the alpha(s) column really sets state_alpha, both BRAC+
    columns get the reference's per-task threshold, and no paper number is claimed."""
    import importlib

    from configs.tables import bracplus_table1 as table

    assert len(set(table.COLUMNS.values())) == len(table.COLUMNS)
    cells = {}
    for col, module in table.COLUMNS.items():
        cfg = importlib.import_module(f"configs.{module}").get_config()
        for k, v in table.preset(col, "hopper-medium-replay-v0").items():
            cfg.update_from_flattened_dict({k: v})
        cells[col] = cfg
    assert cells["BRAC+"].agent.state_alpha is False and cells["BRAC+ alpha(s)"].agent.state_alpha is True
    assert cells["BRAC+"].agent.generalization_threshold == cells["BRAC+ alpha(s)"].agent.generalization_threshold == 3.0
    assert cells["BRAC-vp"].algo == "brac" and cells["BRAC-vp"].agent.variant == "vp"
    assert all(row == {} for row in table.PAPER.values()) and "hopper-medium-v0" in table.PAPER


# ---------------------------------------------------------------- the losses and steps composed from their parts
def _with_multiplier(ts, value, sgd=False):
    """The TrainState of a scalar Multiplier set to ``value`` (optionally with plain SGD at lr 1, so one step
    moves the raw parameter by exactly minus its gradient)."""
    import optax

    params = jax.tree_util.tree_map(lambda x: jnp.full_like(x, bp.inverse_softplus(value)), ts.params)
    return ts.replace(params=params, **({"tx": optax.sgd(1.0), "opt_state": optax.sgd(1.0).init(params)} if sgd else {}))


def _raw(ts):
    return float(jax.tree_util.tree_leaves(ts.params)[0])


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("entropy_reg", [True, False])
def test_pretrain_loss_is_the_kl_bound_less_beta_log_density(entropy_reg):
    cfg = small_config(0.9, num_ensembles=2, entropy_reg=entropy_reg)
    state = bp.init(jax.random.PRNGKey(30), Spec(OBS, A), cfg)
    state = state.replace(pretrain_beta=_with_multiplier(state.pretrain_beta, 3.0))
    batch, key = _batch(np.random.default_rng(31), n=6), jax.random.PRNGKey(32)
    params = state.pretrain_actor.params
    loss, (kl, logp) = bp.pretrain_loss(params, state, batch, key, cfg)
    _, logp1, kl1 = bp._policy_kl(state, state.pretrain_actor.apply_fn, params, batch.observations, key, 1, cfg)
    np.testing.assert_allclose(np.asarray(kl), np.asarray(kl1[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(logp), np.asarray(logp1[0]), rtol=1e-6)
    want = np.mean(np.asarray(kl1[0]) - (3.0 * np.asarray(logp1[0]) if entropy_reg else 0.0))
    np.testing.assert_allclose(float(loss), want, rtol=1e-4, atol=1e-5)


def test_beta_step_descends_beta_times_log_density_plus_target_entropy():
    """beta (softplus(raw)) takes a step on beta (mean log pi + H_0): d/d raw = sigmoid(raw) (mean log pi + H_0);
    beta rises when the entropy -mean log pi exceeds H_0 (the constraint H(pi) <= H_0)."""
    state = bp.init(jax.random.PRNGKey(33), Spec(OBS, A), small_config(0.9, num_ensembles=2))
    beta = _with_multiplier(state.pretrain_beta, 3.0, sgd=True)
    obs = jnp.zeros((5, OBS), jnp.float32)
    raw = _raw(beta)
    for mean_logp, h0 in ((-1.0, 3.0), (-2.5, 0.5)):
        new = bp.beta_step(beta, obs, jnp.asarray(mean_logp), jnp.asarray(h0))
        np.testing.assert_allclose(_raw(new), raw - _sigmoid(raw) * (mean_logp + h0), rtol=1e-5)


def test_end_epoch_of_one_value_and_of_an_empty_epoch():
    one = bp.end_epoch(bp.accumulate(bp.Stats.zeros(), jnp.asarray([5.0]), True), jnp.asarray(True))
    np.testing.assert_allclose(float(one.eps_gp), 5.0, rtol=1e-6)  # mean 5, std 0 over a count of one
    three = bp.end_epoch(bp.accumulate(bp.Stats.zeros(), jnp.asarray([1.0, 2.0, 3.0]), True), jnp.asarray(True))
    np.testing.assert_allclose(float(three.eps_gp), 2.0 + math.sqrt(2.0 / 3.0), rtol=1e-5)
    assert float(three.kl_sq) == float(three.kl_sum) == float(three.kl_n) == 0.0
    empty = bp.end_epoch(bp.Stats.zeros(), jnp.asarray(True))  # nothing accumulated: eps_GP 0, nothing nan
    assert all(float(x) == 0.0 for x in jax.tree_util.tree_leaves(empty))
    kept = bp.end_epoch(bp.accumulate(bp.Stats.zeros(), jnp.asarray([1.0, 2.0]), True), jnp.asarray(False))
    assert float(kept.kl_n) == 2.0 and float(kept.kl_sum) == 3.0 and float(kept.eps_gp) == 0.0


def test_target_entropy_from_the_last_epochs_behaviour_loss_or_given():
    cfg = small_config(0.9, num_ensembles=2, behavior_steps=10, epoch_length=3, std_scale=4.0)
    state = bp.init(jax.random.PRNGKey(34), Spec(OBS, A), cfg)
    batch = _batch(np.random.default_rng(35), n=6)
    s6, m6 = bp.behavior_update(state, batch, jax.random.PRNGKey(1), jnp.int32(6), cfg)  # before the last epoch
    np.testing.assert_allclose(float(m6["target_entropy"]), -A * math.log(4.0), rtol=1e-6)
    s7, m7 = bp.behavior_update(s6, batch, jax.random.PRNGKey(2), jnp.int32(7), cfg)  # its first update
    np.testing.assert_allclose(float(m7["target_entropy"]), float(m7["behavior_loss"]) - A * math.log(4.0), rtol=1e-5)
    np.testing.assert_allclose(float(s7.stats.target_entropy), float(m7["target_entropy"]), rtol=1e-6)
    cfg.agent.target_entropy = -1.5
    _, m = bp.behavior_update(state, batch, jax.random.PRNGKey(1), jnp.int32(7), cfg)
    assert float(m["target_entropy"]) == -1.5


def test_pretrain_update_sets_eps_kl_from_one_state_batches():
    cfg = small_config(0.9, num_ensembles=2, pretrain_steps=4, epoch_length=2, generalization_threshold=0.5)
    state = bp.init(jax.random.PRNGKey(36), Spec(OBS, A), cfg)
    state = state.replace(pretrain_beta=_with_multiplier(state.pretrain_beta, 3.0))
    batch = _batch(np.random.default_rng(37), n=1)  # one state: a count of 1 per update
    kls = []
    for t in range(4):
        _, (kl, logp) = bp.pretrain_loss(state.pretrain_actor.params, state, batch, jax.random.PRNGKey(40 + t), cfg)
        state, m = bp.pretrain_update(state, batch, jax.random.PRNGKey(40 + t), jnp.int32(t), cfg)
        np.testing.assert_allclose(float(m["pretrain_kl"]), float(kl.mean()), rtol=1e-5)
        np.testing.assert_allclose(float(m["pretrain_entropy"]), -float(logp.mean()), rtol=1e-5)
        kls.append(float(m["pretrain_kl"]))
        if t == 2:  # the last epoch's first update: a count of one
            np.testing.assert_allclose(float(m["eps_kl"]), kls[2] + 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(m["eps_kl"]), np.mean(kls[2:]) + 0.5, rtol=1e-5)
    np.testing.assert_allclose(float(state.stats.eps_gp), np.mean(kls[2:]) + 1.0, rtol=1e-5)
    beta = state.pretrain_beta
    np.testing.assert_allclose(float(m["beta"]), float(beta.apply_fn(beta.params, batch.observations)[0]), rtol=1e-6)
    cfg.agent.max_kl = 0.25
    _, m = bp.pretrain_update(state, batch, jax.random.PRNGKey(50), jnp.int32(3), cfg)
    assert float(m["eps_kl"]) == 0.25


@pytest.mark.parametrize("use_gp", [False, True])
def test_critic_loss_is_half_the_summed_squared_errors_plus_the_weighted_penalty(use_gp):
    cfg = small_config(0.9, num_ensembles=2, use_gp=use_gp, gp_gate="softplus")
    state = bp.init(jax.random.PRNGKey(38), Spec(OBS, A), cfg)
    state = state.replace(gp_weight=_with_multiplier(state.gp_weight, 0.4),
                          stats=state.stats.replace(eps_gp=jnp.asarray(-100.0)))  # every state gated in
    batch, key = _batch(np.random.default_rng(39), n=6), jax.random.PRNGKey(40)
    loss, info = bp.critic_loss(state.critic.params, state, batch, key, cfg)
    k_t, k_gp = jax.random.split(key)
    y = np.asarray(bp.target_q(state, batch, k_t, cfg), np.float64)
    q = np.asarray(state.critic.apply_fn(state.critic.params, batch.observations, batch.actions), np.float64)
    td = 0.5 * ((q - y) ** 2).sum(0)
    gp = np.zeros_like(td)
    if use_gp:
        a, _, kl = bp._policy_kl(state, state.actor.apply_fn, state.actor.params, batch.observations, k_gp, 1, cfg)
        gp = np.asarray(bp.gradient_penalty(state.critic.apply_fn, state.critic.params, batch.observations, a[0], kl[0],
                                            state.stats.eps_gp, cfg), np.float64)
        assert gp.min() > 0
    np.testing.assert_allclose(float(loss), np.mean(td + (0.4 if use_gp else 0.0) * gp), rtol=1e-4)
    np.testing.assert_allclose(float(info["critic_loss"]), td.mean(), rtol=1e-4)


def test_actor_loss_composes_q_alpha_times_kl_excess_and_beta_log_density():
    cfg = small_config(0.9, num_ensembles=2, num_samples=3)
    state = bp.init(jax.random.PRNGKey(41), Spec(OBS, A), cfg)
    state = state.replace(alpha=_with_multiplier(state.alpha, 2.0), beta=_with_multiplier(state.beta, 0.7),
                          stats=state.stats.replace(eps_kl=jnp.asarray(0.3)))
    batch, key = _batch(np.random.default_rng(42), n=6), jax.random.PRNGKey(43)
    loss, (kl, logp, q) = bp.actor_loss(state.actor.params, state, batch, key, cfg)
    a, logp3, kl3 = bp._policy_kl(state, state.actor.apply_fn, state.actor.params, batch.observations, key, 3, cfg)
    q3 = np.stack([np.asarray(state.critic.apply_fn(state.critic.params, batch.observations, x)).min(0) for x in a])
    want = -q3.mean(0) + 2.0 * (np.asarray(kl3).mean(0) - 0.3) - 0.7 * np.asarray(logp3).mean(0)
    np.testing.assert_allclose(float(loss), want.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(q), q3.mean(0), rtol=1e-5)


def test_main_update_starts_from_pi0_at_its_first_step_only_and_steps_the_gp_weight():
    cfg = small_config(0.9, num_ensembles=2, use_gp=True, gp_weight_learned=True, tau=0.1)
    state = bp.init(jax.random.PRNGKey(44), Spec(OBS, A), cfg)
    pi0 = jax.tree_util.tree_map(lambda x: x + 0.25, state.pretrain_actor.params)
    state = state.replace(pretrain_actor=state.pretrain_actor.replace(params=pi0),
                          gp_weight=_with_multiplier(state.gp_weight, 0.5, sgd=True))
    batch = _batch(np.random.default_rng(45), n=6)
    raw = _raw(state.gp_weight)
    begin = {st.name: st for st in bp.stages(cfg)}["train"].begin  # start_main, once at the stage's step 0
    for step, start in ((0, pi0), (1, state.actor_target)):
        new, m = bp.update(begin(state) if step == 0 else state, batch, jax.random.PRNGKey(46), jnp.int32(step), cfg)
        want = jax.tree_util.tree_map(lambda t, p: 0.9 * t + 0.1 * p, start, new.actor.params)  # Polyak from pi0 at step 0
        for x, y in zip(jax.tree_util.tree_leaves(new.actor_target), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
        # the GP weight's dual ascent on lambda (mean GP - max_ood_grad_norm), floored at gp_weight in value only
        gap = float(m["gp"]) - cfg.agent.max_ood_grad_norm
        np.testing.assert_allclose(_raw(new.gp_weight), raw + _sigmoid(raw) * gap, rtol=1e-5, atol=1e-7)
    cfg.agent.use_gp = False  # no penalty: the weight stays
    new, _ = bp.update(state, batch, jax.random.PRNGKey(46), jnp.int32(1), cfg)
    assert _raw(new.gp_weight) == raw


def test_main_stage_epoch_statistic_and_metrics():
    """eps_GP: every update adds its per-state KLs; after updates 3, 6, ... (epoch_length 3) it becomes their
    mean + std and the sums restart."""
    cfg = small_config(0.9, num_ensembles=2, epoch_length=3, num_samples=2)
    state = bp.init(jax.random.PRNGKey(47), Spec(OBS, A), cfg)
    state = state.replace(stats=state.stats.replace(eps_kl=jnp.asarray(0.3), eps_gp=jnp.asarray(-7.0)))
    batch, b = _batch(np.random.default_rng(48), n=6), 6
    upd = jax.jit(lambda s, k, t: bp.update(s, batch, k, t, cfg))
    total = 0.0
    for t in range(3):
        before = state
        state, m = upd(state, jax.random.PRNGKey(60 + t), jnp.int32(t))
        total += b * float(m["kl"])
        if t < 2:
            assert float(state.stats.kl_n) == b * (t + 1) and float(state.stats.eps_gp) == -7.0
            np.testing.assert_allclose(float(state.stats.kl_sum), total, rtol=1e-5)
        np.testing.assert_allclose(float(m["alpha"]), float(before.alpha.apply_fn(before.alpha.params, batch.observations).mean()),
                                   rtol=1e-6)  # the multiplier the policy step used
        np.testing.assert_allclose(float(m["beta"]), float(state.beta.apply_fn(state.beta.params, batch.observations)[0]), rtol=1e-6)
        assert float(m["eps_kl"]) == np.float32(0.3) and 0.0 <= float(m["violation_ratio"]) <= 1.0
        assert np.isfinite([float(m[k]) for k in ("entropy", "q_pi", "kl")]).all()
        if t:  # pi's log-densities depend on its parameters and the policy step's key only (split(key, 3)[2])
            _, (_, logp, _) = bp.actor_loss(before.actor.params, before, batch, jax.random.split(jax.random.PRNGKey(60 + t), 3)[2], cfg)
            np.testing.assert_allclose(float(m["entropy"]), -float(logp.mean()), rtol=1e-5)
    assert float(state.stats.kl_n) == 0.0 and float(state.stats.kl_sum) == 0.0
    mean = total / (3 * b)
    assert mean <= float(m["eps_gp"]) == float(state.stats.eps_gp) < mean + 10.0


@pytest.mark.parametrize("mode", ["mean", "q_select", "sample"])
def test_acting(mode):
    """'mean': tanh(mean); 'q_select' (the reference's act_batch type 5): act_samples pre-tanh draws clipped to
    mean +- std, squashed, the one with the highest ensemble-mean Q per state; not deterministic: one sample."""
    cfg = small_config(0.9, num_ensembles=2, act_mode="q_select" if mode == "sample" else mode, act_samples=7)
    state = bp.init(jax.random.PRNGKey(49), Spec(OBS, A), cfg)
    obs, key = _batch(np.random.default_rng(50), n=5).observations, jax.random.PRNGKey(51)
    mean, log_std = (np.asarray(x, np.float64) for x in state.actor.apply_fn(state.actor.params, obs))
    got = np.asarray(bp.act(state, obs, key, cfg, deterministic=mode != "sample"), np.float64)
    if mode == "mean":
        want = np.tanh(mean)
    elif mode == "sample":
        want = np.tanh(mean + np.exp(log_std) * np.asarray(jax.random.normal(key, mean.shape), np.float64))
    else:
        std = np.exp(log_std)
        u = mean + std * np.asarray(jax.random.normal(key, (7,) + mean.shape), np.float64)
        a = np.tanh(np.clip(u, mean - std, mean + std))
        q = np.stack([np.asarray(state.critic.apply_fn(state.critic.params, obs, jnp.asarray(x, jnp.float32))).mean(0)
                      for x in a])  # (7, 5)
        want = a[q.argmax(0), np.arange(5)]
        assert len(set(q.argmax(0))) > 1  # the choice differs between states
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_first_main_epochs_eps_gp_reads_the_main_epochs_kls_only():
    """Pretraining fills the KL accumulators (for eps_KL); the main stage's first epoch must not inherit
    them: after main epochs 1 and 2, eps_GP is the mean + std of that epoch's per-state KLs alone."""
    cfg = small_config(0.9, num_ensembles=2, behavior_steps=2, pretrain_steps=3, epoch_length=2, num_samples=2)
    rng = np.random.default_rng(70)
    state = bp.init(jax.random.PRNGKey(71), Spec(OBS, A), cfg)
    behavior, pretrain, train = bp.stages(cfg)
    for t in range(2):
        state, _ = behavior.update(state, _batch(rng, n=6), jax.random.PRNGKey(t), jnp.int32(t))
    for t in range(3):
        state, _ = pretrain.update(state, _batch(rng, n=6), jax.random.PRNGKey(10 + t), jnp.int32(t))
    assert float(state.stats.kl_n) == 2 * 6  # the last pretraining epoch's KLs, the eps_KL estimate
    state = train.begin(state)
    upd = jax.jit(lambda s, b, k, t: bp.update(s, b, k, t, cfg))
    epoch_kls = []
    for t in range(4):
        batch, key = _batch(rng, n=6), jax.random.PRNGKey(20 + t)
        k_b, _, k_a = jax.random.split(key, 3)
        stepped, _ = bp.behavior_step(state, batch, k_b)  # the policy step reads the behaviour model after its step
        _, (kl, _, _) = bp.actor_loss(state.actor.params, stepped, batch, k_a, cfg)
        epoch_kls.append(np.asarray(kl, np.float64))
        state, m = upd(state, batch, key, jnp.int32(t))
        if t % 2 == 1:
            kls = np.concatenate(epoch_kls[-2:])
            np.testing.assert_allclose(float(state.stats.eps_gp), kls.mean() + kls.std(), rtol=1e-4)


# ---------------------------------------------------------------- what each step reads: online vs target, s vs s'
def _sgd(ts, lr=0.1):
    import optax

    return ts.replace(tx=optax.sgd(lr), opt_state=optax.sgd(lr).init(ts.params))


def _perturbed(tree, scale=0.6, shift=0.1):
    return jax.tree_util.tree_map(lambda x: scale * x + shift, tree)


def _state_alpha_setup(seed=52):
    """alpha(s) from its MLP (varying with s), target critics unlike the online ones, SGD optimisers."""
    cfg = small_config(0.9, num_ensembles=2, num_samples=3, state_alpha=True, tau=0.1, train_behavior_in_main=False)
    state = bp.init(jax.random.PRNGKey(seed), Spec(OBS, A), cfg)
    alpha = state.alpha.replace(params=_perturbed(state.alpha.params, 3.0, 0.0))
    state = state.replace(critic=_sgd(state.critic), actor=_sgd(state.actor), alpha=_sgd(alpha),
                          critic_target=_perturbed(state.critic.params), beta=_with_multiplier(state.beta, 0.7),
                          stats=state.stats.replace(eps_kl=jnp.asarray(0.3), eps_gp=jnp.asarray(-100.0)))
    batch = _batch(np.random.default_rng(53), n=6)
    batch = batch._replace(next_observations=batch.next_observations + 2.0)
    return cfg, state, batch


def test_actor_loss_reads_the_online_critic_and_alpha_at_s():
    cfg, state, batch = _state_alpha_setup()
    key = jax.random.PRNGKey(54)
    obs = batch.observations
    a, logp3, kl3 = bp._policy_kl(state, state.actor.apply_fn, state.actor.params, obs, key, 3, cfg)
    alpha_s = np.asarray(state.alpha.apply_fn(state.alpha.params, obs))
    alpha_next = np.asarray(state.alpha.apply_fn(state.alpha.params, batch.next_observations))
    assert np.ptp(alpha_s) > 0.1 and np.abs(alpha_s - alpha_next).max() > 0.1

    def by_parts(q_params, alpha):
        q = np.stack([np.asarray(state.critic.apply_fn(q_params, obs, x)).min(0) for x in a]).mean(0)
        return np.mean(-q + alpha * (np.asarray(kl3).mean(0) - 0.3) - 0.7 * np.asarray(logp3).mean(0))

    loss, _ = bp.actor_loss(state.actor.params, state, batch, key, cfg)
    np.testing.assert_allclose(float(loss), by_parts(state.critic.params, alpha_s), rtol=1e-4, atol=1e-5)
    assert abs(float(loss) - by_parts(state.critic_target, alpha_s)) > 1e-3
    assert abs(float(loss) - by_parts(state.critic.params, alpha_next)) > 1e-3


def test_main_update_order_polyak_of_both_targets_and_the_alpha_step_at_s():
    """Critic step (its TD target on the target critic), then the policy step on the stepped online critic,
    alpha(s) stepped at s with that step's KLs, and critic_target <- (1 - tau) critic_target + tau critic."""
    cfg, state, batch = _state_alpha_setup()
    key = jax.random.PRNGKey(55)
    new, m = bp.update(state, batch, key, jnp.int32(0), cfg)
    _, k_c, k_a = jax.random.split(key, 3)
    gc = jax.grad(lambda p: bp.critic_loss(p, state, batch, k_c, cfg)[0])(state.critic.params)
    critic = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.critic.params, gc)
    assert_trees_close(new.critic.params, critic)
    assert_trees_close(new.critic_target, jax.tree_util.tree_map(lambda t, c: 0.9 * t + 0.1 * c, state.critic_target, critic))
    stepped = state.replace(critic=state.critic.replace(params=critic))
    ga, (kl, _, _) = jax.grad(bp.actor_loss, has_aux=True)(state.actor.params, stepped, batch, k_a, cfg)
    assert_trees_close(new.actor.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.actor.params, ga))
    g_before = jax.grad(lambda p: bp.actor_loss(p, state, batch, k_a, cfg)[0])(state.actor.params)
    assert trees_differ(new.actor.params, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, state.actor.params, g_before))
    assert_trees_close(new.actor_target, jax.tree_util.tree_map(lambda t, p: 0.9 * t + 0.1 * p, state.actor_target, new.actor.params))
    assert_trees_close(new.alpha.params, bp.alpha_step(state.alpha, batch.observations, kl, 0.3).params)
    assert trees_differ(new.alpha.params, bp.alpha_step(state.alpha, batch.next_observations, kl, 0.3).params)
    np.testing.assert_allclose(float(m["alpha"]), float(state.alpha.apply_fn(state.alpha.params, batch.observations).mean()),
                               rtol=1e-6)


def test_gradient_penalty_is_differentiated_through_the_critic_being_trained():
    """d/dtheta of the penalty part of L_Q, mean[lambda GP(s; theta)], by jax.grad along a direction, equals
    its central finite difference: the penalty's gradient reaches the critic's parameters."""
    import copy

    cfg = small_config(0.9, num_ensembles=2, use_gp=True, gp_gate="softplus")
    off = copy.deepcopy(cfg)
    off.agent.use_gp = False
    state = bp.init(jax.random.PRNGKey(56), Spec(OBS, A), cfg)
    state = state.replace(gp_weight=_with_multiplier(state.gp_weight, 5.0),
                          stats=state.stats.replace(eps_gp=jnp.asarray(-100.0)))  # every state gated in
    theta = state.critic.params
    batch, key = _batch(np.random.default_rng(57), n=6), jax.random.PRNGKey(58)

    def penalty_part(p):
        return bp.critic_loss(p, state, batch, key, cfg)[0] - bp.critic_loss(p, state, batch, key, off)[0]

    leaves, treedef = jax.tree_util.tree_flatten(theta)
    rng = np.random.default_rng(59)
    d = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(rng.normal(size=x.shape), jnp.float32) for x in leaves])
    g = jax.grad(penalty_part)(theta)
    analytic = sum(float((x * y).sum()) for x, y in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(d)))
    h = 1e-3
    shift = lambda s: jax.tree_util.tree_map(lambda x, y: x + s * y, theta, d)  # noqa: E731
    numeric = (float(penalty_part(shift(h))) - float(penalty_part(shift(-h)))) / (2 * h)
    assert abs(numeric) > 1e-1  # the penalty moves with the critic
    np.testing.assert_allclose(analytic, numeric, rtol=2e-3)
