"""iTRPO (offrl/algos/itrpo.py) on BRAC's framework: the shaped target against a NumPy computation
(bonus, clip, KL factor, terminals, target parameters, s' vs s), the paper's Theorem 1 on the
implemented losses (one-state continuous bandit), shaping off == BRAC-vp bit for bit, the lagged
pi_k, the behaviour model's loss and schedule, and the reference's defaults."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from conftest import np_mlp, tiny_config
from test_baselines import _batch, _layers
from offrl.algos import Spec, brac, itrpo
from offrl.algos.common import adam
from offrl.data.dataset import Transitions

LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------- helpers
def _np(x):
    return np.asarray(x, np.float64)


def _np_policy(params, obs):
    """(mean, log_std) of a GaussianPolicy with log_std_mode='clip' [-5, 2], by NumPy."""
    p = params["params"]
    trunk = [(_np(p["MLP_0"][f"Dense_{i}"]["kernel"]), _np(p["MLP_0"][f"Dense_{i}"]["bias"])) for i in range(len(p["MLP_0"]))]
    h = np.maximum(np_mlp(trunk, obs), 0.0)  # the trunk ends with its activation
    mean = h @ _np(p["Dense_0"]["kernel"]) + _np(p["Dense_0"]["bias"])
    log_std = np.clip(h @ _np(p["Dense_1"]["kernel"]) + _np(p["Dense_1"]["bias"]), -5.0, 2.0)
    return mean, log_std


def _np_gauss_logp(u, mean, log_std):
    return (-0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


def _np_tanh_logp(a, mean, log_std, eps):
    u = np.arctanh(np.clip(a, -1 + eps, 1 - eps))
    return _np_gauss_logp(u, mean, log_std) - np.log(1 - np.tanh(u) ** 2).sum(-1)


def _np_critics(params, obs, act):
    ens = params["params"]["VmapCritic_0"]["MLP_0"]
    return np.stack([np_mlp(_layers(ens, i), np.concatenate([obs, act], -1))[..., 0] for i in range(2)])


def _perturb(tree, key, scale):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _run_stages(mod, state, cfg, batch, key, only=None):
    for stage in mod.stages(cfg):
        if only and stage.name != only:
            continue
        upd = jax.jit(stage.update)
        for t in range(stage.num_steps):
            state, _ = upd(state, batch, jax.random.fold_in(key, t), jnp.int32(t))
    return state


# ------------------------------------------------------------------------------- shaped target by hand
@pytest.mark.parametrize("kl_factor,pi_k", [("alpha", "current"), ("tau", "lagged")])
def test_shaped_target_and_critic_loss_by_hand(kl_factor, pi_k):
    n = 3
    cfg = tiny_config("itrpo", steps=2, num_seeds=1, **{
        "agent.alpha": 0.3, "agent.shaping_tau": 0.6, "agent.reward_bonus": 5.0, "agent.kl_factor": kl_factor,
        "agent.pi_k": pi_k, "agent.num_div_samples": n, "agent.num_target_samples": n, "agent.grad_penalty": 0.0})
    itrpo.validate(cfg)
    batch = _batch(b=8)
    state = itrpo.init(jax.random.PRNGKey(1), Spec(3, 2), cfg)
    # target critics differ from the online ones; a lagged pi_k differs from pi
    state = state.replace(critic_target=_perturb(state.critic_target, jax.random.PRNGKey(2), 0.3),
                          pi_k=_perturb(state.pi_k, jax.random.PRNGKey(3), 0.3))
    o, a, o2 = _np(batch.observations), _np(batch.actions), _np(batch.next_observations)
    r, d = _np(batch.rewards), _np(batch.terminals)
    mb, lb = _np_policy(state.behavior.params, o)
    mk, lk = _np_policy(state.actor.params if pi_k == "current" else state.pi_k, o)
    raw = _np_tanh_logp(a, mk, lk, 1e-6) - _np_tanh_logp(a, mb, lb, 1e-6)
    clip = float(np.median(raw))  # half of the ratios are clipped
    cfg.agent.shaping_clip = clip
    w = 0.3 if kl_factor == "alpha" else 0.6

    # next-state value from the documented keys: update splits (critic, actor), the critic (target, penalty),
    # the target (a'_j, KL) with the KL on the a'_j's key (shared samples)
    key = jax.random.PRNGKey(4)
    k_y = jax.random.split(jax.random.split(key)[0])[0]
    k_a = jax.random.split(k_y)[0]
    eps = _np(jax.random.normal(k_a, (n,) + batch.actions.shape))
    mp2, lp2 = _np_policy(state.actor.params, o2)
    mb2, lb2 = _np_policy(state.behavior.params, o2)
    u = mp2 + np.exp(lp2) * eps  # (n, B, A)
    q_next = _np_critics(state.critic_target, np.broadcast_to(o2, (n,) + o2.shape), np.tanh(u)).mean(1).min(0)
    kl = (_np_gauss_logp(u, mp2, lp2) - _np_gauss_logp(u, mb2, lb2)).mean(0)
    y = r + 5.0 + 0.6 * 0.3 * np.maximum(raw, clip) + 0.99 * (1 - d) * (q_next - w * kl)

    rewards, ratio = itrpo.shaped_rewards(state, batch, cfg)
    np.testing.assert_allclose(_np(ratio), np.maximum(raw, clip), rtol=1e-4, atol=1e-4)
    got_y = brac.critic_target(state, batch, k_y, cfg, rewards, itrpo.kl_weight(cfg))
    np.testing.assert_allclose(_np(got_y), y, rtol=1e-4, atol=1e-3)
    # the same numbers inside one update (pre-update online critics in the loss)
    q = _np_critics(state.critic.params, o, a)
    _, info = jax.jit(lambda s, b, k: itrpo.update(s, b, k, jnp.int32(1), cfg))(state, batch, key)  # step 1: no refresh
    np.testing.assert_allclose(float(info["target"]), y.mean(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(float(info["critic_loss"]), ((q - y) ** 2).mean(-1).sum(), rtol=1e-4)
    np.testing.assert_allclose(float(info["shaping_log_ratio"]), np.maximum(raw, clip).mean(), rtol=1e-4, atol=1e-4)


def test_grad_penalty_is_the_action_gradient_norm():
    cfg = tiny_config("itrpo", steps=2, num_seeds=1)
    state = itrpo.init(jax.random.PRNGKey(5), Spec(3, 2), cfg)
    batch = _batch(b=8)
    a = jnp.asarray(np.random.default_rng(1).uniform(-0.9, 0.9, (8, 2)), jnp.float32)
    got = float(brac.action_grad_penalty(state.critic.params, state, batch.observations, a))
    # central finite differences of each critic in each action coordinate
    h, want = 1e-3, 0.0
    for i in range(2):
        g = []
        for j in range(2):
            e = np.zeros((8, 2), np.float32)
            e[:, j] = h
            qp = state.critic.apply_fn(state.critic.params, batch.observations, a + e)[i]
            qm = state.critic.apply_fn(state.critic.params, batch.observations, a - e)[i]
            g.append(_np(qp - qm) / (2 * h))
        want += (np.stack(g, -1) ** 2).sum(-1).mean()
    np.testing.assert_allclose(got, want, rtol=2e-2)
    assert got > 0


# ------------------------------------------------------------------------------- Theorem 1
def _gauss_module(params, obs):
    shape = obs.shape[:-1] + (1,)
    return jnp.broadcast_to(params["m"], shape), jnp.broadcast_to(params["ls"], shape)


@pytest.mark.parametrize("kl_factor", ["alpha", "tau"])
def test_theorem1_policy_step_optimum_on_a_bandit(kl_factor):
    """One state, 1-D action a = tanh(u). pi_k = N(0.3, 0.5^2), pi_b = N(-0.2, 0.7^2) in u, reward
    r = -c (u - m)^2, episodes end after one step. The critic is the implemented shaped target
    (a perfect critic); the policy minimises the implemented actor loss. Theorem 1: the minimiser is
    pi* ∝ pi_k^rho pi_b^(1 - rho) exp(r / w), with w the KL weight and rho = tau alpha / w
    (rho = tau with the paper's factor), a Gaussian with known mean and variance."""
    alpha, tau_s, c, m = 0.5, 0.6, 0.5, 0.8
    mk, sk, mb, sb = 0.3, 0.5, -0.2, 0.7
    n = 8192
    cfg = tiny_config("itrpo", steps=1, num_seeds=1, **{
        "agent.alpha": alpha, "agent.shaping_tau": tau_s, "agent.kl_factor": kl_factor, "agent.pi_k": "lagged",
        "agent.shaping_clip": float("-inf"), "agent.reward_bonus": 0.0, "agent.num_div_samples": n,
        "agent.num_target_samples": n})
    itrpo.validate(cfg)
    cfg_y = cfg.copy_and_resolve_references()  # the target's next-state terms (x 0 here) from one sample
    cfg_y.agent.num_div_samples = cfg_y.agent.num_target_samples = 1
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    scalar = lambda v: TrainState.create(apply_fn=_gauss_module, params=v, tx=optax.identity())  # noqa: E731
    zero_q = TrainState.create(apply_fn=lambda p, o, a: jnp.zeros((2,) + a.shape[:-1]), params={}, tx=optax.identity())
    kstate = itrpo.ITRPOState(behavior=scalar({"m": f32(mb), "ls": f32(np.log(sb))}), behavior_ent=None,
                              actor=scalar({"m": f32(0.0), "ls": f32(0.0)}), critic=zero_q, log_ent=None,
                              critic_target={}, pi_k={"m": f32(mk), "ls": f32(np.log(sk))})

    # the critic: the minimiser of the squared error to the implemented shaped targets y(a) of
    # terminal transitions over a grid of actions, in the quadratic family (exact: y is quadratic in u)
    u_grid = jnp.linspace(-2.5, 2.5, 41)
    g = u_grid.shape[0]
    grid = Transitions(observations=jnp.zeros((g, 1)), actions=jnp.tanh(u_grid)[:, None], rewards=-c * (u_grid - m) ** 2,
                       next_observations=jnp.zeros((g, 1)), terminals=jnp.ones(g), timeouts=jnp.ones(g),
                       next_actions=jnp.zeros((g, 1)), returns=jnp.zeros(g), episode_ids=jnp.zeros(g, jnp.int32))
    rewards, _ = itrpo.shaped_rewards(kstate, grid, cfg)
    y = _np(brac.critic_target(kstate, grid, jax.random.PRNGKey(0), cfg_y, rewards, itrpo.kl_weight(cfg)))
    feats = np.stack([np.ones(g), _np(u_grid), _np(u_grid) ** 2], -1)
    theta, *_ = np.linalg.lstsq(feats, y, rcond=None)
    np.testing.assert_allclose(feats @ theta, y, atol=2e-3 * np.abs(y).max())

    def q_fn(params, obs, a):
        u = jnp.arctanh(jnp.clip(a[..., 0], -1 + 1e-6, 1 - 1e-6))
        q = theta[0] + theta[1] * u + theta[2] * u**2
        return jnp.stack([q, q])

    state = kstate.replace(actor=TrainState.create(apply_fn=_gauss_module, params={"m": f32(0.0), "ls": f32(0.0)},
                                                   tx=adam(0.03)),
                           critic=TrainState.create(apply_fn=q_fn, params={}, tx=optax.identity()))
    batch = Transitions(observations=jnp.zeros((1, 1)), actions=jnp.zeros((1, 1)), rewards=jnp.zeros(1),
                        next_observations=jnp.zeros((1, 1)), terminals=jnp.ones(1), timeouts=jnp.ones(1),
                        next_actions=jnp.zeros((1, 1)), returns=jnp.zeros(1), episode_ids=jnp.zeros(1, jnp.int32))
    key = jax.random.PRNGKey(6)

    @jax.jit
    def step(actor):
        g = jax.grad(lambda p: brac.actor_loss(p, state.replace(actor=actor), batch, key, jnp.int32(0), cfg,
                                               itrpo.kl_weight(cfg))[0])(actor.params)
        return actor.apply_gradients(grads=g)

    actor = state.actor
    for _ in range(800):
        actor = step(actor)
    w = alpha if kl_factor == "alpha" else tau_s
    rho = tau_s * alpha / w
    prec = rho / sk**2 + (1 - rho) / sb**2 + 2 * c / w
    mean = (rho * mk / sk**2 + (1 - rho) * mb / sb**2 + 2 * c * m / w) / prec
    np.testing.assert_allclose(float(actor.params["m"]), mean, atol=0.02)
    np.testing.assert_allclose(float(np.exp(actor.params["ls"])), prec**-0.5, rtol=0.03)
    # the optimum moved off both pi_b's and BRAC's (rho = 0) optimum, so the test tells them apart
    brac_mean = (mb / sb**2 + 2 * c * m / w) / (1 / sb**2 + 2 * c / w)
    assert abs(mean - brac_mean) > 0.05 and abs(float(actor.params["m"]) - brac_mean) > 0.04


# ------------------------------------------------------------------------------- switches
def test_shaping_off_is_brac_vp_bit_for_bit():
    cfg = tiny_config("itrpo", steps=2, num_seeds=1, **{"agent.shaping": False})
    itrpo.validate(cfg)
    cfg_b = cfg.copy_and_resolve_references()
    cfg_b.algo = "brac"
    cfg_b.agent.alpha = itrpo.kl_weight(cfg)  # BRAC-vp whose alpha is iTRPO's KL weight w (tau by default)
    brac.validate(cfg_b)
    batch, key = _batch(b=32), jax.random.PRNGKey(9)
    # both stages are brac's code for the behaviour model; the train stage is where iTRPO differs
    s_i = _run_stages(itrpo, itrpo.init(jax.random.PRNGKey(8), Spec(3, 2), cfg), cfg, batch, key, only="train")
    s_b = _run_stages(brac, brac.init(jax.random.PRNGKey(8), Spec(3, 2), cfg_b), cfg_b, batch, key, only="train")
    assert [st.name for st in itrpo.stages(cfg)] == [st.name for st in brac.stages(cfg_b)] == ["behavior", "train"]
    for part in ("actor", "critic"):
        for x, y in zip(jax.tree_util.tree_leaves(getattr(s_i, part).params), jax.tree_util.tree_leaves(getattr(s_b, part).params)):
            assert np.array_equal(np.asarray(x), np.asarray(y)), part
    for x, y in zip(jax.tree_util.tree_leaves(s_i.critic_target), jax.tree_util.tree_leaves(s_b.critic_target)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # with shaping the rewards differ (the hand-computed test above shows they reach the target)
    cfg.agent.shaping = True
    rewards, _ = itrpo.shaped_rewards(s_i, batch, cfg)
    assert not np.allclose(np.asarray(rewards), np.asarray(batch.rewards))


def test_lagged_pi_k_refresh_and_equal_to_current_at_interval_1():
    batch, key = _batch(b=32), jax.random.PRNGKey(11)
    out = {}
    for name, over in (("current", {"agent.pi_k": "current"}), ("lag1", {"agent.pi_k": "lagged", "agent.pi_k_interval": 1}),
                       ("lag2", {"agent.pi_k": "lagged", "agent.pi_k_interval": 2})):
        cfg = tiny_config("itrpo", steps=3, num_seeds=1, **over)
        itrpo.validate(cfg)
        s = itrpo.init(jax.random.PRNGKey(10), Spec(3, 2), cfg)
        upd = jax.jit(lambda s, t, cfg=cfg: itrpo.update(s, batch, jax.random.fold_in(key, t), t, cfg)[0])
        actors, pks = [s.actor.params], []
        for t in range(3):
            s = upd(s, jnp.int32(t))
            actors.append(s.actor.params)
            pks.append(s.pi_k)
        out[name] = (actors, pks)
    same = lambda p, q: all(np.array_equal(np.asarray(x), np.asarray(y))  # noqa: E731
                            for x, y in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q)))
    assert all(same(p, q) for p, q in zip(out["current"][0], out["lag1"][0]))
    actors2, pks2 = out["lag2"]
    # refreshed at steps 0 and 2 (before the update), kept at step 1
    assert same(pks2[0], actors2[0]) and same(pks2[1], actors2[0]) and same(pks2[2], actors2[2])
    assert not same(actors2[1], actors2[0])


# ------------------------------------------------------------------------------- behaviour model, defaults
def test_behavior_loss_by_hand_and_lr_schedule():
    cfg = tiny_config("itrpo", steps=10, num_seeds=1)
    state = itrpo.init(jax.random.PRNGKey(12), Spec(3, 2), cfg)
    state = state.replace(behavior_ent=state.behavior_ent.replace(params={"value": jnp.float32(np.log(0.4))}))
    batch = _batch(b=16)
    batch = batch._replace(actions=batch.actions.at[0, 0].set(1.0))  # a saturated action: clipped, finite
    key = jax.random.PRNGKey(13)
    loss, info = brac.behavior_loss(state.behavior.params, state, batch, cfg, key)
    mean, log_std = _np_policy(state.behavior.params, _np(batch.observations))
    a32 = np.clip(np.asarray(batch.actions), np.float32(-1 + 1e-6), np.float32(1 - 1e-6))  # the float32 clip
    nll = -_np_tanh_logp(_np(a32), mean, log_std, 0.0).mean()
    u = mean + np.exp(log_std) * _np(jax.random.normal(key, mean.shape))
    logp = _np_gauss_logp(u, mean, log_std) - np.log(1 - np.tanh(u) ** 2).sum(-1)
    np.testing.assert_allclose(float(info["behavior_loss"]), nll, rtol=1e-4)
    np.testing.assert_allclose(float(loss), nll + 0.4 * logp.mean(), rtol=1e-4)
    # the entropy weight rises while the entropy is below -|A| and falls above it
    s2, info2 = brac.behavior_update(state, batch, key, jnp.int32(0), cfg)
    up = float(info2["behavior_entropy"]) < -2
    assert (float(s2.behavior_ent.params["value"]) > np.log(0.4)) == up
    # lr x0.1 at 80% and at 90% of behavior_steps
    sched = brac.behavior_schedule(cfg.agent)
    assert [float(sched(t)) for t in (0, 7, 8, 9, 10)] == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.01])


def test_defaults_equal_the_reference_code():
    """JackZhangY/offorRL d4rl/configs/trainer/ikl.yaml and bc.yaml, and ikl_trainer.py's KL factor (tau)."""
    import configs.itrpo as cfg_mod

    c = cfg_mod.get_config()
    ag = c.agent
    assert (c.algo, c.num_steps, c.batch_size, c.discount) == ("itrpo", 1_000_000, 256, 0.99)
    assert (ag.alpha, ag.shaping_tau, ag.reward_bonus, ag.shaping_clip, ag.grad_penalty) == (0.03, 0.9, 5.0, -1.0, 0.1)
    assert (ag.num_div_samples, ag.num_target_samples, ag.shared_target_samples) == (10, 10, True)
    assert (ag.actor_lr, ag.critic_lr, ag.tau, ag.warm_start, ag.alpha_entropy, ag.train_alpha_entropy) == (3e-4, 3e-4, 0.005, 0, 0.0, False)
    assert tuple(ag.actor_hidden_dims) == tuple(ag.critic_hidden_dims) == (256, 256, 256) and ag.num_critics == 2
    assert (ag.behavior_steps, ag.behavior_lr, tuple(ag.behavior_lr_milestones), ag.behavior_entropy) == (1_000_000, 1e-3, (0.8, 0.9), True)
    assert tuple(ag.behavior_hidden_dims) == (256, 256) and ag.behavior_clip_eps == ag.shaping_eps == 1e-6
    assert (ag.log_std_min, ag.log_std_max, ag.log_std_mode) == (-5.0, 2.0, "clip")
    assert (ag.kl_factor, ag.pi_k, ag.shaping, ag.variant) == ("tau", "current", True, "vp")  # ikl_trainer.py's KL weight
    itrpo.validate(c)


@pytest.mark.parametrize("key,bad", [("kl_factor", "beta"), ("pi_k", "old"), ("pi_k_interval", 0), ("shaping_tau", 1.5),
                                     ("variant", "pr"), ("num_div_samples", 4)])
def test_validate_rejects(key, bad):
    cfg = tiny_config("itrpo", **{f"agent.{key}": bad})
    with pytest.raises(ValueError, match=key if key != "num_div_samples" else "shared_target_samples"):
        itrpo.validate(cfg)


# ------------------------------------------------------------------------------- paper tables
def test_paper_tables_transcribed_and_cells_without_local_data_skipped(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT
    from configs.tables import itrpo_table2 as t2
    from configs.tables import itrpo_table3 as t3

    assert len(t2.PAPER) == 15 and len(t3.PAPER) == 6
    for col, avg in t2.PAPER_AVERAGE.items():  # the printed Average row is the mean of the rows
        assert round(np.mean([t2.PAPER[t][col] for t in t2.PAPER]), 1) == avg
    for col, total in t3.PAPER_TOTAL.items():  # and the Total row the sum (the paper's iTRPO total is off)
        assert round(sum(t3.PAPER[t][col] for t in t3.PAPER), 1) == (434.9 if col == "iTRPO" else total)
    assert t2.COLUMNS["iTRPO"] == t3.COLUMNS["iTRPO"] == "itrpo" and t2.COLUMNS["BRAC-vp"] == "brac_vp"
    args = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--table=itrpo_table3", "--source=offrl",
            "--columns=iTRPO,BRAC-vp", "--tasks=antmaze-umaze-v2", f"--workdir={tmp_path}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("skip ") == 2 and "no local data for offrl/antmaze/umaze-v0" in proc.stdout
    assert "| antmaze-umaze-v2 | — / 92.7 | — / — |" in proc.stdout
