"""BRAC+ (Zhang, Kuppannagari & Prasanna, "BRAC+: Improved Behavior Regularized Actor Critic for
Offline Reinforcement Learning", ACML 2021; its OpenReview version is titled "BRAC+: Going Deeper
with Behavior Regularized Offline Reinforcement Learning").

Reference code followed: github.com/vermouth1992/bracp, file ``bracp.py`` (``BRACPAgent`` and
``BRACPRunner``; per-task settings in ``d4rl_bracp.py``), with the networks of the rlutils
version it was released against (github.com/vermouth1992/rl-util, ``rlutils/tf/nn/behavior.py``,
``actors.py``, ``values.py`` at Feb 2021). Defaults are the reference's; where the paper says
otherwise the paper's choice is a switch (``configs/bracplus.py`` has a ``paper`` preset).

Three stages, all on min-max scaled rewards in [0, 1] (``reward_normalization='minmax'``):

1. 'behavior' (``agent.behavior_steps``, not evaluated): an ensemble of B=3 conditional VAEs, its
   members' parameters stacked on a leading axis and every function ``jax.vmap``-ed over them.
   Encoder q(z | s, u) and decoder p(u | s, z) are Gaussians with std = softplus(clip(raw, -10, 5)),
   latent size 2|A|, on the pre-tanh action u = atanh(clip(a, +-(1 - 1e-6))). Loss, the negative
   ELBO (beta = 1) of the squashed action, summed over members:

       L_b = -[log N(u; mu_dec(s, z), std_dec(s, z)) - sum log(1 - tanh(u)^2)] + KL(q(z|s,u) || N(0, I)),
       z = mu_q + std_q * eps.

   Adam with the reference's step decay (lr x 1, .5, .1, .05, .01 at fifths of the stage); the
   reference keeps training pi_b during the main stage with that optimiser (lr 1% by then):
   ``agent.train_behavior_in_main`` (True).

2. 'pretrain' (``agent.pretrain_steps``, not evaluated): the policy minimises the KL bound with the
   entropy dual (below), lr ``pretrain_lr`` with the same step decay: pi_0 = argmin KL(pi, pi_b).

3. 'train' (evaluated): at its first update the policy (and a Polyak target copy of it) starts
   from pi_0 with a fresh Adam at ``actor_lr``, the entropy multiplier keeps its value. Then each
   update, as ``BRACPAgent._update``: (pi_b step), critic step, GP-weight dual step, policy step,
   alpha and beta dual steps, Polyak targets (tau 1e-3) of Q and of the policy.

The analytic KL upper bound (paper eq. 7; ``kl_upper_bound``), per state, for a pre-tanh action
sample u ~ N(mu_pi, std_pi) (KL is invariant under the tanh bijection):

    KL(pi || pi_b)(s) <= mean_{b, l} [ KL(N(mu_pi, std_pi) || p_b(. | s, z_l)) + KL(q_b(z | s, u) || N(0, I)) ],
    z_l ~ q_b(z | s, u), l = 1..L (L = 5), b over the ensemble,

both Gaussian KLs in closed form; gradients reach the policy through mu_pi, std_pi and the
reparameterised u and z. The policy step averages it over n = 5 action samples per state.

Critic (twin Q, 0.5 * sum over the pair of squared errors, averaged over the batch):

    y = r + gamma (1 - d) max_{j<=5} min_i Q'_i(s', a'_j),  a'_j ~ pi_target(s')      (reference)
    y = r + gamma (1 - d) min_i Q'_i(s', a'),  a' ~ pi(s')                               (paper: max_q_backup=False,
                                                                                          target_policy=False)
    L_Q = mean_s [ 0.5 sum_i (Q_i(s, a) - y)^2 + lambda * GP(s) ]

The reference's ``kl_backup`` switch (False there, and here) subtracts the KL penalty inside the
backup, at s', with the backup policy's samples u_j and the current alpha (no eps_KL offset):

    y = r + gamma (1 - d) [ max_j min_i Q'_i(s', a'_j) - alpha(s') mean_j KL(s'; u_j) / c ],

c = ``kl_backup_scale``. The reference's c is its ``reward_scale_factor``: the raw reward range
max r - min r that its min-max scaling removed (1 without scaling). The agent sees only scaled
rewards, so c is a key (1.0 by default): set it to the dataset's raw reward range for the
reference's exact penalty.

with the gated gradient penalty at one a' ~ pi(s) (``gradient_penalty``):

    GP(s) = ||grad_a' min_i Q_i(s, a')||^{1 or 2} * w(s)
    w(s)  = 1[KL(s) > eps_GP]                                       (paper: gp_gate='hard', gp_squared=True)
    w(s)  = softplus(KL(s) - eps_GP) / max_batch softplus(...)      (reference: gp_gate='softplus', norm not squared)

and lambda either fixed (paper, 0.1: ``gp_weight_learned=False``) or, as the reference, a learned
multiplier softplus-parameterised, floored at ``gp_weight`` (0.1), raised by dual ascent while the
batch-mean GP exceeds ``max_ood_grad_norm`` (0.01).

Policy (tanh-Gaussian, std = softplus(clip(raw, -20, 5))), n = 5 samples a_j per state:

    L_pi = mean_s [ -mean_j min_i Q_i(s, a_j) + alpha(s) (KL(s) - eps_KL) - beta mean_j log pi(a_j|s) ]

alpha(s): the reference's one scalar (``state_alpha=False``) or the paper's state-dependent
multiplier, an MLP (3x256) with softplus output (``state_alpha=True``); both start at
``alpha_init`` (10) and take an Adam step on -mean_s[alpha(s) (KL(s) - eps_KL)] (KL held fixed):
alpha(s) rises where KL(s) > eps_KL and falls elsewhere. beta (the entropy multiplier, init 10)
steps on beta * (mean log pi + H_0): the maximum-entropy constraint H(pi) <= H_0, with H_0 =
(behaviour's negative ELBO) - |A| log(std_scale) unless ``target_entropy`` is given.

Thresholds, estimated in-graph (the reference computes them with host-side passes):

- eps_KL = mean KL over the last ``epoch_length`` (2500) pretraining updates (each update's batch of
  100 per-state KLs; the reference evaluates the pretrained policy on the whole dataset) plus the
  per-task ``generalization_threshold`` (0.2 ... 7.0; ``max_kl`` overrides it).
- H_0 from the mean ELBO loss over the last ``epoch_length`` behaviour updates (the reference: one
  pass over the dataset after training).
- eps_GP starts at eps_KL + generalization_threshold. The main stage accumulates sum, sum of squares
  and count of every per-state KL its policy steps compute; after every ``epoch_length`` updates
  (the reference's epoch, 2500 steps) eps_GP becomes that epoch's mean + std (population std, as
  the reference's logger) and the accumulators restart: "mean + std of the KL at epoch t - 1".

Acting (``act_mode``): the reference's 'q_select' draws 20 pre-tanh samples, clips each to mean
+- std, squashes, and takes the one with the highest mean-over-ensemble Q; 'mean' is tanh(mean).

Not implemented: the reference's MMD and cross-entropy regularisers (the paper's Adroit runs). Initialisers are Flax's defaults (the TF reference: Glorot).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, make_state
from offrl.checks import Checks

ACT_MODES = ("q_select", "mean")
GP_GATES = ("softplus", "hard")
LAGRANGE_MAX = 10_000.0  # the reference's LagrangeLayer max_value
ATANH_EPS = 1e-6


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # behaviour model
            num_ensembles=3,
            behavior_hidden_dims=(256, 256),
            behavior_lr=1e-3,
            behavior_steps=500_000,  # reference: 200 epochs x 2500
            train_behavior_in_main=True,
            # pretraining to min KL
            pretrain_steps=500_000,
            pretrain_lr=1e-3,
            # main phase
            actor_hidden_dims=(256, 256),
            critic_hidden_dims=(256, 256),
            actor_lr=5e-6,
            critic_lr=3e-4,
            tau=1e-3,
            num_samples=5,  # n: action samples per state in the policy step and the backup max
            num_latents=5,  # L: latent samples in the KL bound
            max_q_backup=True,  # max over num_samples target-policy actions (paper: one sample)
            target_policy=True,  # backup actions from the Polyak-averaged policy (paper: the policy)
            kl_backup=False,  # reference's switch (off there): - alpha(s') KL(s') / kl_backup_scale in the backup
            kl_backup_scale=1.0,  # the reference divides by its raw reward range max r - min r (see docstring)
            # multipliers
            state_alpha=False,  # paper: alpha(s) from an MLP; reference: one scalar
            alpha_hidden_dims=(256, 256, 256),
            alpha_init=10.0,
            alpha_lr=1e-3,
            entropy_reg=True,
            beta_lr=1e-3,
            target_entropy=None,  # None: behaviour's negative ELBO - |A| log(std_scale)
            std_scale=4.0,
            # thresholds
            generalization_threshold=0.2,  # per task (configs/bracplus.py: TASK_PRESETS)
            max_kl=None,  # None: KL reached by pretraining + generalization_threshold
            epoch_length=2500,
            # gradient penalty
            use_gp=True,
            gp_gate="softplus",  # paper: 'hard' (indicator)
            gp_squared=False,  # paper: ||grad||^2; reference: ||grad||
            gp_weight=0.1,  # paper's lambda; reference: the learned multiplier's floor and start
            gp_weight_learned=True,
            max_ood_grad_norm=0.01,
            # acting
            act_mode="q_select",
            act_samples=20,
        )
    )


# ---------------------------------------------------------------- networks
def softplus_std(raw, lo: float, hi: float):
    """std = softplus(clip(raw, lo, hi)) (rlutils' Gaussian heads)."""
    return jax.nn.softplus(jnp.clip(raw, lo, hi))


class BehaviorVAE(nn.Module):
    """One conditional VAE of the pre-tanh action u given s; Gaussian encoder and decoder with
    softplus standard deviations (rlutils ``BehaviorPolicy``, out_dist='normal')."""

    act_dim: int
    latent_dim: int
    hidden_dims: tuple = (256, 256)
    std_min: float = -10.0
    std_max: float = 5.0

    def setup(self):
        self.encoder = nets.MLP(tuple(self.hidden_dims), 2 * self.latent_dim)
        self.decoder = nets.MLP(tuple(self.hidden_dims), 2 * self.act_dim)

    def encode(self, obs, raw_act):
        mu, raw = jnp.split(self.encoder(jnp.concatenate([raw_act, obs], -1)), 2, axis=-1)
        return mu, softplus_std(raw, self.std_min, self.std_max)

    def decode(self, obs, z):
        mean, raw = jnp.split(self.decoder(jnp.concatenate([z, obs], -1)), 2, axis=-1)
        return mean, softplus_std(raw, self.std_min, self.std_max)

    def __call__(self, obs, raw_act):
        mu, _ = self.encode(obs, raw_act)
        return self.decode(obs, mu)


class SquashedGaussianActor(nn.Module):
    """(mean, log_std) of the pre-tanh Gaussian, std = softplus(clip(raw, -20, 5)) (rlutils' actor)."""

    act_dim: int
    hidden_dims: tuple = (256, 256)

    @nn.compact
    def __call__(self, obs):
        mean, raw = jnp.split(nets.MLP(tuple(self.hidden_dims), 2 * self.act_dim)(obs), 2, axis=-1)
        return mean, jnp.log(softplus_std(raw, -20.0, 5.0))


def inverse_softplus(x):
    """softplus^-1(x) = x + log(1 - exp(-x)), finite for large x (log(expm1(x)) overflows at 10000)."""
    x = jnp.asarray(x, jnp.float32)
    return x + jnp.log(-jnp.expm1(-x))


def clip_keep_grad(x, lo, hi):
    """clip in the forward pass, identity gradient (rlutils ``clip_by_value_preserve_gradient``)."""
    return x + jax.lax.stop_gradient(jnp.clip(x, lo, hi) - x)


class Multiplier(nn.Module):
    """A Lagrange multiplier softplus(clip(raw)): one scalar, or a function of the state (an MLP).
    Starts at ``initial`` (the MLP's output is offset by inverse_softplus(init)); returns (batch,)."""

    state_dependent: bool = False
    hidden_dims: tuple = (256, 256, 256)
    initial: float = 10.0
    lo: float | None = None
    hi: float = LAGRANGE_MAX

    @nn.compact
    def __call__(self, obs):
        offset = inverse_softplus(self.initial)
        if self.state_dependent:
            raw = nets.MLP(tuple(self.hidden_dims), 1)(obs).squeeze(-1) + offset
        else:
            raw = jnp.broadcast_to(self.param("raw", lambda k: offset), obs.shape[:-1])
        lo = -jnp.inf if self.lo is None else inverse_softplus(self.lo)
        return jax.nn.softplus(clip_keep_grad(raw, lo, inverse_softplus(self.hi)))


# ---------------------------------------------------------------- state
class Stats(struct.PyTreeNode):
    """In-graph estimates of the thresholds (see the module docstring)."""

    nll_sum: jax.Array
    nll_n: jax.Array
    kl_sum: jax.Array
    kl_sq: jax.Array
    kl_n: jax.Array
    target_entropy: jax.Array
    eps_kl: jax.Array
    eps_gp: jax.Array

    @classmethod
    def zeros(cls):
        z = jnp.zeros((), jnp.float32)
        return cls(z, z, z, z, z, z, z, z)


class BRACPlusState(struct.PyTreeNode):
    behavior: TrainState  # params stacked over the ensemble (leading axis num_ensembles)
    pretrain_actor: TrainState  # pi_0 with the step-decayed pretraining Adam
    pretrain_beta: TrainState
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    alpha: TrainState
    beta: TrainState
    gp_weight: TrainState
    stats: Stats


def step_decay(lr: float, total_steps: int):
    """The reference's PiecewiseConstantDecay: lr x (1, .5, .1, .05, .01) at fifths of ``total_steps``."""
    interval = max(1, total_steps // 5)
    return optax.piecewise_constant_schedule(lr, {interval * k: f for k, f in zip(range(1, 5), (0.5, 0.2, 0.5, 0.2))})


def _modules(spec: Spec, ag):
    vae = BehaviorVAE(spec.act_dim, 2 * spec.act_dim, tuple(ag.behavior_hidden_dims))
    actor = SquashedGaussianActor(spec.act_dim, tuple(ag.actor_hidden_dims))
    alpha = Multiplier(bool(ag.state_alpha), tuple(ag.alpha_hidden_dims), ag.alpha_init)
    return vae, actor, alpha


def init(key, spec: Spec, config) -> BRACPlusState:
    ag = config.agent
    kb, ka, kc, kal = jax.random.split(key, 4)  # the two scalar multipliers draw nothing
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    vae, actor, alpha = _modules(spec, ag)
    vae_params = jax.vmap(lambda k: vae.init(k, obs, act))(jax.random.split(kb, ag.num_ensembles))
    behavior = TrainState.create(apply_fn=vae.apply, params=vae_params, tx=adam(step_decay(ag.behavior_lr, ag.behavior_steps)))
    actor_params = actor.init(ka, obs)
    pretrain_actor = TrainState.create(apply_fn=actor.apply, params=actor_params,
                                       tx=adam(step_decay(ag.pretrain_lr, ag.pretrain_steps)))
    main_actor = TrainState.create(apply_fn=actor.apply, params=actor_params, tx=adam(ag.actor_lr))
    critic = make_state(kc, nets.critic_ensemble(2, tuple(ag.critic_hidden_dims)), (obs, act), adam(ag.critic_lr))
    beta_mod = Multiplier(False, initial=ag.alpha_init)  # the reference starts both multipliers at `alpha`
    beta_params = beta_mod.init(kal, obs)
    pretrain_beta = TrainState.create(apply_fn=beta_mod.apply, params=beta_params, tx=adam(ag.alpha_lr))
    beta = TrainState.create(apply_fn=beta_mod.apply, params=beta_params, tx=adam(ag.beta_lr))
    alpha_state = make_state(kal, alpha, (obs,), adam(ag.alpha_lr))
    gp_mod = Multiplier(False, initial=ag.gp_weight, lo=ag.gp_weight)
    gp_weight = make_state(kal, gp_mod, (obs,), adam(ag.alpha_lr))
    return BRACPlusState(behavior, pretrain_actor, pretrain_beta, main_actor, actor_params, critic, critic.params,
                         alpha_state, beta, gp_weight, Stats.zeros())


# ---------------------------------------------------------------- behaviour model and KL bound
def clip_atanh(a):
    return jnp.arctanh(jnp.clip(a, -1.0 + ATANH_EPS, 1.0 - ATANH_EPS))


def elbo_loss(vae_apply, params, obs, raw_act, eps):
    """One member's negative ELBO per state, -log p(a|s) bound of the squashed action, with the
    latent noise ``eps`` (shape (..., latent)) given: (loss, nll, kl)."""
    mu, std = vae_apply(params, obs, raw_act, method=BehaviorVAE.encode)
    z = mu + std * eps
    mean, dstd = vae_apply(params, obs, z, method=BehaviorVAE.decode)
    nll = -(nets.gaussian_log_prob(raw_act, mean, jnp.log(dstd)) - nets.tanh_log_det_jacobian(raw_act))
    kl = nets.standard_normal_kl(mu, jnp.log(std))
    return nll + kl, nll, kl


def behavior_loss(params, state: BRACPlusState, batch, key):
    """Sum over members of their batch-mean negative ELBO; each member sees the same batch."""
    raw = clip_atanh(batch.actions)
    eps = jax.random.normal(key, (params_count(params),) + raw.shape[:-1] + (2 * raw.shape[-1],))
    loss, nll, kl = jax.vmap(lambda p, e: elbo_loss(state.behavior.apply_fn, p, batch.observations, raw, e))(params, eps)
    per_member = loss.mean(-1)
    return per_member.sum(), {"behavior_loss": per_member.mean(), "behavior_nll": nll.mean(), "behavior_kl": kl.mean()}


def params_count(stacked) -> int:
    return jax.tree_util.tree_leaves(stacked)[0].shape[0]


def behavior_step(state: BRACPlusState, batch, key):
    g, info = jax.grad(behavior_loss, has_aux=True)(state.behavior.params, state, batch, key)
    return state.replace(behavior=state.behavior.apply_gradients(grads=g)), info


def kl_upper_bound(vae_apply, vae_params, obs, raw_act, mean_pi, log_std_pi, key, num_latents: int):
    """The analytic upper bound on KL(pi(.|s) || pi_b(.|s)) per state, for pre-tanh policy samples
    ``raw_act`` of N(mean_pi, exp(log_std_pi)): mean over ``num_latents`` z ~ q_b(z | s, u) and over
    the ensemble of KL(N(mean_pi, std_pi) || p_b(u | s, z)) + KL(q_b(z | s, u) || N(0, I))."""

    def member(p, k, obs, raw_act):
        mu, std = vae_apply(p, obs, raw_act, method=BehaviorVAE.encode)
        z = mu + std * jax.random.normal(k, (num_latents,) + mu.shape, mu.dtype)
        mean_b, std_b = vae_apply(p, jnp.broadcast_to(obs, (num_latents,) + obs.shape), z, method=BehaviorVAE.decode)
        kl_dec = nets.gaussian_kl(mean_pi, log_std_pi, mean_b, jnp.log(std_b)).mean(0)
        return kl_dec + nets.standard_normal_kl(mu, jnp.log(std))

    n = params_count(vae_params)
    keys = jax.random.split(key, n)
    # Each member reads its own copy of (s, u), as in nets.Ensemble: the gradient w.r.t. a shared input is
    # then a matmul per member and a sum, not one matmul contracting (members, hidden) at once (2-3 fewer
    # kernels per update on an H200 target; docs/performance.md).
    obs_m, raw_m = (jnp.broadcast_to(x, (n,) + x.shape) for x in (obs, raw_act))
    return jax.vmap(member)(vae_params, keys, obs_m, raw_m).mean(0)


def _policy_kl(state: BRACPlusState, actor_apply, actor_params, obs, key, num: int, config):
    """num tanh-Gaussian samples per state and the KL bound at each: (actions, log_probs, kl), each
    with a leading axis num (the reference tiles the batch num times)."""
    k_a, k_kl = jax.random.split(key)
    mean, log_std = actor_apply(actor_params, obs)
    mean_n = jnp.broadcast_to(mean, (num,) + mean.shape)
    log_std_n = jnp.broadcast_to(log_std, (num,) + mean.shape)
    a, logp, u = nets.tanh_gaussian_sample(k_a, mean_n, log_std_n)
    obs_n = jnp.broadcast_to(obs, (num,) + obs.shape)
    kl = kl_upper_bound(state.behavior.apply_fn, state.behavior.params, obs_n, u, mean_n, log_std_n, k_kl,
                        config.agent.num_latents)
    return a, logp, kl


# ---------------------------------------------------------------- stage 2: pretraining to min KL
def pretrain_loss(actor_params, state: BRACPlusState, batch, key, config):
    _, logp, kl = _policy_kl(state, state.pretrain_actor.apply_fn, actor_params, batch.observations, key, 1, config)
    logp, kl = logp[0], kl[0]
    beta = state.pretrain_beta.apply_fn(state.pretrain_beta.params, batch.observations)
    ent_term = beta * logp if config.agent.entropy_reg else 0.0
    loss = (kl - ent_term).mean()
    return loss, (kl, logp)


def beta_step(beta: TrainState, obs, mean_logp, target_entropy):
    gap = jax.lax.stop_gradient(mean_logp + target_entropy)
    g = jax.grad(lambda p: (beta.apply_fn(p, obs) * gap).mean())(beta.params)
    return beta.apply_gradients(grads=g)


def accumulate(stats: Stats, values, on) -> Stats:
    on = jnp.asarray(on, jnp.float32)  # a traced or a Python bool (bench.py traces with a Python int step)
    v = jax.lax.stop_gradient(values)
    return stats.replace(kl_sum=stats.kl_sum + on * v.sum(), kl_sq=stats.kl_sq + on * (v**2).sum(),
                         kl_n=stats.kl_n + on * v.size)


def end_epoch(stats: Stats, end) -> Stats:
    """At an epoch's end: eps_GP = mean + std (population) of the KLs accumulated, accumulators reset."""
    mean = stats.kl_sum / jnp.maximum(stats.kl_n, 1.0)
    std = jnp.sqrt(jnp.maximum(stats.kl_sq / jnp.maximum(stats.kl_n, 1.0) - mean**2, 0.0))
    swapped = stats.replace(eps_gp=mean + std, kl_sum=0.0 * stats.kl_sum, kl_sq=0.0 * stats.kl_sq, kl_n=0.0 * stats.kl_n)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(end, a, b), swapped, stats)


def behavior_update(state: BRACPlusState, batch, key, step, config):
    ag = config.agent
    state, info = behavior_step(state, batch, key)
    on = jnp.asarray(step >= ag.behavior_steps - ag.epoch_length, jnp.float32)
    st = state.stats
    nll_sum, nll_n = st.nll_sum + on * info["behavior_loss"], st.nll_n + on
    if ag.target_entropy is None:
        h0 = nll_sum / jnp.maximum(nll_n, 1.0) - batch.actions.shape[-1] * jnp.log(ag.std_scale)
    else:
        h0 = jnp.asarray(ag.target_entropy, jnp.float32)
    state = state.replace(stats=st.replace(nll_sum=nll_sum, nll_n=nll_n, target_entropy=h0))
    return state, {**info, "target_entropy": h0}


def pretrain_update(state: BRACPlusState, batch, key, step, config):
    ag = config.agent
    st = state.stats  # its KL accumulators are still zero: the behaviour stage does not touch them
    g, (kl, logp) = jax.grad(pretrain_loss, has_aux=True)(state.pretrain_actor.params, state, batch, key, config)
    actor = state.pretrain_actor.apply_gradients(grads=g)
    beta = state.pretrain_beta
    if ag.entropy_reg:
        beta = beta_step(beta, batch.observations, logp.mean(), st.target_entropy)
    st = accumulate(st, kl, step >= ag.pretrain_steps - ag.epoch_length)
    reached = st.kl_sum / jnp.maximum(st.kl_n, 1.0)
    eps_kl = reached + ag.generalization_threshold if ag.max_kl is None else jnp.asarray(ag.max_kl, jnp.float32)
    st = st.replace(eps_kl=eps_kl, eps_gp=eps_kl + ag.generalization_threshold)
    state = state.replace(pretrain_actor=actor, pretrain_beta=beta, stats=st)
    return state, {"pretrain_kl": kl.mean(), "pretrain_entropy": -logp.mean(), "eps_kl": eps_kl,
                   "beta": beta.apply_fn(beta.params, batch.observations[:1])[0]}


# ---------------------------------------------------------------- stage 3: main phase
def gradient_penalty(critic_apply, critic_params, obs, actions, kl, eps_gp, config):
    """Per-state gated penalty on the action gradient of min_i Q_i(s, a) at ``actions``."""
    ag = config.agent
    grad = jax.grad(lambda a: critic_apply(critic_params, obs, a).min(0).sum())(actions)
    sq = (grad**2).sum(-1)
    size = sq if ag.gp_squared else jnp.sqrt(jnp.maximum(sq, 1e-12))  # finite gradient where Q is flat in a
    kl = jax.lax.stop_gradient(kl)
    if ag.gp_gate == "hard":
        w = (kl > eps_gp).astype(size.dtype)
    else:
        w = jax.nn.softplus(kl - eps_gp)
        w = w / jnp.maximum(w.max(), jnp.finfo(w.dtype).tiny)  # all far under the gate: softplus is 0, no 0/0
    return size * jax.lax.stop_gradient(w)


def target_q(state: BRACPlusState, batch, key, config):
    ag = config.agent
    num = ag.num_samples if ag.max_q_backup else 1
    params = state.actor_target if ag.target_policy else state.actor.params
    mean, log_std = state.actor.apply_fn(params, batch.next_observations)
    shape = (num,) + mean.shape
    mean_n, log_std_n = jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape)
    a, _, u = nets.tanh_gaussian_sample(key, mean_n, log_std_n)
    next_obs = jnp.broadcast_to(batch.next_observations, (num,) + batch.next_observations.shape)
    q = jax.vmap(lambda o, x: state.critic.apply_fn(state.critic_target, o, x).min(0))(next_obs, a).max(0)
    if ag.kl_backup:  # the reference's switch: - alpha(s') * mean_j KL(s'; u_j) / reward range
        kl = kl_upper_bound(state.behavior.apply_fn, state.behavior.params, next_obs, u, mean_n, log_std_n,
                            jax.random.fold_in(key, 1), ag.num_latents).mean(0)
        alpha = state.alpha.apply_fn(state.alpha.params, batch.next_observations)
        q = q - alpha * kl / ag.kl_backup_scale
    return batch.rewards + config.discount * (1.0 - batch.terminals) * q


def critic_loss(critic_params, state: BRACPlusState, batch, key, config):
    ag = config.agent
    k_t, k_gp = jax.random.split(key)
    y = jax.lax.stop_gradient(target_q(state, batch, k_t, config))
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    td = 0.5 * ((q - y) ** 2).sum(0)
    if ag.use_gp:
        a, _, kl = _policy_kl(state, state.actor.apply_fn, state.actor.params, batch.observations, k_gp, 1, config)
        gp = gradient_penalty(state.critic.apply_fn, critic_params, batch.observations, a[0], kl[0], state.stats.eps_gp,
                              config)
        lam = jax.lax.stop_gradient(state.gp_weight.apply_fn(state.gp_weight.params, batch.observations))
    else:
        gp = lam = jnp.zeros_like(td)
    loss = (td + lam * gp).mean()
    return loss, {"critic_loss": td.mean(), "q": q.mean(), "gp": gp.mean(), "gp_weight": lam.mean()}


def actor_loss(actor_params, state: BRACPlusState, batch, key, config):
    ag = config.agent
    obs = batch.observations
    a, logp, kl = _policy_kl(state, state.actor.apply_fn, actor_params, obs, key, ag.num_samples, config)
    q = jax.vmap(lambda x: state.critic.apply_fn(state.critic.params, obs, x).min(0))(a).mean(0)
    logp, kl = logp.mean(0), kl.mean(0)
    alpha = jax.lax.stop_gradient(state.alpha.apply_fn(state.alpha.params, obs))
    beta = jax.lax.stop_gradient(state.beta.apply_fn(state.beta.params, obs))
    loss = -q + alpha * (kl - state.stats.eps_kl)
    if ag.entropy_reg:
        loss = loss - beta * logp
    return loss.mean(), (kl, logp, q)


def alpha_step(alpha: TrainState, obs, kl, eps_kl):
    """One dual step on -mean_s alpha(s) (KL(s) - eps_KL): ascent on alpha where the constraint is violated."""
    delta = jax.lax.stop_gradient(kl - eps_kl)
    g = jax.grad(lambda p: -(alpha.apply_fn(p, obs) * delta).mean())(alpha.params)
    return alpha.apply_gradients(grads=g)


def start_main(state: BRACPlusState) -> BRACPlusState:
    """pi_0 into the main policy and its target, beta's value into the main beta. Their Adam states
    are still the fresh ones from ``init`` (never stepped before), as the reference's new optimisers.
    The KL accumulators restart: pretraining filled them to estimate eps_KL, and the first main
    epoch's eps_GP is the statistic of that epoch's KLs alone (the reference's ``set_delta_gp`` reads
    the KL logged in the main epoch; its pretraining logs none)."""
    st = state.stats
    zero = jnp.zeros_like(st.kl_n)
    return state.replace(actor=state.actor.replace(params=state.pretrain_actor.params),
                         actor_target=state.pretrain_actor.params,
                         beta=state.beta.replace(params=state.pretrain_beta.params),
                         stats=st.replace(kl_sum=zero, kl_sq=zero, kl_n=zero))


def update(state: BRACPlusState, batch, key, step, config):
    ag = config.agent
    k_b, k_c, k_a = jax.random.split(key, 3)
    info = {}
    if ag.train_behavior_in_main:
        state, binfo = behavior_step(state, batch, k_b)
        info["behavior_loss"] = binfo["behavior_loss"]
    g, cinfo = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_c, config)
    state = state.replace(critic=state.critic.apply_gradients(grads=g))
    if ag.use_gp and ag.gp_weight_learned:
        gap = jax.lax.stop_gradient(cinfo["gp"] - ag.max_ood_grad_norm)
        gw = state.gp_weight
        gg = jax.grad(lambda p: -(gw.apply_fn(p, batch.observations) * gap).mean())(gw.params)
        state = state.replace(gp_weight=gw.apply_gradients(grads=gg))
    g, (kl, logp, q_pi) = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_a, config)
    st = state.stats
    alpha = alpha_step(state.alpha, batch.observations, kl, st.eps_kl)
    beta = beta_step(state.beta, batch.observations, logp.mean(), st.target_entropy) if ag.entropy_reg else state.beta
    actor = state.actor.apply_gradients(grads=g)
    # eps_GP: mean + std of the per-state KL over the epoch that just ended
    st = end_epoch(accumulate(st, kl, jnp.asarray(True)), (step + 1) % ag.epoch_length == 0)
    a_vals = state.alpha.apply_fn(state.alpha.params, batch.observations)
    state = state.replace(
        actor=actor, alpha=alpha, beta=beta, stats=st,
        actor_target=nets.polyak(state.actor_target, actor.params, ag.tau),
        critic_target=nets.polyak(state.critic_target, state.critic.params, ag.tau),
    )
    return state, {
        **info, **cinfo, "kl": kl.mean(), "violation_ratio": (kl > st.eps_kl).mean(), "entropy": -logp.mean(),
        "q_pi": q_pi.mean(), "alpha": a_vals.mean(), "beta": beta.apply_fn(beta.params, batch.observations[:1])[0],
        "eps_kl": st.eps_kl, "eps_gp": st.eps_gp,
    }


def stages(config) -> list[Stage]:
    ag = config.agent
    return [
        Stage("behavior", lambda s, b, k, t: behavior_update(s, b, k, t, config), ag.behavior_steps, config.batch_size,
              evaluate=False),
        Stage("pretrain", lambda s, b, k, t: pretrain_update(s, b, k, t, config), ag.pretrain_steps, config.batch_size,
              evaluate=False),
        Stage("train", lambda s, b, k, t: update(s, b, k, t, config), config.num_steps, config.batch_size, begin=start_main),
    ]


def act(state: BRACPlusState, obs, key, config, deterministic: bool = True):
    ag = config.agent
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    if not deterministic:
        return nets.tanh_gaussian_sample(key, mean, log_std)[0]
    if ag.act_mode == "mean":
        return jnp.tanh(mean)
    # the reference's act_batch(type=5)
    std = jnp.exp(log_std)
    shape = (ag.act_samples,) + mean.shape
    u = nets.gaussian_sample(key, jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape))
    a = jnp.tanh(jnp.clip(u, mean - std, mean + std))
    q = jax.vmap(lambda x: state.critic.apply_fn(state.critic.params, obs, x).mean(0))(a)  # (samples, ...)
    best = jnp.broadcast_to(jnp.argmax(q, axis=0)[None, ..., None], (1,) + a.shape[1:])
    return jnp.take_along_axis(a, best, axis=0)[0]


def variant(config) -> str:
    return "bracplus_sa" if config.agent.state_alpha else "bracplus"


def validate(config):
    check = Checks(config.agent, "agent")
    check.integer(1, "num_ensembles", "num_samples", "num_latents", "epoch_length", "act_samples", "behavior_steps",
                  "pretrain_steps")
    check.one_of(ACT_MODES, "act_mode")
    check.one_of(GP_GATES, "gp_gate")
    check.above(0, "alpha_init", "gp_weight", "std_scale", "kl_backup_scale")
    check.at_least(0, "generalization_threshold")
    check.within("(0, 1]", "tau")


ALGORITHM = Algorithm(
    name="bracplus",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("generalization_threshold", "max_ood_grad_norm", "tau", "std_scale", "actor_lr", "critic_lr", "alpha_lr",
               "beta_lr"),
    validate=validate,
    variant=variant,
)
