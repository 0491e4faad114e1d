"""TD3BC++ plug-ins: the gradient penalty and the critic weights by hand, and TD3+BC unchanged when they are off."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from offrl import nets, plugins
from offrl.algos import Spec, td3bc
from offrl.data.dataset import Transitions


# ------------------------------------------------------------------ a critic with a closed-form action gradient
def quad_q(params, obs, act):
    """Q_i(s, a) = 0.5 c_i ||a||^2 + w_i . a + v_i . s  ->  grad_a Q_i = c_i a + w_i. Output (2, N)."""
    return 0.5 * params["c"][:, None] * (act**2).sum(-1)[None] + (act @ params["w"].T).T + (obs @ params["v"].T).T


def _quad_setup(scale=1.0):
    rng = np.random.default_rng(0)
    params = {
        "c": jnp.asarray([1.5, -0.7], jnp.float32) * scale,
        "w": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32) * scale,
        "v": jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
    }
    obs = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    act = jnp.asarray(rng.uniform(-1, 1, size=(6, 3)), jnp.float32)
    return params, obs, act


def _hand_gp(params, act, k):
    """Value and d/d(c, w) of mean_j sum_i relu(||c_i a_j + w_i|| - k)^2 in NumPy."""
    c, w, a = (np.asarray(x, np.float64) for x in (params["c"], params["w"], act))
    g = c[:, None, None] * a[None] + w[:, None, :]  # (2, N, A)
    n = np.linalg.norm(g, axis=-1)  # (2, N)
    h = np.maximum(n - k, 0.0)
    value = (h**2).sum(0).mean()
    coef = 2 * h / np.where(n > 0, n, 1.0) / a.shape[0]  # d value / d g = coef * g
    dg = coef[..., None] * g
    dc = (dg * a[None]).sum((1, 2))
    dw = dg.sum(1)
    return value, dc, dw, n


def test_action_grads_match_closed_form():
    params, obs, act = _quad_setup()
    grads = plugins.action_grads(lambda o, a: quad_q(params, o, a), obs, act)
    expected = np.asarray(params["c"])[:, None, None] * np.asarray(act)[None] + np.asarray(params["w"])[:, None]
    np.testing.assert_allclose(np.asarray(grads), expected, rtol=1e-5, atol=1e-6)


def _flops(f, *args):
    cost = jax.jit(f).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def test_action_grads_of_an_ensemble_in_one_backward_pass():
    """nets.bind's ensemble gives each critic its own copy of the actions: the same per-critic
    gradients as one gradient per critic, from one backward pass (a closure over the ensemble
    takes one backward pass per critic, each through both critics)."""
    net = nets.critic_ensemble(2, (16, 16))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)), jnp.zeros((1, 3)))
    _, obs, act = _quad_setup()
    fast = lambda p, o, a: plugins.action_grads(nets.bind(net.apply, p), o, a)  # noqa: E731
    slow = lambda p, o, a: plugins.action_grads(lambda x, y: net.apply(p, x, y), o, a)  # noqa: E731
    each = np.stack([np.asarray(jax.grad(lambda a, i=i: net.apply(params, obs, a)[i].sum())(act)) for i in range(2)])
    assert np.abs(each[0] - each[1]).max() > 1e-3  # the critics' gradients differ: a sum would be caught
    np.testing.assert_allclose(np.asarray(fast(params, obs, act)), each, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(slow(params, obs, act)), each, rtol=1e-5, atol=1e-7)
    # the gradient penalty differentiates through it: the one-pass form must give the same parameter gradient
    pen = lambda g: lambda p: plugins.gradient_penalty(g(p), obs, act, 0.1)[0]  # noqa: E731
    g_fast = jax.grad(pen(lambda p: nets.bind(net.apply, p)))(params)
    g_slow = jax.grad(pen(lambda p: (lambda x, y: net.apply(p, x, y))))(params)
    for x, y in zip(jax.tree_util.tree_leaves(g_fast), jax.tree_util.tree_leaves(g_slow)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-7)
    # forward + 1 backward against forward + 2 backward passes
    assert _flops(fast, params, obs, act) < 0.8 * _flops(slow, params, obs, act)


def test_gradient_penalty_value_and_gradient_by_hand():
    params, obs, act = _quad_setup()
    k = 1.0

    def pen(p):
        return plugins.gradient_penalty(lambda o, a: quad_q(p, o, a), obs, act, k)[0]

    value, grads = jax.value_and_grad(pen)(params)
    hv, dc, dw, n = _hand_gp(params, act, k)
    assert (n > k).any() and (n < k).any()  # both sides of the hinge are exercised
    np.testing.assert_allclose(float(value), hv, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grads["c"]), dc, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads["w"]), dw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grads["v"]), 0.0)  # the state term has no action gradient


def test_penalty_is_zero_below_k():
    params, obs, act = _quad_setup(scale=0.05)  # every ||grad_a Q|| is small
    q_fn = lambda p: (lambda o, a: quad_q(p, o, a))  # noqa: E731
    assert float(plugins.action_grad_norm(q_fn(params), obs, act).max()) < 1.0
    value, grads = jax.value_and_grad(lambda p: plugins.gradient_penalty(q_fn(p), obs, act, 1.0)[0])(params)
    assert float(value) == 0.0
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads))


def test_gp_penalty_every_n_steps_weight_and_action_sources():
    params, obs, act = _quad_setup()
    q_fn = lambda o, a: quad_q(params, o, a)  # noqa: E731
    gp = plugins.gp_config(True, weight=3.0)
    gp.actions = "dataset"
    pen, info = plugins.gp_penalty(q_fn, jax.random.PRNGKey(0), jnp.int32(10), obs, act, gp)
    np.testing.assert_allclose(float(pen), 3.0 * _hand_gp(params, act, 1.0)[0], rtol=1e-5)
    off, _ = plugins.gp_penalty(q_fn, jax.random.PRNGKey(0), jnp.int32(11), obs, act, gp)
    assert float(off) == 0.0
    # uniform: every state repeated 16 times, actions in the box
    gp.actions = "uniform"
    o, a = plugins.gp_inputs(jax.random.PRNGKey(1), obs, act, gp)
    assert o.shape == (6 * 16, 4) and a.shape == (6 * 16, 3)
    np.testing.assert_array_equal(np.asarray(o[:16]), np.repeat(np.asarray(obs[:1]), 16, 0))
    assert float(jnp.abs(a).max()) <= 1.0 and float(a.std()) > 0.3
    # policy: actions from the policy function, not differentiated into it
    gp.actions = "policy"
    o, a = plugins.gp_inputs(jax.random.PRNGKey(1), obs, act, gp, lambda k, x: jnp.tanh(x[:, :3]), True)
    assert o.shape == (6, 4)
    np.testing.assert_allclose(np.asarray(a), np.tanh(np.asarray(obs[:, :3])), rtol=1e-6)
    with pytest.raises(ValueError):
        gp.actions = "nope"
        plugins.validate(ml_collections.ConfigDict(dict(gp=gp, cr=plugins.cr_config())))


def test_critic_weights_minmax_range_and_no_gradient():
    rng = np.random.default_rng(3)
    q = jnp.asarray(rng.normal(size=(2, 9)), jnp.float32)
    cr = plugins.cr_config(True)
    for reduce, ref in (("mean", np.asarray(q).mean(0)), ("min", np.asarray(q).min(0)), ("q1", np.asarray(q)[0])):
        cr.critic = reduce
        w = np.asarray(plugins.critic_weights(q, cr))
        np.testing.assert_allclose(w, (ref - ref.min()) / (ref.max() - ref.min()), rtol=1e-5, atol=1e-6)
        assert w.min() == 0.0 and w.max() == pytest.approx(1.0) and ((w >= 0) & (w <= 1)).all()
    g = jax.grad(lambda x: (plugins.critic_weights(x, cr) * jnp.arange(9.0)).sum())(q)
    assert float(jnp.abs(g).max()) == 0.0
    np.testing.assert_array_equal(np.asarray(plugins.minmax_weights(jnp.ones(4))), np.ones(4))
    cr.normalize = False  # Listing 1's raw critic value
    np.testing.assert_allclose(np.asarray(plugins.critic_weights(q, cr)), np.asarray(q)[0])


# ------------------------------------------------------------------ TD3+BC with the plug-ins
_BASE = {}


def _td3bc_setup(**agent):
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=td3bc.default_agent_config()))
    cfg.agent.hidden_dims = (8, 8)
    for k, v in agent.items():
        node, *path = k.split(".")
        target = cfg.agent[node] if path else cfg.agent
        target[path[0] if path else node] = v
    if "state" not in _BASE:  # gp / cr options do not enter init: build the state once
        _BASE["state"] = jax.jit(lambda k: td3bc.init(k, Spec(3, 2), cfg))(jax.random.PRNGKey(1))
    state = _BASE["state"]
    rng = np.random.default_rng(0)
    b = 16
    batch = Transitions(
        observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(b, 2)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=b), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(b, 3)), jnp.float32),
        terminals=jnp.asarray(rng.uniform(size=b) < 0.2, jnp.float32),
        timeouts=jnp.zeros(b), next_actions=jnp.zeros((b, 2)), returns=jnp.zeros(b),
        episode_ids=jnp.zeros(b, jnp.int32),
    )
    return cfg, state, batch


def _plain_td3bc_update(state, batch, key, step, cfg):
    """TD3+BC's update as it was before the plug-ins, from its public losses."""
    ag = cfg.agent
    g, _ = jax.grad(td3bc.critic_loss, has_aux=True)(state.critic.params, state, batch, key, cfg)
    state = state.replace(critic=state.critic.apply_gradients(grads=g))
    if step % ag.policy_freq == 0:
        g, _ = jax.grad(td3bc.actor_loss, has_aux=True)(state.actor.params, state, batch, cfg)
        actor = state.actor.apply_gradients(grads=g)
        state = state.replace(actor=actor, actor_target=td3bc.nets.polyak(state.actor_target, actor.params, ag.tau),
                              critic_target=td3bc.nets.polyak(state.critic_target, state.critic.params, ag.tau))
    return state


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_plugins_off_is_plain_td3bc_update_for_update():
    cfg, state, batch = _td3bc_setup(log_grad_norm=False)
    old = ml_collections.ConfigDict(cfg.to_dict())  # a config written before the plug-ins existed
    del old.agent["gp"], old.agent["cr"]
    key = jax.random.PRNGKey(5)

    @jax.jit
    def both(s):
        new, info = td3bc.update(s, batch, key, jnp.int32(0), cfg)
        before, _ = td3bc.update(s, batch, key, jnp.int32(0), old)
        return new, before, _plain_td3bc_update(s, batch, key, 0, cfg), info

    s_new, s_old, ref, info = both(state)
    for s in (s_new, s_old):
        _assert_trees_equal((s.actor.params, s.critic.params, s.actor_target, s.critic_target),
                            (ref.actor.params, ref.critic.params, ref.actor_target, ref.critic_target))
    assert "gp_penalty" not in info and "cr_weight_mean" not in info


def test_gp_adds_its_gradient_to_the_critic():
    cfg, state, batch = _td3bc_setup(**{"gp.enabled": True, "gp.actions": "dataset", "gp.weight": 2.0, "gp.k": 0.0})
    key = jax.random.PRNGKey(5)

    def pen(p):
        return 2.0 * plugins.gradient_penalty(lambda o, a: state.critic.apply_fn(p, o, a), batch.observations, batch.actions, 0.0)[0]

    @jax.jit
    def grads(params):
        g_on, info = jax.grad(td3bc.critic_objective, has_aux=True)(params, state, batch, key, jnp.int32(0), cfg)
        g_off, _ = jax.grad(td3bc.critic_objective, has_aux=True)(params, state, batch, key, jnp.int32(3), cfg)
        g_td, _ = jax.grad(td3bc.critic_loss, has_aux=True)(params, state, batch, key, cfg)
        return g_on, g_off, g_td, jax.grad(pen)(params), info

    g_on, g_off, g_td, g_pen, info = grads(state.critic.params)
    for x, y, z in zip(*(jax.tree_util.tree_leaves(t) for t in (g_on, g_td, g_pen))):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y) + np.asarray(z), rtol=2e-4, atol=1e-6)
    assert float(info["gp_penalty"]) > 0
    _assert_trees_equal(g_off, g_td)  # step 3 is not a GP step (every 5)


def test_cr_weights_are_the_minmax_normalised_mean_critic_value():
    """(Which critic the update reads, before or after its step, is pinned with SGD in test_equations.py.)"""
    cfg, state, batch = _td3bc_setup(**{"cr.enabled": True, "log_grad_norm": False})
    w = td3bc.bc_weights(state, batch, cfg)
    q = np.asarray(state.critic.apply_fn(state.critic.params, batch.observations, batch.actions)).mean(0)
    np.testing.assert_allclose(np.asarray(w), (q - q.min()) / (q.max() - q.min()), rtol=1e-5, atol=1e-6)


def test_configs_switch_plugins_and_presets():
    from configs import td3bcpp, td3bcpp_presets as P

    c = td3bcpp.get_config()
    assert c.algo == "td3bc" and c.agent.gp.enabled and c.agent.cr.enabled and c.agent.gp.weight == 1.0
    c = td3bcpp.get_config("hopper-ER3,nocr")
    assert c.dataset == "offrl/hopper/expert-random-30-v0" and c.agent.gp.enabled and not c.agent.cr.enabled
    c = td3bcpp.get_config("relocate-EC5,nogp")
    assert (c.agent.alpha, c.agent.gp.weight, c.agent.gp.enabled) == (0.02, 0.1, False)
    assert P.dataset_id("walker2d", "EM") == "offrl/walker2d/medium-expert-v0"
    assert P.preset("walker2d", "EM", "fig11")["gp_weight"] == 0.02
    assert P.preset("hammer", "EC7") == dict(alpha=0.2, gp_weight=1.0)
    with pytest.raises(ValueError):
        P.preset("hopper", "ER9x")
    names = [td3bc.variant(td3bcpp.get_config(w)) for w in ("nogp,nocr", "nocr", "nogp", "")]
    assert names == ["td3bc", "td3bc+gp", "td3bc+cr", "td3bc++"]
