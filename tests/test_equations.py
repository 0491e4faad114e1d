"""Equations of BEAR, CQL, TD3+BC(++), BRAC / iTRPO, the plug-ins and the loss code of offrl.nets, against NumPy.

Each test evaluates a loss, target or update on a fixed tiny batch and compares it with a NumPy
computation written from the reference's equations, so that it fails when a term is evaluated at
the wrong state (s vs s'), a terminal mask is dropped, online and target parameters are swapped, a
backup uses the wrong action, a dual / Lagrange / temperature step has the wrong sign, a warm-start
switch is inverted, or an actor loss's gradient stops pointing to higher value.

Update-level tests swap every optimiser for plain SGD: one Adam step moves each parameter by about
lr * sign(gradient), which hides most wrong gradients; an SGD step is the gradient itself. Everything
runs eagerly on 4-unit networks (no jit) so the file stays fast enough for mutation testing
(docs/testing.md).
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from conftest import all_eqns, contracting_dims
from offrl import nets, plugins
from offrl.algos import Spec, bear, brac, cql, itrpo, td3bc
from offrl.config import base_config
from offrl.data.dataset import Transitions

B, OBS, ACT = 5, 3, 2
LOG2PI = math.log(2 * math.pi)


# ----------------------------------------------------------------------------- NumPy networks
def _f64(x):
    return np.asarray(x, np.float64)


def _dense_stack(tree, index=None):
    """[(kernel, bias)] of the Dense_i layers of ``tree`` (entry ``index`` of a vmapped ensemble)."""
    out = []
    for i in range(len(tree)):
        k, b = _f64(tree[f"Dense_{i}"]["kernel"]), _f64(tree[f"Dense_{i}"]["bias"])
        out.append((k, b) if index is None else (k[index], b[index]))
    return out


def _mlp(layers, x, activate_final=False):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i + 1 < len(layers) or activate_final:
            x = np.maximum(x, 0.0)
    return x


def np_critics(params, obs, act):
    """(2, N) values of the critic ensemble."""
    tree = params["params"]["VmapCritic_0"]["MLP_0"]
    x = np.concatenate([_f64(obs), _f64(act)], -1)
    return np.stack([_mlp(_dense_stack(tree, i), x)[..., 0] for i in range(2)])


def np_gaussian_policy(params, obs, lo=-5.0, hi=2.0):
    p = params["params"]
    h = _mlp(_dense_stack(p["MLP_0"]), _f64(obs), activate_final=True)
    mean = h @ _f64(p["Dense_0"]["kernel"]) + _f64(p["Dense_0"]["bias"])
    log_std = h @ _f64(p["Dense_1"]["kernel"]) + _f64(p["Dense_1"]["bias"])
    return mean, np.clip(log_std, lo, hi)


def np_deterministic_policy(params, obs):
    return np.tanh(_mlp(_dense_stack(params["params"]["MLP_0"]), _f64(obs)))


def np_normal_logp(x, mean, log_std):
    z = (x - mean) * np.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * LOG2PI).sum(-1)


def np_tanh_logp(u, mean, log_std):
    """log density of tanh(u), u ~ N(mean, std): Gaussian log-density minus sum log(1 - tanh(u)^2)."""
    return np_normal_logp(u, mean, log_std) - np.log(1.0 - np.tanh(u) ** 2).sum(-1)


def np_mmd(x, y, sigma, kernel, squared=False):
    def k(a, b):
        d = a[..., :, None, :] - b[..., None, :, :]
        dist = np.abs(d).sum(-1) if kernel == "laplacian" else (d**2).sum(-1)
        return np.exp(-dist / (2 * sigma)).mean((-2, -1))

    sq = k(x, x) + k(y, y) - 2 * k(x, y)
    return sq if squared else np.sqrt(sq + 1e-6)


def normal(key, shape):
    return _f64(jax.random.normal(key, shape))


# ----------------------------------------------------------------------------- fixtures
def make_batch(seed=0, b=B):
    rng = np.random.default_rng(seed)
    return Transitions(
        observations=jnp.asarray(rng.normal(size=(b, OBS)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-0.9, 0.9, size=(b, ACT)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=b), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(b, OBS)) + 2.0, jnp.float32),  # far from s
        terminals=jnp.asarray(([0, 1, 0, 0, 1] * b)[:b], jnp.float32),
        timeouts=jnp.zeros(b), next_actions=jnp.zeros((b, ACT)), returns=jnp.zeros(b),
        episode_ids=jnp.zeros(b, jnp.int32),
    )


def perturb(tree, scale=0.6, shift=0.1):
    """Target parameters unlike the online ones, so that a loss that swaps them fails."""
    return jax.tree_util.tree_map(lambda x: x * scale + shift, tree)


def sgd(ts: TrainState, lr: float = 0.1) -> TrainState:
    return TrainState.create(apply_fn=ts.apply_fn, params=ts.params, tx=optax.sgd(lr))


def sgd_step(params, grads, lr=0.1):
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def trees_differ(a, b, tol=1e-6):
    return any(float(jnp.abs(x - y).max()) > tol for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def set_agent(cfg, **agent):
    for k, v in agent.items():
        node, *path = k.split(".")
        target = cfg.agent[node] if path else cfg.agent
        target[path[0] if path else node] = v
    return cfg


# ============================================================================= nets: distributions and MMD
def test_gaussian_log_prob_entropy_and_kl_closed_forms():
    rng = np.random.default_rng(1)
    x, m, ls, m2, ls2 = (rng.normal(size=(2, 4, 3)) * 0.7 for _ in range(5))  # 3-D: the sums must run over the last axis
    got = nets.gaussian_log_prob(*(jnp.asarray(v, jnp.float32) for v in (x, m, ls)))
    np.testing.assert_allclose(np.asarray(got), np_normal_logp(x, m, ls), rtol=1e-5)
    ent = nets.gaussian_entropy(jnp.asarray(ls, jnp.float32))
    np.testing.assert_allclose(np.asarray(ent), (ls + 0.5 * (1 + LOG2PI)).sum(-1), rtol=1e-5)
    v1, v2 = np.exp(2 * ls), np.exp(2 * ls2)
    kl = (ls2 - ls + (v1 + (m - m2) ** 2) / (2 * v2) - 0.5).sum(-1)
    got = nets.gaussian_kl(*(jnp.asarray(v, jnp.float32) for v in (m, ls, m2, ls2)))
    np.testing.assert_allclose(np.asarray(got), kl, rtol=1e-5)
    snk = nets.standard_normal_kl(jnp.asarray(m, jnp.float32), jnp.asarray(ls, jnp.float32))
    np.testing.assert_allclose(np.asarray(snk), (0.5 * (m**2 + v1) - ls - 0.5).sum(-1), rtol=1e-5)


def test_tanh_gaussian_sample_and_log_prob():
    rng = np.random.default_rng(2)
    mean, log_std = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3)) * 0.3
    key = jax.random.PRNGKey(3)
    a, logp, u = nets.tanh_gaussian_sample(key, jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32))
    u_np = mean + np.exp(log_std) * normal(key, (2, 4, 3))
    np.testing.assert_allclose(np.asarray(u), u_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(a), np.tanh(u_np), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logp), np_tanh_logp(u_np, mean, log_std), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(nets.tanh_log_det_jacobian(jnp.asarray(u_np, jnp.float32))),
                               np.log(1 - np.tanh(u_np) ** 2).sum(-1), rtol=1e-4, atol=1e-5)
    lp = nets.tanh_gaussian_log_prob(a, jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32))
    np.testing.assert_allclose(np.asarray(lp), np_tanh_logp(u_np, mean, log_std), rtol=1e-3, atol=1e-3)
    # actions at the boundary are clipped to +-(1 - 1e-6) before arctanh, not turned into inf
    edge = nets.tanh_gaussian_log_prob(jnp.asarray([[1.0, -1.0, 0.0]]), jnp.zeros((1, 3)), jnp.zeros((1, 3)))
    assert np.isfinite(float(edge[0]))


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_mmd_both_forms_against_numpy(kernel):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 5, 2)) + 0.8
    for squared in (False, True):
        got = nets.mmd(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), 1.3, kernel, squared=squared)
        np.testing.assert_allclose(np.asarray(got), np_mmd(x, y, 1.3, kernel, squared), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError):
        nets.mmd(jnp.asarray(x), jnp.asarray(y), 1.0, "cosine")
    same = nets.mmd(jnp.asarray(x, jnp.float32), jnp.asarray(x, jnp.float32), 1.3, kernel)
    np.testing.assert_allclose(np.asarray(same), 1e-3, rtol=1e-2)  # sqrt(0 + 1e-6): the root stays differentiable


@pytest.mark.parametrize("members", [1, 3])
def test_vmap_members_equals_vmap_and_one_member_is_not_batched(members):
    """nets.vmap_members(f) is jax.vmap(f) over the leading member axis (every argument's, every output's),
    and with one member it runs f once on the arguments without that axis: no matmul batched over size 1."""
    w = jnp.asarray(np.random.default_rng(0).normal(size=(members, 4, 2)), jnp.float32)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(members, 5, 4)), jnp.float32)
    f = lambda w, x: (x @ w, {"sum": jnp.sum(x, -1)})  # noqa: E731
    got, want = nets.vmap_members(f)(w, x), jax.vmap(f)(w, x)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert g.shape == e.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-6)
    dots = [e for e in jax.make_jaxpr(nets.vmap_members(f))(w, x).jaxpr.eqns if e.primitive.name == "dot_general"]
    batch_dims = [e.params["dimension_numbers"][1][0] for e in dots]
    assert batch_dims == [(0,) if members > 1 else ()], batch_dims  # the one matmul, batched over members or not
    # in_axes: a shared (unmapped) argument is passed as it is, to every member
    shared = nets.vmap_members(lambda w, x: x[0] @ w, in_axes=(0, None))(w, x)
    np.testing.assert_allclose(np.asarray(shared), np.asarray(jax.vmap(lambda w, x: x[0] @ w, in_axes=(0, None))(w, x)),
                               rtol=1e-6)
    assert shared.shape == (members, 5, 2)
    for bad in (1, (0,), (0, 1)):  # another axis; one entry for two arguments; an axis other than 0 or None
        with pytest.raises(ValueError, match="vmap_members maps axis 0 or nothing"):
            nets.vmap_members(f, in_axes=bad)(w, x)


@pytest.mark.parametrize("per_member", [False, True])
def test_ensemble_members_are_their_own_critics_and_every_matmul_is_batched_over_them(per_member):
    """An Ensemble's member i is Critic i: the same values as applying each member's parameters alone (with
    its own actions, per_member). Every matmul is batched over the member axis. A shared input (every
    member reads the same observations) is broadcast to the members: batched as it was, JAX put the member
    axis among the first layer's output columns and transposed it back, and the GPU program moved every
    first-layer activation once more per update (measured on an H200 target)."""
    net = nets.critic_ensemble(3, (4, 4))
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(B, OBS)), jnp.float32)
    act = jnp.asarray(np.random.default_rng(1).normal(size=(3, B, ACT) if per_member else (B, ACT)), jnp.float32)
    params = net.init(jax.random.PRNGKey(0), obs, act[0] if per_member else act)
    f = nets.bind(net.apply, params)
    call = (lambda o, a: f.per_member(o, a)) if per_member else f
    got = call(obs, act)
    alone = nets.Critic((4, 4))
    for i in range(3):
        p_i = jax.tree_util.tree_map(lambda x: x[i], params["params"]["VmapCritic_0"])
        np.testing.assert_allclose(np.asarray(got[i]), np.asarray(alone.apply({"params": p_i}, obs, act[i] if per_member else act)),
                                   rtol=1e-5, atol=1e-6)
    dots = [e for e in all_eqns(jax.make_jaxpr(call)(obs, act).jaxpr) if e.primitive.name == "dot_general"]
    assert len(dots) == 3 and all(e.params["dimension_numbers"][1][0] == (0,) for e in dots), \
        [e.params["dimension_numbers"] for e in dots]


def test_dense_layers_fold_leading_axes_on_the_cpu_with_the_same_values_names_and_gradients():
    """``nets.Dense`` (``folding_dot_general``): on a (states, actions, features) input, the same outputs and
    parameter gradients as ``nn.Dense``, the same parameter names, and in the CPU program one contracted
    axis per matmul (the plain layer's weight gradient contracts states and actions at once)."""
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(2).normal(size=(B, 4, OBS + ACT)), jnp.float32)
    ours = nets.Critic((4, 4))
    params = ours.init(jax.random.PRNGKey(0), x)

    def plain_critic(p, x):  # the same network with flax's own Dense layers
        h = x
        for i in range(2):
            h = nn.relu(nn.Dense(4).apply({"params": p["params"]["MLP_0"][f"Dense_{i}"]}, h))
        return nn.Dense(1).apply({"params": p["params"]["MLP_0"]["Dense_2"]}, h).squeeze(-1)

    assert set(params["params"]["MLP_0"]) == {"Dense_0", "Dense_1", "Dense_2"}  # checkpoints keep loading
    loss = lambda f: lambda p: (f(p, x) ** 2).sum()  # noqa: E731
    np.testing.assert_allclose(np.asarray(ours.apply(params, x)), np.asarray(plain_critic(params, x)), rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(jax.grad(loss(ours.apply))(params)),
                    jax.tree_util.tree_leaves(jax.grad(loss(plain_critic))(params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    def contracted(f):
        return contracting_dims(jax.jit(jax.grad(loss(f))).lower(params).as_text())

    assert contracted(ours.apply) and all(len(d) == 1 for d in contracted(ours.apply)), contracted(ours.apply)
    assert any(len(d) > 1 for d in contracted(plain_critic))
    # other dimension numbers than a Dense layer's are left to the plain dot
    rng = np.random.default_rng(3)
    for dims, rhs in (((((1,), (0,)), ((), ())), rng.normal(size=(4, 6))),  # x's middle axis
                      ((((2,), (1,)), ((), ())), rng.normal(size=(3, OBS + ACT)))):  # the kernel's second
        rhs = jnp.asarray(rhs, jnp.float32)
        np.testing.assert_allclose(np.asarray(jax.jit(nets.folding_dot_general, static_argnums=2)(x, rhs, dims)),
                                   np.asarray(jax.lax.dot_general(x, rhs, dims)), rtol=1e-6)


def test_polyak_moves_target_by_tau_toward_online():
    t, o = {"w": jnp.asarray([1.0, 2.0])}, {"w": jnp.asarray([3.0, -2.0])}
    np.testing.assert_allclose(np.asarray(nets.polyak(t, o, 0.25)["w"]), [1.5, 1.0])


# ============================================================================= plug-ins
def test_critic_weights_reductions_percentile_clamp_and_raw_values():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(2, 40)) * 3
    q[0, 3] = 50.0  # a long tail
    cr = plugins.cr_config(True)
    for name, red in (("mean", q.mean(0)), ("min", q.min(0)), ("q1", q[0])):
        cr.critic = name
        w = np.asarray(plugins.critic_weights(jnp.asarray(q, jnp.float32), cr))
        np.testing.assert_allclose(w, (red - red.min()) / (red.max() - red.min()), rtol=1e-5, atol=1e-6)
    cr.critic, cr.percentile_clip = "mean", (5.0, 95.0)
    v = q.mean(0)
    lo, hi = np.percentile(v, [5, 95])
    c = np.clip(v, lo, hi)
    w = np.asarray(plugins.critic_weights(jnp.asarray(q, jnp.float32), cr))
    np.testing.assert_allclose(w, (c - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    cr.percentile_clip, cr.normalize = (0.0, 100.0), False
    np.testing.assert_allclose(np.asarray(plugins.critic_weights(jnp.asarray(q, jnp.float32), cr)), v, rtol=1e-5)
    old = ml_collections.ConfigDict(dict(critic="mean", normalize=True))  # saved before percentile_clip existed: no clamp
    np.testing.assert_allclose(np.asarray(plugins.critic_weights(jnp.asarray(q, jnp.float32), old)),
                               (v - v.min()) / (v.max() - v.min()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(plugins.minmax_weights(jnp.full(4, 2.0))), np.ones(4))
    np.testing.assert_allclose(np.asarray(plugins.minmax_weights(jnp.asarray([0.1, 0.3, 0.2]))), [0.0, 1.0, 0.5], rtol=1e-5)


def test_cr_switches_and_validation():
    ag = td3bc.default_agent_config()
    assert not plugins.cr_weights_before(ag)  # CR off
    ag.cr.enabled = True
    assert plugins.cr_weights_before(ag) and ag.cr.weights_from == "before"
    ag.cr.weights_from = "after"
    assert not plugins.cr_weights_before(ag)
    old = ml_collections.ConfigDict(dict(cr=dict(enabled=True, critic="mean", normalize=True)))  # saved before the key
    assert plugins.cr_weights_before(old)
    plugins.validate(ag)
    for key, bad in (("weights_from", "during"), ("percentile_clip", (95.0, 5.0)), ("critic", "max")):
        a2 = td3bc.default_agent_config()
        a2.cr[key] = bad
        with pytest.raises(ValueError, match=f"agent.cr.{key}"):
            plugins.validate(a2)


def test_gp_inputs_sources_and_penalty_schedule():
    obs, act = jnp.ones((3, 2)), jnp.full((3, 2), 0.25)
    gp = plugins.gp_config(True, weight=2.0)
    gp.repeats = 4
    o, a = plugins.gp_inputs(jax.random.PRNGKey(0), obs, act, gp)
    assert o.shape == (12, 2) and a.shape == (12, 2) and float(jnp.abs(a).max()) <= 1.0 and float(a.std()) > 0.2
    gp.actions = "dataset"
    o, a = plugins.gp_inputs(jax.random.PRNGKey(0), obs, act, gp)
    assert o.shape == (3, 2) and bool(jnp.all(a == act))
    gp.actions = "policy"
    o, a = plugins.gp_inputs(jax.random.PRNGKey(0), obs, act, gp, lambda k, x: jnp.zeros((x.shape[0], 2)) - 0.5, True)
    assert o.shape == (3, 2) and bool(jnp.all(a == -0.5))
    o, _ = plugins.gp_inputs(jax.random.PRNGKey(0), obs, act, gp, lambda k, x: jnp.zeros((x.shape[0], 2)), False)
    assert o.shape == (12, 2)
    # Q_i(s, a) = (i + 2) * sum(a): ||grad_a Q_i|| = (i + 2) sqrt(2); penalty = sum_i relu(norm_i - k)^2
    q_fn = lambda o, a: jnp.stack([2.0 * a.sum(-1), 3.0 * a.sum(-1)])  # noqa: E731
    gp.actions, gp.k = "dataset", 1.0
    expect = 2.0 * ((2 * math.sqrt(2) - 1) ** 2 + (3 * math.sqrt(2) - 1) ** 2)
    pen, info = plugins.gp_penalty(q_fn, jax.random.PRNGKey(1), jnp.int32(10), obs, act, gp)
    np.testing.assert_allclose(float(pen), expect, rtol=1e-5)
    np.testing.assert_allclose(float(info["gp_grad_norm"]), 2.5 * math.sqrt(2), rtol=1e-5)
    pen, _ = plugins.gp_penalty(q_fn, jax.random.PRNGKey(1), jnp.int32(11), obs, act, gp)
    assert float(pen) == 0.0
    g = jax.grad(lambda x: plugins.safe_norm(x))(jnp.zeros(3))
    assert bool(jnp.all(g == 0)) and float(plugins.safe_norm(jnp.asarray([3.0, 4.0]))) == 5.0
    assert float(plugins.safe_norm(jnp.zeros(3))) == 0.0
    np.testing.assert_allclose(float(plugins.safe_norm(jnp.asarray([0.3, 0.4]))), 0.5, rtol=1e-6)


# ============================================================================= BEAR
def bear_setup(**agent):
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=bear.default_agent_config()))
    ag = cfg.agent
    ag.actor_hidden_dims = ag.critic_hidden_dims = ag.vae_hidden_dims = (4,)
    ag.log_grad_norm = False
    ag.num_samples, ag.num_target_samples, ag.num_act_samples = 3, 4, 4
    ag.mmd_sigma = 0.7
    set_agent(cfg, **agent)
    state = bear.init(jax.random.PRNGKey(1), Spec(OBS, ACT), cfg)
    state = state.replace(actor_target=perturb(state.actor.params), critic_target=perturb(state.critic.params, 0.8, -0.3),
                          log_alpha=state.log_alpha.replace(params={"value": jnp.float32(0.4)}))
    return cfg, state, make_batch()


def np_bear_policy(params, obs, eps):
    mean, log_std = np_gaussian_policy(params, obs, -np.inf, np.inf)
    u = mean[:, None] + np.exp(log_std)[:, None] * eps
    return np.tanh(u), u


def np_bear_q(params, obs, actions):
    b, n, a = actions.shape
    return np_critics(params, np.repeat(_f64(obs), n, 0), actions.reshape(b * n, a)).reshape(2, b, n)


def np_vae_decode(params, obs, z):
    return _mlp(_dense_stack(params["params"]["decoder"]), np.concatenate([obs, z], -1))


def test_bear_defaults_are_the_reference():
    ag = bear.default_agent_config()
    assert (ag.actor_lr, ag.critic_lr, ag.vae_lr, ag.alpha_lr) == (1e-3, 1e-3, 1e-3, 1e-3)
    assert tuple(ag.actor_hidden_dims) == tuple(ag.critic_hidden_dims) == (400, 300) and tuple(ag.vae_hidden_dims) == (750, 750)
    assert (ag.kernel, ag.mmd_sigma, ag.num_samples, ag.epsilon, ag.warmup_steps) == ("laplacian", 10.0, 5, 0.05, 20_000)
    assert (ag.actor_noise_clip, ag.target_noise_clip, ag.num_target_samples, ag.target_lambda) == (0.5, 0.0, 10, 0.75)
    assert (ag.log_alpha_min, ag.log_alpha_max, ag.log_alpha_init_std, ag.tau) == (-5.0, 10.0, 1.0, 0.005)
    assert ag.actor_log_std_min == -math.inf and ag.actor_log_std_max == math.inf
    from configs import bear as bear_cfg, bearpp

    assert bear_cfg.get_config().batch_size == 100
    assert (bearpp.get_config("pen-EC3").agent.kernel, bearpp.get_config("pen-EC3").agent.mmd_sigma) == ("gaussian", 20.0)
    assert (bear_cfg.get_config("hopper-E").agent.kernel, bear_cfg.get_config("hopper-E").agent.mmd_sigma) == ("laplacian", 10.0)


def test_bear_vae_loss_by_hand():
    cfg, state, batch = bear_setup()
    key = jax.random.PRNGKey(2)
    loss, info = bear.vae_loss(state.vae.params, state, batch, key)
    o, a = _f64(batch.observations), _f64(batch.actions)
    p = state.vae.params["params"]
    mu, ls = np.split(_mlp(_dense_stack(p["encoder"]), np.concatenate([o, a], -1)), 2, -1)
    ls = np.clip(ls, -4, 15)
    z = mu + np.exp(ls) * normal(key, mu.shape)
    rec = ((np.tanh(np_vae_decode(state.vae.params, o, z)) - a) ** 2).mean()
    kl = ((0.5 * (mu**2 + np.exp(2 * ls)) - ls - 0.5).sum(-1) / mu.shape[-1]).mean()
    np.testing.assert_allclose(float(loss), rec + 0.5 * kl, rtol=1e-5)
    np.testing.assert_allclose(float(info["vae_kl"]), kl, rtol=1e-5)


@pytest.mark.parametrize("clip", [0.0, 0.3])
def test_bear_critic_target_by_hand(clip):
    cfg, state, batch = bear_setup(target_noise_clip=clip)
    key = jax.random.PRNGKey(3)
    loss, _ = bear.critic_loss(state.critic.params, state, batch, key, cfg)
    eps = normal(key, (B, 4, ACT))
    if clip:
        eps = np.clip(eps, -clip, clip)
    a2, _ = np_bear_policy(state.actor_target, batch.next_observations, eps)  # target actor at s'
    qt = np_bear_q(state.critic_target, batch.next_observations, a2)  # target critics at s'
    next_q = (0.75 * qt.min(0) + 0.25 * qt.max(0)).max(-1)
    y = _f64(batch.rewards) + 0.9 * (1 - _f64(batch.terminals)) * next_q
    q = np_critics(state.critic.params, batch.observations, batch.actions)
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(-1).sum(), rtol=1e-5)


def _np_bear_actor(state, batch, key, cfg, cr_params=None):
    ag = cfg.agent
    k_vae, k_pi = jax.random.split(key)
    o = _f64(batch.observations)
    z = np.clip(normal(k_vae, (B, ag.num_samples, 2 * ACT)), -0.5, 0.5)
    beta_u = np_vae_decode(state.vae.params, np.repeat(o[:, None], ag.num_samples, 1), z)
    eps = np.clip(normal(k_pi, (B, ag.num_samples, ACT)), -0.5, 0.5)  # the reference's sample_multiple clip
    pi_a, pi_u = np_bear_policy(state.actor.params, o, eps)
    m = np_mmd(beta_u, pi_u, ag.mmd_sigma, ag.kernel)
    if ag.cr.enabled:
        v = np_bear_q(cr_params, o, np.tanh(beta_u)).mean(-1).mean(0)
        m = m * (v - v.min()) / (v.max() - v.min())
    q = np_bear_q(state.critic.params, o, pi_a).mean(-1).min(0)  # online critics at s
    alpha = math.exp(float(state.log_alpha.params["value"]))
    return alpha * m.mean(), -q.mean() + alpha * m.mean(), m.mean()


@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
def test_bear_actor_loss_and_warm_up_switch(kernel):
    cfg, state, batch = bear_setup(warmup_steps=3, kernel=kernel)
    key = jax.random.PRNGKey(4)
    warm_np, full_np, c_np = _np_bear_actor(state, batch, key, cfg)
    warm, winfo = bear.actor_loss(state.actor.params, state, batch, key, jnp.int32(2), cfg)
    full, _ = bear.actor_loss(state.actor.params, state, batch, key, jnp.int32(3), cfg)
    np.testing.assert_allclose(float(warm), warm_np, rtol=1e-4)  # step < warmup: the constraint only
    np.testing.assert_allclose(float(full), full_np, rtol=1e-4)
    np.testing.assert_allclose(float(winfo["_constraint"]), c_np, rtol=1e-4)


def test_bearpp_cr_weights_use_the_given_critic():
    cfg, state, batch = bear_setup(**{"cr.enabled": True})
    key = jax.random.PRNGKey(5)
    other = perturb(state.critic.params, 1.3, -0.2)
    _, full_np, c_np = _np_bear_actor(state, batch, key, cfg, cr_params=other)
    loss, info = bear.actor_loss(state.actor.params, state, batch, key, jnp.int32(10**6), cfg, other)
    np.testing.assert_allclose(float(info["_constraint"]), c_np, rtol=1e-4)
    np.testing.assert_allclose(float(loss), full_np, rtol=1e-4)
    _, _, c_cur = _np_bear_actor(state, batch, key, cfg, cr_params=state.critic.params)
    _, info = bear.actor_loss(state.actor.params, state, batch, key, jnp.int32(10**6), cfg)
    np.testing.assert_allclose(float(info["_constraint"]), c_cur, rtol=1e-4)


def test_bearpp_gradient_penalty_on_policy_samples():
    cfg, state, batch = bear_setup(**{"gp.enabled": True, "gp.actions": "policy", "gp.repeats": 3, "gp.k": 0.0})
    key = jax.random.PRNGKey(10)
    loss, _ = bear.critic_objective(state.critic.params, state, batch, key, jnp.int32(5), cfg)
    td, _ = bear.critic_loss(state.critic.params, state, batch, key, cfg)
    o = np.repeat(_f64(batch.observations), 3, 0)  # a stochastic policy: 3 samples per state
    a, _ = np_bear_policy(state.actor.params, o, normal(jax.random.fold_in(key, 1), (3 * B, 1, ACT)))
    pen, _ = plugins.gradient_penalty(lambda x, y: state.critic.apply_fn(state.critic.params, x, y),
                                      jnp.asarray(o, jnp.float32), jnp.asarray(a[:, 0], jnp.float32), 0.0)
    np.testing.assert_allclose(float(loss), float(td) + float(pen), rtol=1e-4)


@pytest.mark.parametrize("gp_actions", ["uniform", "policy"])
@pytest.mark.parametrize("algo", ["bear", "td3bc"])
def test_update_critic_gradient_is_the_gradient_of_the_critic_objective(algo, gp_actions):
    """``update`` takes the GP gradient inside its cond (``critic_grads``): it must equal d(critic_objective),
    with the penalty at uniform actions and at the policy's (the mutation run's survivors were all in the latter)."""
    setup, mod = (bear_setup, bear) if algo == "bear" else (td3bc_setup, td3bc)
    cfg, state, batch = setup(**{"gp.enabled": True, "gp.weight": 0.7, "gp.k": 0.0, "gp.repeats": 2,
                                 "gp.actions": gp_actions})
    key = jax.random.PRNGKey(26)
    for step in (5, 6):  # a GP step and a step without it
        got, _ = mod.critic_grads(state.critic.params, state, batch, key, jnp.int32(step), cfg)
        want, _ = jax.grad(mod.critic_objective, has_aux=True)(state.critic.params, state, batch, key, jnp.int32(step), cfg)
        assert_trees_close(got, want, rtol=1e-4, atol=1e-6)
    plain, _ = jax.grad(mod.critic_loss, has_aux=True)(state.critic.params, state, batch, key, cfg)
    assert trees_differ(mod.critic_grads(state.critic.params, state, batch, key, jnp.int32(5), cfg)[0], plain)


def test_bear_actor_q_term_is_the_per_state_min_over_critics():
    """Q_2 = -Q_1 with Q_1 of both signs: the min over critics switches from state to state, so taking the
    mean over the wrong axis (states instead of samples) before the min gives another value."""
    cfg, state, batch = bear_setup(warmup_steps=0)
    crit = jax.tree_util.tree_map(lambda x: x, state.critic.params)
    tree = crit["params"]["VmapCritic_0"]["MLP_0"]
    last = f"Dense_{len(tree) - 1}"
    for name, layer in tree.items():
        sign = -1.0 if name == last else 1.0
        layer["kernel"] = layer["kernel"].at[1].set(sign * layer["kernel"][0])
        layer["bias"] = layer["bias"].at[1].set(sign * layer["bias"][0])
    key = jax.random.PRNGKey(17)
    k_pi = jax.random.split(key)[1]
    pi_a, _ = np_bear_policy(state.actor.params, batch.observations, np.clip(normal(k_pi, (B, 3, ACT)), -0.5, 0.5))
    m1 = np_bear_q(crit, batch.observations, pi_a)[0].mean(-1)
    shift = float(np.median(m1))  # centre Q_1 (and Q_2 = -Q_1) so that its sign varies over states
    tree[last]["bias"] = tree[last]["bias"].at[0].add(-shift).at[1].add(shift)
    state = state.replace(critic=state.critic.replace(params=crit))
    _, info = bear.actor_loss(state.actor.params, state, batch, key, jnp.int32(1), cfg)
    m1 = m1 - shift
    assert (m1 > 0).any() and (m1 < 0).any()
    np.testing.assert_allclose(float(info["actor_q"]), np.minimum(m1, -m1).mean(), rtol=1e-4, atol=1e-6)


def test_bear_actor_gradient_raises_q():
    cfg, state, batch = bear_setup(warmup_steps=0)
    state = state.replace(log_alpha=state.log_alpha.replace(params={"value": jnp.float32(-30.0)}))  # alpha ~ 0
    key = jax.random.PRNGKey(6)
    g, info = jax.grad(bear.actor_loss, has_aux=True)(state.actor.params, state, batch, key, jnp.int32(1), cfg)
    _, after = bear.actor_loss(sgd_step(state.actor.params, g, 1e-2), state, batch, key, jnp.int32(1), cfg)
    assert float(after["actor_q"]) > float(info["actor_q"])


def test_bear_multiplier_step_sign_and_clip():
    cfg, state, _ = bear_setup()
    up = jax.grad(bear.alpha_loss)(state.log_alpha.params, jnp.float32(0.5), cfg)["value"]
    down = jax.grad(bear.alpha_loss)(state.log_alpha.params, jnp.float32(0.01), cfg)["value"]
    e = math.exp(0.4)
    np.testing.assert_allclose([float(up), float(down)], [-e * (0.5 - 0.05), -e * (0.01 - 0.05)], rtol=1e-5)


def _bear_sgd(state, lr=0.1):
    return state.replace(vae=sgd(state.vae, lr), actor=sgd(state.actor, lr), critic=sgd(state.critic, lr),
                         log_alpha=sgd(state.log_alpha, lr))


@pytest.mark.parametrize("weights_from", ["before", "after"])
def test_bear_update_order_targets_and_multiplier(weights_from):
    cfg, state, batch = bear_setup(warmup_steps=0, **{"cr.enabled": True, "cr.weights_from": weights_from})
    state = _bear_sgd(state)
    key, step = jax.random.PRNGKey(7), jnp.int32(3)
    new, info = bear.update(state, batch, key, step, cfg)
    k_vae, k_critic, k_actor = jax.random.split(key, 3)
    g, _ = jax.grad(bear.vae_loss, has_aux=True)(state.vae.params, state, batch, k_vae)
    vae = sgd_step(state.vae.params, g)
    g, _ = jax.grad(bear.critic_loss, has_aux=True)(state.critic.params, state, batch, k_critic, cfg)
    critic = sgd_step(state.critic.params, g)
    # the actor sees the updated VAE and critic; CR reads the critic before or after its step
    s2 = state.replace(vae=state.vae.replace(params=vae), critic=state.critic.replace(params=critic))
    cr_params = state.critic.params if weights_from == "before" else critic
    g, ainfo = jax.grad(bear.actor_loss, has_aux=True)(state.actor.params, s2, batch, k_actor, step, cfg, cr_params)
    actor = sgd_step(state.actor.params, g)
    assert_trees_close(new.vae.params, vae)
    assert_trees_close(new.critic.params, critic)
    assert_trees_close(new.actor.params, actor)
    other = state.critic.params if weights_from == "after" else critic
    g_other, _ = jax.grad(bear.actor_loss, has_aux=True)(state.actor.params, s2, batch, k_actor, step, cfg, other)
    assert trees_differ(sgd_step(state.actor.params, g_other), actor)  # the switch matters
    la = 0.4 + 0.1 * math.exp(0.4) * (float(ainfo["_constraint"]) - 0.05)  # ascent while violated
    np.testing.assert_allclose(float(new.log_alpha.params["value"]), np.clip(la, -5, 10), rtol=1e-5)
    assert_trees_close(new.actor_target, nets.polyak(state.actor_target, actor, 0.005))
    assert_trees_close(new.critic_target, nets.polyak(state.critic_target, critic, 0.005))


@pytest.mark.parametrize("start,epsilon,bound", [(9.99, -1e3, 10.0), (-4.99, 1e3, -5.0)])
def test_bear_multiplier_is_clipped(start, epsilon, bound):
    cfg, state, batch = bear_setup(epsilon=epsilon)
    state = _bear_sgd(state.replace(log_alpha=state.log_alpha.replace(params={"value": jnp.float32(start)})))
    new, _ = bear.update(state, batch, jax.random.PRNGKey(8), jnp.int32(0), cfg)
    np.testing.assert_allclose(float(new.log_alpha.params["value"]), bound)


def test_bear_act_is_argmax_q1_and_init_draws_the_multiplier():
    cfg, state, batch = bear_setup()
    key = jax.random.PRNGKey(9)
    a = bear.act(state, batch.observations, key, cfg)
    samples, _ = np_bear_policy(state.actor.params, batch.observations, normal(key, (B, 4, ACT)))
    q1 = np_bear_q(state.critic.params, batch.observations, samples)[0]
    np.testing.assert_allclose(np.asarray(a), samples[np.arange(B), q1.argmax(-1)], rtol=1e-5, atol=1e-6)
    assert bear.act(state, batch.observations[0], key, cfg).shape == (ACT,)
    k4 = jax.random.split(jax.random.PRNGKey(1), 4)[3]
    fresh = bear.init(jax.random.PRNGKey(1), Spec(OBS, ACT), cfg)
    np.testing.assert_allclose(float(fresh.log_alpha.params["value"]), float(jax.random.normal(k4)), rtol=1e-6)


# ============================================================================= CQL
def cql_setup(**agent):
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=cql.default_agent_config()))
    ag = cfg.agent
    ag.actor_hidden_dims = ag.critic_hidden_dims = (4,)
    ag.num_actions, ag.min_q_weight, ag.temperature = 3, 2.0, 0.7
    set_agent(cfg, **agent)
    state = cql.init(jax.random.PRNGKey(11), Spec(OBS, ACT), cfg)
    state = state.replace(
        critic_target=perturb(state.critic.params, 0.7, -0.2),
        log_alpha=state.log_alpha.replace(params={"value": jnp.float32(0.3)}),
        log_alpha_prime=state.log_alpha_prime.replace(params={"value": jnp.float32(-0.2)}),
    )
    return cfg, state, make_batch(1)


def np_cql_sample(params, obs, eps):
    mean, log_std = np_gaussian_policy(params, obs)
    u = mean[:, None] + np.exp(log_std)[:, None] * eps
    return np.tanh(u), np_tanh_logp(u, mean[:, None], log_std[:, None])


def np_logsumexp(x, axis=-1):
    m = x.max(axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis, keepdims=True))).squeeze(axis)


def test_cql_defaults_are_the_reference():
    ag = cql.default_agent_config()
    assert (ag.actor_lr, ag.critic_lr, ag.alpha_lr, ag.alpha_prime_lr) == (1e-4, 3e-4, 1e-4, 3e-4)
    assert (ag.min_q_weight, ag.num_actions, ag.temperature, ag.bc_warmup_steps) == (5.0, 10, 1.0, 40_000)
    assert (ag.lagrange, ag.target_action_gap, ag.backup_entropy, ag.tau) == (False, 5.0, False, 0.005)
    assert tuple(ag.actor_hidden_dims) == tuple(ag.critic_hidden_dims) == (256, 256, 256)
    from configs import cql as cql_cfg

    c = cql_cfg.get_config("antmaze")
    assert (c.agent.lagrange, c.agent.target_action_gap, c.agent.min_q_weight) == (True, 5.0, 5.0)
    assert (c.reward_scale, c.reward_bias) == (4.0, -2.0)  # (r - 0.5) * 4
    with pytest.raises(ValueError, match="antmaze"):
        cql_cfg.get_config("maze")


@pytest.mark.parametrize("backup_entropy,lagrange", [(False, False), (True, True)])
def test_cql_critic_loss_by_hand(backup_entropy, lagrange):
    cfg, state, batch = cql_setup(backup_entropy=backup_entropy, lagrange=lagrange, target_action_gap=0.4)
    key = jax.random.PRNGKey(12)
    loss, info = cql.critic_loss(state.critic.params, state, batch, key, cfg)
    k_next, k_rand, k_pi, k_pin = jax.random.split(key, 4)
    o, o2, n = _f64(batch.observations), _f64(batch.next_observations), 3
    alpha = math.exp(0.3)
    a2, logp2 = np_cql_sample(state.actor.params, o2, normal(k_next, (B, 1, ACT)))  # online actor at s'
    next_q = np_critics(state.critic_target, o2, a2[:, 0]).min(0)  # target critics at (s', a')
    if backup_entropy:
        next_q = next_q - alpha * logp2[:, 0]
    y = _f64(batch.rewards) + 0.9 * (1 - _f64(batch.terminals)) * next_q
    q = np_critics(state.critic.params, o, batch.actions)
    td = ((q - y) ** 2).mean(-1)
    rand = _f64(jax.random.uniform(k_rand, (B, n, ACT), minval=-1.0, maxval=1.0))
    pi_a, pi_logp = np_cql_sample(state.actor.params, o, normal(k_pi, (B, n, ACT)))
    pin_a, pin_logp = np_cql_sample(state.actor.params, o2, normal(k_pin, (B, n, ACT)))

    def q_at_s(acts):  # every CQL sample is evaluated at s, pi(s')'s included, with the online critics
        return np_critics(state.critic.params, np.repeat(o, n, 0), acts.reshape(B * n, ACT)).reshape(2, B, n)

    cat = np.concatenate([q_at_s(rand) + ACT * math.log(2), q_at_s(pi_a) - pi_logp, q_at_s(pin_a) - pin_logp], -1)
    lse = 0.7 * np_logsumexp(cat / 0.7)
    gap = lse.mean(-1) - q.mean(-1)
    cons = math.exp(-0.2) * (2.0 * gap - 0.4) if lagrange else 2.0 * gap
    np.testing.assert_allclose(float(loss), (td + cons).sum(), rtol=1e-4)
    np.testing.assert_allclose(float(info["cql_gap"]), gap.mean(), rtol=1e-4)


def test_cql_lagrange_multiplier_is_clipped_at_1e6():
    cfg, state, batch = cql_setup(lagrange=True, target_action_gap=0.4)
    key = jax.random.PRNGKey(12)
    lo, info = cql.critic_loss(state.critic.params, state, batch, key, cfg)
    state = state.replace(log_alpha_prime=state.log_alpha_prime.replace(params={"value": jnp.float32(16.0)}))  # e^16 > 1e6
    hi, _ = cql.critic_loss(state.critic.params, state, batch, key, cfg)
    cons_lo = math.exp(-0.2) * (2.0 * float(info["cql_gap"]) - 0.4) * 2  # summed over the two critics' mean gap
    td = float(lo) - cons_lo
    np.testing.assert_allclose(float(hi), td + 1e6 * (2.0 * float(info["cql_gap"]) - 0.4) * 2, rtol=1e-3)


def test_cql_actor_loss_and_bc_warm_start_switch():
    cfg, state, batch = cql_setup(bc_warmup_steps=5)
    key = jax.random.PRNGKey(13)
    o, a = _f64(batch.observations), _f64(batch.actions)
    mean, log_std = np_gaussian_policy(state.actor.params, o)
    u = mean + np.exp(log_std) * normal(key, (B, ACT))
    logp = np_tanh_logp(u, mean, log_std)
    alpha = math.exp(0.3)
    rl = (alpha * logp - np_critics(state.critic.params, o, np.tanh(u)).min(0)).mean()
    bc_logp = np_tanh_logp(np.arctanh(a), np.clip(mean, -9, 9), log_std)
    bc = (alpha * logp - bc_logp).mean()
    # the reference's counter starts at 1: BC while step + 1 < 5, i.e. steps 0..3
    for step, want in ((0, bc), (3, bc), (4, rl), (100, rl)):
        got, _ = cql.actor_loss(state.actor.params, state, batch, key, jnp.int32(step), cfg)
        np.testing.assert_allclose(float(got), want, rtol=1e-4, err_msg=f"step {step}")
    got, _ = cql.actor_loss(state.actor.params, state, batch, key, jnp.int32(100), cfg, alpha=0.5)
    np.testing.assert_allclose(float(got), (0.5 * logp - np_critics(state.critic.params, o, np.tanh(u)).min(0)).mean(), rtol=1e-4)


def test_cql_actor_gradients_raise_q_and_bc_likelihood():
    cfg, state, batch = cql_setup(bc_warmup_steps=5)
    key = jax.random.PRNGKey(14)

    def q_and_bc(p):
        mean, log_std = state.actor.apply_fn(p, batch.observations)
        a, _, _ = nets.tanh_gaussian_sample(key, mean, log_std)
        q = state.critic.apply_fn(state.critic.params, batch.observations, a).min(0).mean()
        return float(q), float(nets.tanh_gaussian_log_prob(batch.actions, mean, log_std).mean())

    q0, l0 = q_and_bc(state.actor.params)
    g, _ = jax.grad(cql.actor_loss, has_aux=True)(state.actor.params, state, batch, key, jnp.int32(100), cfg, 0.0)
    assert q_and_bc(sgd_step(state.actor.params, g, 1e-2))[0] > q0
    g, _ = jax.grad(cql.actor_loss, has_aux=True)(state.actor.params, state, batch, key, jnp.int32(0), cfg, 0.0)
    assert q_and_bc(sgd_step(state.actor.params, g, 1e-2))[1] > l0


def test_cql_update_order_temperature_and_targets():
    cfg, state, batch = cql_setup(backup_entropy=True)
    state = state.replace(actor=sgd(state.actor), critic=sgd(state.critic), log_alpha=sgd(state.log_alpha))
    key, step = jax.random.PRNGKey(15), jnp.int32(10**6)
    new, info = cql.update(state, batch, key, step, cfg)
    k_actor, k_critic = jax.random.split(key)
    mean, log_std = np_gaussian_policy(state.actor.params, batch.observations)
    u = mean + np.exp(log_std) * normal(k_actor, (B, ACT))
    entropy = -np_tanh_logp(u, mean, log_std).mean()
    la = 0.3 - 0.1 * (entropy + ACT)  # SAC: descend log_alpha * (entropy - target), target = -|A|
    np.testing.assert_allclose(float(new.log_alpha.params["value"]), la, rtol=1e-4)
    np.testing.assert_allclose(float(info["alpha"]), math.exp(la), rtol=1e-4)
    # the actor loss uses the stepped alpha; the critic loss the policy before its step and the new alpha
    g, _ = jax.grad(cql.actor_loss, has_aux=True)(state.actor.params, state, batch, k_actor, step, cfg, jnp.exp(jnp.float32(la)))
    assert_trees_close(new.actor.params, sgd_step(state.actor.params, g), rtol=1e-4, atol=1e-6)
    s_crit = state.replace(log_alpha=state.log_alpha.replace(params={"value": jnp.float32(la)}))
    g, _ = jax.grad(cql.critic_loss, has_aux=True)(state.critic.params, s_crit, batch, k_critic, cfg)
    critic = sgd_step(state.critic.params, g)
    assert_trees_close(new.critic.params, critic, rtol=1e-4, atol=1e-6)
    assert_trees_close(new.critic_target, nets.polyak(state.critic_target, critic, 0.005), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gap_target,direction", [(-100.0, 1), (100.0, -1)])
def test_cql_lagrange_dual_ascends_on_the_gap(gap_target, direction):
    cfg, state, batch = cql_setup(lagrange=True, target_action_gap=gap_target)
    state = state.replace(log_alpha_prime=sgd(state.log_alpha_prime, 1e-3))
    new, info = cql.update(state, batch, jax.random.PRNGKey(16), jnp.int32(10**6), cfg)
    # d/dlog a' of -a' (w gap - target) = -a' (w gap - target): SGD adds lr a' (w gap - target)
    expect = -0.2 + 1e-3 * math.exp(-0.2) * (2.0 * float(info["cql_gap"]) - gap_target)
    np.testing.assert_allclose(float(new.log_alpha_prime.params["value"]), expect, rtol=1e-5)
    assert direction * (expect + 0.2) > 0
    np.testing.assert_allclose(float(info["alpha_prime"]), math.exp(expect), rtol=1e-5)


# ============================================================================= TD3+BC(++)
def td3bc_setup(**agent):
    cfg = ml_collections.ConfigDict(dict(discount=0.9, agent=td3bc.default_agent_config()))
    cfg.agent.hidden_dims = (4,)
    cfg.agent.log_grad_norm = False
    set_agent(cfg, **agent)
    state = td3bc.init(jax.random.PRNGKey(21), Spec(OBS, ACT), cfg)
    state = state.replace(actor_target=perturb(state.actor.params), critic_target=perturb(state.critic.params, 0.7, -0.2))
    return cfg, state, make_batch(2)


def test_td3bc_critic_target_by_hand():
    cfg, state, batch = td3bc_setup()
    # the target actor saturates at +1 on one action and -1 on the other, so the noisy a' crosses both clips
    tgt = jax.tree_util.tree_map(lambda x: x, state.actor_target)
    last = tgt["params"]["MLP_0"][f"Dense_{len(cfg.agent.hidden_dims)}"]
    last["bias"] = last["bias"] + jnp.asarray([4.0, -4.0])
    state = state.replace(actor_target=tgt)
    key = jax.random.PRNGKey(22)
    loss, _ = td3bc.critic_loss(state.critic.params, state, batch, key, cfg)
    noise = np.clip(0.2 * normal(key, (B, ACT)), -0.5, 0.5)
    raw = np_deterministic_policy(state.actor_target, batch.next_observations) + noise
    assert (raw > 1).any() and (raw < -1).any()
    a2 = np.clip(raw, -1, 1)
    y = _f64(batch.rewards) + 0.9 * (1 - _f64(batch.terminals)) * np_critics(state.critic_target, batch.next_observations, a2).min(0)
    q = np_critics(state.critic.params, batch.observations, batch.actions)
    np.testing.assert_allclose(float(loss), ((q - y) ** 2).mean(-1).sum(), rtol=1e-5)


def test_td3bc_actor_loss_lambda_uses_abs_q_and_gradient_raises_q():
    cfg, state, batch = td3bc_setup()
    o = _f64(batch.observations)
    pi = np_deterministic_policy(state.actor.params, o)
    q1 = np_critics(state.critic.params, o, pi)[0]
    # shift Q_1 so that it has both signs: lambda must divide by mean |Q_1|, not |mean Q_1|
    crit = jax.tree_util.tree_map(lambda x: x, state.critic.params)
    last = crit["params"]["VmapCritic_0"]["MLP_0"][f"Dense_{len(cfg.agent.hidden_dims)}"]
    last["bias"] = last["bias"].at[0].add(-float(np.median(q1)) + 0.01)
    state = state.replace(critic=state.critic.replace(params=crit))
    q1 = np_critics(crit, o, pi)[0]
    assert (q1 > 0).any() and (q1 < 0).any()
    batch = batch._replace(actions=jnp.asarray(pi, jnp.float32))  # BC term at its minimum: its gradient is 0
    loss, info = td3bc.actor_loss(state.actor.params, state, batch, cfg)
    lmbda = 2.5 / np.abs(q1).mean()
    np.testing.assert_allclose(float(info["lambda"]), lmbda, rtol=1e-5)
    np.testing.assert_allclose(float(loss), -lmbda * q1.mean(), rtol=1e-4, atol=1e-6)
    g, _ = jax.grad(td3bc.actor_loss, has_aux=True)(state.actor.params, state, batch, cfg)
    p2 = sgd_step(state.actor.params, g, 1e-2)
    assert np_critics(crit, o, np_deterministic_policy(p2, o))[0].mean() > q1.mean()
    # with the dataset's actions: + mean_j W_j mean_dims (pi(s_j) - a_j)^2
    data = make_batch(2)
    w = np.asarray([0.0, 1.0, 0.5, 0.2, 1.0])
    bc = ((pi - _f64(data.actions)) ** 2).mean(-1)
    for weights, expect_bc in ((None, bc.mean()), (jnp.asarray(w, jnp.float32), (w * bc).mean())):
        loss, info = td3bc.actor_loss(state.actor.params, state, data, cfg, weights)
        np.testing.assert_allclose(float(loss), -lmbda * q1.mean() + expect_bc, rtol=1e-4, atol=1e-6)


def test_td3bc_actor_loss_reads_q1_alone():
    """The reference's critic.Q1: the loss equals the hand computation with Q_1, differs from what
    Q_2 or min(Q_1, Q_2) would give, and the second critic is not even evaluated (NaN in its
    parameters leaves the loss and the actor's gradient finite: evaluating the ensemble and
    keeping its first output would backpropagate 0 * NaN through it)."""
    cfg, state, batch = td3bc_setup()
    o, a = _f64(batch.observations), _f64(batch.actions)
    pi = np_deterministic_policy(state.actor.params, o)
    # Q_1 with both signs (with one sign, lambda * mean Q is -alpha * sign whichever critic is read)
    crit = jax.tree_util.tree_map(lambda x: x, state.critic.params)
    last = crit["params"]["VmapCritic_0"]["MLP_0"][f"Dense_{len(cfg.agent.hidden_dims)}"]
    last["bias"] = last["bias"].at[0].add(-float(np.median(np_critics(crit, o, pi)[0])) + 0.01)
    state = state.replace(critic=state.critic.replace(params=crit))
    qs = np_critics(crit, o, pi)
    bc = ((pi - a) ** 2).mean(-1).mean()
    expect = {name: -2.5 / np.abs(q).mean() * q.mean() + bc for name, q in (("q1", qs[0]), ("q2", qs[1]), ("min", qs.min(0)))}
    assert abs(expect["q1"] - expect["q2"]) > 1e-3 and abs(expect["q1"] - expect["min"]) > 1e-3
    loss, _ = td3bc.actor_loss(state.actor.params, state, batch, cfg)
    np.testing.assert_allclose(float(loss), expect["q1"], rtol=1e-5)
    nan2 = jax.tree_util.tree_map(lambda x: x.at[1].set(jnp.nan), state.critic.params)
    state = state.replace(critic=state.critic.replace(params=nan2))
    (loss, _), g = jax.value_and_grad(td3bc.actor_loss, has_aux=True)(state.actor.params, state, batch, cfg)
    np.testing.assert_allclose(float(loss), expect["q1"], rtol=1e-5)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree_util.tree_leaves(g))
    cfg.agent.log_grad_norm = True  # the diagnostics' ||grad_a Q_1|| read Q_1 alone too
    info = td3bc.diagnostics(state, batch, jax.random.PRNGKey(0), cfg)
    assert all(bool(jnp.isfinite(info[k])) for k in ("grad_norm_pi", "grad_norm_data", "actor_loss"))


@pytest.mark.parametrize("weights_from", ["before", "after"])
def test_td3bcpp_cr_weights_from_the_critic_before_or_after_its_step(weights_from):
    cfg, state, batch = td3bc_setup(**{"cr.enabled": True, "cr.weights_from": weights_from})
    state = state.replace(actor=sgd(state.actor), critic=sgd(state.critic))
    key = jax.random.PRNGKey(23)
    new, info = td3bc.update(state, batch, key, jnp.int32(0), cfg)
    g, _ = jax.grad(td3bc.critic_loss, has_aux=True)(state.critic.params, state, batch, key, cfg)
    critic = sgd_step(state.critic.params, g)
    after = state.replace(critic=state.critic.replace(params=critic))
    q = np_critics(state.critic.params if weights_from == "before" else critic, batch.observations, batch.actions).mean(0)
    w = (q - q.min()) / (q.max() - q.min())
    np.testing.assert_allclose(float(info["cr_weight_mean"]), w.mean(), rtol=1e-5)
    g, _ = jax.grad(td3bc.actor_loss, has_aux=True)(state.actor.params, after, batch, cfg, jnp.asarray(w, jnp.float32))
    actor = sgd_step(state.actor.params, g)
    assert_trees_close(new.critic.params, critic)
    assert_trees_close(new.actor.params, actor)
    assert_trees_close(new.actor_target, nets.polyak(state.actor_target, actor, 0.005))
    assert_trees_close(new.critic_target, nets.polyak(state.critic_target, critic, 0.005))


def test_td3bc_actor_waits_for_policy_freq():
    cfg, state, batch = td3bc_setup()
    state = state.replace(actor=sgd(state.actor), critic=sgd(state.critic))
    new, _ = td3bc.update(state, batch, jax.random.PRNGKey(24), jnp.int32(1), cfg)
    assert not trees_differ(new.actor.params, state.actor.params, 0.0)
    assert not trees_differ(new.actor_target, state.actor_target, 0.0)
    assert not trees_differ(new.critic_target, state.critic_target, 0.0)
    assert trees_differ(new.critic.params, state.critic.params)
    for step in (0, 2):
        new, _ = td3bc.update(state, batch, jax.random.PRNGKey(24), jnp.int32(step), cfg)
        assert trees_differ(new.actor.params, state.actor.params) and trees_differ(new.actor_target, state.actor_target)


def test_td3bcpp_gradient_penalty_joins_the_critic_loss():
    cfg, state, batch = td3bc_setup(**{"gp.enabled": True, "gp.weight": 0.7, "gp.k": 0.0, "gp.repeats": 3})
    key = jax.random.PRNGKey(25)
    loss, info = td3bc.critic_objective(state.critic.params, state, batch, key, jnp.int32(5), cfg)
    td, _ = td3bc.critic_loss(state.critic.params, state, batch, key, cfg)
    o = jnp.repeat(batch.observations, 3, 0)
    a = jax.random.uniform(jax.random.fold_in(key, 1), (3 * B, ACT), minval=-1.0, maxval=1.0)  # its own key
    pen, _ = plugins.gradient_penalty(lambda x, y: state.critic.apply_fn(state.critic.params, x, y), o, a, 0.0)
    np.testing.assert_allclose(float(loss), float(td) + 0.7 * float(pen), rtol=1e-5)
    np.testing.assert_allclose(float(info["gp_penalty"]), 0.7 * float(pen), rtol=1e-5)
    off, _ = td3bc.critic_objective(state.critic.params, state, batch, key, jnp.int32(6), cfg)
    np.testing.assert_allclose(float(off), float(td), rtol=1e-6)
    cfg.agent.gp.actions = "policy"  # the deterministic policy's action at each state, once
    loss, _ = td3bc.critic_objective(state.critic.params, state, batch, key, jnp.int32(5), cfg)
    pi = jnp.asarray(np_deterministic_policy(state.actor.params, batch.observations), jnp.float32)
    pen, _ = plugins.gradient_penalty(lambda x, y: state.critic.apply_fn(state.critic.params, x, y), batch.observations, pi, 0.0)
    np.testing.assert_allclose(float(loss), float(td) + 0.7 * float(pen), rtol=1e-4)


def test_td3bcpp_presets_follow_the_reference():
    from configs import td3bcpp

    assert tuple(td3bcpp.get_config("walker2d-EM").agent.cr.percentile_clip) == (5.0, 95.0)
    for task in ("hopper-EM", "walker2d-ER3", "walker2d-E"):
        assert tuple(td3bcpp.get_config(task).agent.cr.percentile_clip) == (0.0, 100.0)
    c = td3bcpp.get_config()
    assert (c.agent.cr.critic, c.agent.cr.weights_from, c.agent.cr.normalize) == ("mean", "before", True)
    assert (c.agent.gp.k, c.agent.gp.every, c.agent.gp.repeats, c.agent.gp.actions) == (1.0, 5, 16, "uniform")


# ============================================================================= BRAC / iTRPO: what each step reads
def brac_setup(mod, **agent):
    """BRAC's or iTRPO's defaults on 4-unit networks, no warm start, SGD optimisers, target critics unlike the
    online ones."""
    cfg = base_config()
    cfg.agent = mod.default_agent_config()
    for k in [k for k in cfg.agent if k.endswith("hidden_dims")]:
        cfg.agent[k] = (4,)
    cfg.agent.update(dict(warm_start=0, tau=0.2, num_target_samples=3, num_div_samples=3, **agent))
    state = mod.init(jax.random.PRNGKey(0), Spec(OBS, ACT), cfg)
    state = state.replace(actor=sgd(state.actor), critic=sgd(state.critic), critic_target=perturb(state.critic.params))
    return cfg, state


@pytest.mark.parametrize("algo", ["brac", "itrpo"])
def test_brac_and_itrpo_actor_step_reads_the_stepped_online_critic_and_polyak_moves_the_target(algo):
    """L_pi = mean[a_ent log pi + w D(s) - min_i mean_j Q_i(s, a_j)] with the ONLINE critics (not the targets),
    and in the update the critics after their own step; then target <- (1 - tau) target + tau online."""
    mod = {"brac": brac, "itrpo": itrpo}[algo]
    cfg, state = brac_setup(mod)
    batch, key, step = make_batch(), jax.random.PRNGKey(1), jnp.int32(5)
    weight = itrpo.kl_weight(cfg) if algo == "itrpo" else None
    w = cfg.agent.alpha if weight is None else weight
    obs = batch.observations

    def by_parts(q_params):
        q, logp, div = brac.policy_estimates(key, state.actor.params, state, obs, q_params, cfg)
        return float((brac.entropy_weight(state, cfg) * logp + w * div - q).mean())

    loss, _ = brac.actor_loss(state.actor.params, state, batch, key, step, cfg, weight)
    np.testing.assert_allclose(float(loss), by_parts(state.critic.params), rtol=1e-5)
    assert abs(float(loss) - by_parts(state.critic_target)) > 1e-3
    new, _ = mod.update(state, batch, key, step, cfg)
    k_c, k_a = jax.random.split(key)
    rewards = itrpo.shaped_rewards(state, batch, cfg)[0] if algo == "itrpo" else None
    gc = jax.grad(lambda p: brac.critic_loss(p, state, batch, k_c, cfg, rewards, weight)[0])(state.critic.params)
    critic = sgd_step(state.critic.params, gc)
    assert_trees_close(new.critic.params, critic)
    want_target = jax.tree_util.tree_map(lambda t, o: 0.8 * np.asarray(t) + 0.2 * np.asarray(o), state.critic_target, critic)
    assert_trees_close(new.critic_target, want_target)
    stepped = state.replace(critic=state.critic.replace(params=critic))
    ga = jax.grad(lambda p: brac.actor_loss(p, stepped, batch, k_a, step, cfg, weight)[0])(state.actor.params)
    assert_trees_close(new.actor.params, sgd_step(state.actor.params, ga))
    g_before = jax.grad(lambda p: brac.actor_loss(p, state, batch, k_a, step, cfg, weight)[0])(state.actor.params)
    assert trees_differ(new.actor.params, sgd_step(state.actor.params, g_before))  # the critics before their step
