"""BEAR / BEAR++: MMD against NumPy, the critic target by hand, plug-ins off == plain BEAR, the multiplier."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from offrl import nets, plugins
from offrl.algos import Spec, bear
from offrl.data.dataset import Transitions


def _np_mmd(x, y, sigma, kernel):
    def k(a, b):
        d = a[:, :, None, :] - b[:, None, :, :]
        dist = np.abs(d).sum(-1) if kernel == "laplacian" else (d**2).sum(-1)
        return np.exp(-dist / (2 * sigma)).mean((1, 2))

    return np.sqrt(k(x, x) + k(y, y) - 2 * k(x, y) + 1e-6)


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_mmd_matches_numpy(kernel):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3, 5, 2)), rng.normal(size=(3, 4, 2)) + 0.5
    got = nets.mmd(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), 0.7, kernel)
    np.testing.assert_allclose(np.asarray(got), _np_mmd(x, y, 0.7, kernel), rtol=1e-5)
    same = nets.mmd(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32), 0.7, kernel)
    np.testing.assert_allclose(np.asarray(same), 1e-3, rtol=1e-2)  # sqrt(0 + 1e-6)


_BASE = {}


def _setup(**agent):
    """A tiny BEAR state (built once: the options tests change do not enter ``init``) and a batch."""
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=bear.default_agent_config()))
    ag = cfg.agent
    ag.actor_hidden_dims = ag.critic_hidden_dims = ag.vae_hidden_dims = (8, 8)
    ag.log_grad_norm = False
    if not _BASE:
        state = jax.jit(lambda k: bear.init(k, Spec(3, 2), cfg))(jax.random.PRNGKey(1))
        perturb = lambda t: jax.tree_util.tree_map(lambda x: x * 0.7 + 0.05, t)  # noqa: E731
        _BASE["state"] = state.replace(actor_target=perturb(state.actor.params), critic_target=perturb(state.critic.params))
        rng = np.random.default_rng(0)
        b = 6
        _BASE["batch"] = Transitions(
            observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
            actions=jnp.asarray(rng.uniform(-0.9, 0.9, size=(b, 2)), jnp.float32),
            rewards=jnp.asarray(rng.normal(size=b), jnp.float32),
            next_observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
            terminals=jnp.asarray([0, 1, 0, 0, 1, 0], jnp.float32),
            timeouts=jnp.zeros(b), next_actions=jnp.zeros((b, 2)), returns=jnp.zeros(b),
            episode_ids=jnp.zeros(b, jnp.int32),
        )
    for k, v in agent.items():
        node, *path = k.split(".")
        target = ag[node] if path else ag
        target[path[0] if path else node] = v
    return cfg, _BASE["state"], _BASE["batch"]


def test_critic_target_by_hand():
    cfg, state, batch = _setup()
    key = jax.random.PRNGKey(3)

    @jax.jit
    def pieces(s):
        loss, _ = bear.critic_loss(s.critic.params, s, batch, key, cfg)
        a2, _ = bear.policy_samples(s.actor, s.actor_target, batch.next_observations, key, 10)  # (B, 10, A)
        qt = s.critic.apply_fn(s.critic_target, jnp.repeat(batch.next_observations, 10, 0), a2.reshape(-1, 2))
        return loss, qt, s.critic.apply_fn(s.critic.params, batch.observations, batch.actions)

    loss, qt, q = (np.asarray(x, np.float64) for x in pieces(state))
    qt = qt.reshape(2, 6, 10)
    next_q = (0.75 * qt.min(0) + 0.25 * qt.max(0)).max(-1)
    y = np.asarray(batch.rewards) + 0.9 * (1 - np.asarray(batch.terminals)) * next_q
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(-1).sum(), rtol=1e-5)


def _plain_bear_update(state, batch, key, step, cfg):
    """BEAR-QL written out from its formulas (no plug-ins), for comparison with ``bear.update``."""
    ag = cfg.agent
    k_vae, k_critic, k_actor = jax.random.split(key, 3)
    g, _ = jax.grad(bear.vae_loss, has_aux=True)(state.vae.params, state, batch, k_vae)
    state = state.replace(vae=state.vae.apply_gradients(grads=g))
    g, _ = jax.grad(bear.critic_loss, has_aux=True)(state.critic.params, state, batch, k_critic, cfg)
    state = state.replace(critic=state.critic.apply_gradients(grads=g))

    def loss(p):
        k1, k2 = jax.random.split(k_actor)
        _, bu = bear.vae_samples(state.vae, batch.observations, k1, ag.num_samples)
        pa, pu = bear.policy_samples(state.actor, p, batch.observations, k2, ag.num_samples, ag.actor_noise_clip)
        m = nets.mmd(bu, pu, ag.mmd_sigma, ag.kernel).mean()
        b, n, a = pa.shape
        q = state.critic.apply_fn(state.critic.params, jnp.repeat(batch.observations, n, 0), pa.reshape(b * n, a))
        q = q.reshape(2, b, n).mean(-1).min(0)
        alpha = jnp.exp(state.log_alpha.params["value"])
        return (alpha * m if step < ag.warmup_steps else -q.mean() + alpha * m), m

    g, m = jax.grad(loss, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=g)
    g = jax.grad(lambda p: -jnp.exp(p["value"]) * (m - ag.epsilon))(state.log_alpha.params)
    la = state.log_alpha.apply_gradients(grads=g)
    la = la.replace(params={"value": jnp.clip(la.params["value"], -5.0, 10.0)})
    return state.replace(actor=actor, log_alpha=la, actor_target=nets.polyak(state.actor_target, actor.params, 0.005),
                         critic_target=nets.polyak(state.critic_target, state.critic.params, 0.005))


def _leaves(s):
    return jax.tree_util.tree_leaves((s.vae.params, s.actor.params, s.critic.params, s.log_alpha.params,
                                      s.actor_target, s.critic_target))


def test_plugins_off_is_plain_bear_and_warmup_optimises_the_constraint_only():
    cfg, state, batch = _setup(warmup_steps=3)
    key = jax.random.PRNGKey(4)

    @jax.jit
    def run(s):
        warm, winfo = bear.actor_loss(s.actor.params, s, batch, key, jnp.int32(2), cfg)
        full, finfo = bear.actor_loss(s.actor.params, s, batch, key, jnp.int32(3), cfg)
        return bear.update(s, batch, key, jnp.int32(7), cfg)[0], _plain_bear_update(s, batch, key, 7, cfg), warm, winfo, full

    got, ref, warm, winfo, full = run(state)
    for x, y in zip(_leaves(got), _leaves(ref)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(float(warm), float(winfo["alpha"] * winfo["constraint"]), rtol=1e-6)
    np.testing.assert_allclose(float(full), float(warm - winfo["actor_q"]), rtol=1e-5, atol=1e-6)


def test_multiplier_rises_when_violated_and_is_clipped():
    cfg, state, _ = _setup()
    up = jax.grad(bear.alpha_loss)(state.log_alpha.params, jnp.float32(0.5), cfg)["value"]
    down = jax.grad(bear.alpha_loss)(state.log_alpha.params, jnp.float32(0.01), cfg)["value"]
    assert float(up) < 0 < float(down)  # gradient descent raises log_alpha above epsilon, lowers it below


def test_bearpp_weights_the_mmd_by_the_behaviour_action_value():
    cfg, state, batch = _setup(**{"cr.enabled": True})
    key = jax.random.PRNGKey(6)

    @jax.jit
    def pieces(s):
        _, info = bear.actor_loss(s.actor.params, s, batch, key, jnp.int32(0), cfg)
        k1, k2 = jax.random.split(key)
        ba, bu = bear.vae_samples(s.vae, batch.observations, k1, 5)
        _, pu = bear.policy_samples(s.actor, s.actor.params, batch.observations, k2, 5, 0.5)
        qb = s.critic.apply_fn(s.critic.params, jnp.repeat(batch.observations, 5, 0), ba.reshape(-1, 2))
        return info, bu, pu, qb

    info, bu, pu, qb = pieces(state)
    m = _np_mmd(np.asarray(bu, np.float64), np.asarray(pu, np.float64), cfg.agent.mmd_sigma, "laplacian")
    v = np.asarray(qb).reshape(2, 6, 5).mean(-1).mean(0)
    w = (v - v.min()) / (v.max() - v.min())
    np.testing.assert_allclose(float(info["constraint"]), (m * w).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info["mmd"]), m.mean(), rtol=1e-5)


def test_bearpp_gradient_penalty_on_policy_actions():
    cfg, state, batch = _setup(**{"gp.enabled": True, "gp.actions": "policy", "gp.repeats": 4})
    key = jax.random.PRNGKey(2)

    @jax.jit
    def pieces(s):
        loss, info = bear.critic_objective(s.critic.params, s, batch, key, jnp.int32(5), cfg)
        td, _ = bear.critic_loss(s.critic.params, s, batch, key, cfg)
        o, a = plugins.gp_inputs(jax.random.fold_in(key, 1), batch.observations, batch.actions, cfg.agent.gp,
                                 lambda k, x: bear.policy_samples(s.actor, s.actor.params, x, k, 1)[0][:, 0])
        pen = plugins.gradient_penalty(lambda x, y: s.critic.apply_fn(s.critic.params, x, y), o, a, 1.0)[0]
        return loss, info, td, pen, o.shape[0]

    loss, info, td, pen, n = pieces(state)
    assert int(n) == 24
    np.testing.assert_allclose(float(loss), float(td + pen), rtol=1e-5)
    np.testing.assert_allclose(float(info["gp_penalty"]), float(pen), rtol=1e-5)


def test_act_is_argmax_q1_over_policy_samples():
    cfg, state, batch = _setup()
    key = jax.random.PRNGKey(9)

    @jax.jit
    def pieces(s):
        a = bear.act(s, batch.observations, key, cfg)
        samples, _ = bear.policy_samples(s.actor, s.actor.params, batch.observations, key, 10)
        q1 = s.critic.apply_fn(s.critic.params, jnp.repeat(batch.observations, 10, 0), samples.reshape(-1, 2))[0]
        return a, samples, q1, bear.act(s, batch.observations[0], key, cfg)

    a, samples, q1, single = pieces(state)
    q1 = np.asarray(q1).reshape(6, 10)
    np.testing.assert_allclose(np.asarray(a), np.asarray(samples)[np.arange(6), q1.argmax(-1)], rtol=1e-6)
    assert a.shape == (6, 2) and float(jnp.abs(a).max()) <= 1.0 and single.shape == (2,)


def test_conditional_vae_shapes_and_decoder_std():
    obs, act = jnp.ones((4, 3)), jnp.zeros((4, 2))
    vae = nets.ConditionalVAE(2, 5, (8,))
    vae2 = nets.ConditionalVAE(2, 4, (8,), decoder_std=True, latent_clip=None)

    @jax.jit
    def pieces(k):
        p = vae.init(k, obs, act, k)
        p2 = vae2.init(k, obs, act, k)
        return (vae.apply(p, obs, act, k), vae.apply(p, obs, k, 7, method="sample"),
                vae2.apply(p2, obs, jnp.zeros((4, 4)), method="decode"))

    (rec, mu, log_std), samples, (mean, ls) = pieces(jax.random.PRNGKey(0))
    assert rec.shape == (4, 2) and mu.shape == log_std.shape == (4, 5)
    assert samples.shape == (4, 7, 2) and mean.shape == ls.shape == (4, 2)
    np.testing.assert_allclose(float(nets.standard_normal_kl(jnp.zeros(3), jnp.zeros(3))), 0.0, atol=1e-7)


def test_bear_configs():
    from configs import bear as bear_cfg, bearpp

    c = bear_cfg.get_config()
    assert c.algo == "bear" and c.batch_size == 100 and not c.agent.gp.enabled and not c.agent.cr.enabled
    c = bearpp.get_config("walker2d-ER5,nocr")
    assert c.algo == "bear" and c.agent.gp.enabled and not c.agent.cr.enabled
    assert c.dataset == "offrl/walker2d/expert-random-50-v0"
    bear.validate(c)
    c.agent.kernel = "cosine"
    with pytest.raises(ValueError):
        bear.validate(c)
