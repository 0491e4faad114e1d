"""BRAC — Behavior Regularized Actor Critic (Wu, Tucker & Nachum, 2019), value penalty and
policy regularisation in one file (``agent.variant`` 'vp' or 'pr').

Reference code followed (the ONE reference): google-research/google-research,
``behavior_regularized_offline_rl/brac/brac_primal_agent.py`` (losses), ``bc_agent.py`` (the
behaviour model), ``divergences.py`` (KL / MMD estimates), ``networks.py`` (actor), ``agent.py``
and ``train_eval_offline.py`` (training loop), with the hyperparameters its README and
``run_primal.sh`` run. The defaults below are that code's; ``tests/test_baselines.py`` checks them.

Stage 'behavior' (no evaluation): a tanh-Gaussian pi_b cloned by maximum likelihood of the
dataset actions, clipped to +-(1 - ``behavior_clip_eps``) (1e-3), plus the reference BC agent's
entropy bonus ``alpha_b log pi_b(a~|s)`` with alpha_b tuned to a target entropy -|A|
(``behavior_entropy``); (200, 200), lr 5e-4 (the README's BC run), 300k updates.
Stage 'train': actor-critic with a divergence D(s) between pi(.|s) and pi_b(.|s), estimated per
state from ``num_div_samples`` (4) actions (``agent.divergence``):

- 'kl'  (default): KL(pi || pi_b) from samples of pi (``sampled_kl``);
- 'mmd': the reference's squared kernel MMD between samples of pi and of pi_b (``sampled_mmd``
  on the shared ``nets.mmd``), k = exp(-|u - v|_1 / ``mmd_sigma``) with sigma 20 on the squashed
  actions; ``mmd_squared=False`` takes the square root as BEAR does, ``mmd_kernel='gaussian'``
  uses exp(-|u - v|^2 / sigma).

The same D enters either variant (a'_j ~ pi(.|s'), a_j ~ pi(.|s), j = 1..``num_target_samples``):

    vp: y    = r + bonus + gamma (1 - d) [min_i mean_j Q'_i(s', a'_j) - a_ent mean_j log pi(a'_j|s') - alpha D(s')]
    pr: y    = the same without - alpha D(s')
        L_Q  = sum_i mean (Q_i(s, a) - y)^2  [+ grad_penalty sum_i mean |grad_a Q_i(s, a~pi)|^2]
        L_pi = mean [ a_ent mean_j log pi(a_j|s) + alpha D(s) - 1(step > warm_start) min_i mean_j Q_i(s, a_j) ]

BRAC's values: one target sample, bonus 0, no gradient penalty, D from its own 4 samples; the
entropy weight a_ent is the reference agent's ``alpha_entropy=0`` and is not trained
(``train_alpha_entropy=True`` learns it SAC-style to target entropy -|A|, starting at
``alpha_entropy``, which must then be > 0). The first ``warm_start`` (20k) updates train the policy
on the divergence only (the reference's ``global_step > warm_start``; 0 = Q from the first update).
``reward_bonus``, ``grad_penalty``, ``num_target_samples`` and ``shared_target_samples`` (a'_j are
also the samples of the KL estimate) are the extras iTRPO (``offrl/algos/itrpo.py``) builds on
this framework with; BRAC keeps them off.

Networks and rates (README / run_primal.sh): Q 2 x (300, 300), policy and pi_b (200, 200) with the
reference actor's smooth log-std squash into [-5, 0] (``log_std_mode='tanh'``); Adam lr 1e-3 (Q),
3e-4 (policy, the README's PLR), Polyak 0.005 every update, batch 256, alpha 0.1 fixed, 500k updates.

Where this differs from the reference, and why:
- ``actor_lr``: the reference README runs 3e-4 (the default); ``--config.agent.actor_lr=3e-5`` gives
  the rate listed as the paper's.
- entropy temperatures (pi_b's, and pi's when trained) are learned in log space with the shared
  SAC step (``common.entropy_temperature_update``), where the reference learns relu(alpha) itself;
  the fixed point (entropy = -|A|) is the same.
- the KL estimate uses pre-tanh densities (exact: the tanh Jacobians cancel); the reference
  evaluates pi_b at samples clipped to +-(1 - 1e-3), which differs only for saturated samples.
- weight initialisation is Flax's default (LeCun normal) where the reference uses Keras's
  (Glorot uniform), and the target critics start equal to the online ones (the reference builds
  them separately, so they start at another random draw).
- the dual (critic-estimated) divergences of the paper are not implemented.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, entropy_temperature_update, log_scalar, make_state
from offrl.checks import Checks

VARIANTS = ("vp", "pr")
DIVERGENCES = ("kl", "mmd")
LOG_STD_MODES = ("tanh", "clip")
GRAD_EPS = float(jnp.finfo(jnp.float32).eps)  # added to grad_a Q before its norm, as the iTRPO reference


def default_agent_config() -> ml_collections.ConfigDict:
    """BRAC-primal's defaults in the reference code (README / run_primal.sh / the agents' signatures)."""
    return ml_collections.ConfigDict(
        dict(
            variant="vp",  # run_primal.sh VALUE_PENALTY=True
            divergence="kl",
            alpha=0.1,  # ALPHA=0.1, train_alpha=False
            num_div_samples=4,  # n_div_samples=4
            num_target_samples=1,  # one a' ~ pi(s') in the target, one a ~ pi(s) in the actor loss
            shared_target_samples=False,  # BRAC draws D's samples separately
            mmd_sigma=20.0,  # laplacian_kernel(sigma=20.0): k = exp(-|u - v|_1 / sigma)
            mmd_kernel="laplacian",
            mmd_squared=True,  # mmd(use_sqrt=False)
            warm_start=20_000,
            alpha_entropy=0.0,  # brac_primal Agent(alpha_entropy=0.0, train_alpha_entropy=False)
            train_alpha_entropy=False,
            ent_lr=1e-3,  # the third optimizer (('adam', 1e-3)), used only when train_alpha_entropy
            reward_bonus=0.0,
            grad_penalty=0.0,
            behavior_steps=300_000,  # README BC run: total_train_steps=300000
            behavior_lr=5e-4,  # README BC run: optimizers=(('adam', 5e-4),)
            behavior_lr_milestones=(),  # fractions of behavior_steps where the BC lr drops x0.1
            behavior_entropy=True,  # bc_agent Agent(train_alpha_entropy=True, alpha_entropy=1.0)
            behavior_clip_eps=1e-3,  # bc_agent CLIP_EPS
            behavior_hidden_dims=(200, 200),
            actor_hidden_dims=(200, 200),
            critic_hidden_dims=(300, 300),
            num_critics=2,
            actor_lr=3e-4,  # README / run_primal.sh PLR=3e-04
            critic_lr=1e-3,
            tau=0.005,  # update_rate
            log_std_min=-5.0,  # networks.LOG_STD_MIN
            log_std_max=0.0,  # networks.LOG_STD_MAX
            log_std_mode="tanh",
        )
    )


class BRACState(struct.PyTreeNode):
    behavior: TrainState
    behavior_ent: TrainState  # log of pi_b's entropy bonus weight (behaviour stage only)
    actor: TrainState
    critic: TrainState
    log_ent: TrainState  # log of pi's entropy weight, trained only when agent.train_alpha_entropy
    critic_target: dict


def policy_net(act_dim: int, hidden_dims, ag) -> nets.GaussianPolicy:
    return nets.GaussianPolicy(act_dim, tuple(hidden_dims), log_std_min=ag.log_std_min, log_std_max=ag.log_std_max,
                               log_std_mode=ag.log_std_mode)


def behavior_schedule(ag):
    """x0.1 at every milestone (fractions of behavior_steps), or None: the BC learning-rate decay."""
    if not ag.behavior_lr_milestones:
        return None
    bounds = {max(1, int(round(f * ag.behavior_steps))): 0.1 for f in ag.behavior_lr_milestones}
    return optax.piecewise_constant_schedule(1.0, bounds)


def init(key, spec: Spec, config) -> BRACState:
    ag = config.agent
    k1, k2, k3 = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    sched = behavior_schedule(ag)
    behavior = make_state(k1, policy_net(spec.act_dim, ag.behavior_hidden_dims, ag), (obs,),
                          adam(ag.behavior_lr, schedule=sched))
    behavior_ent = log_scalar(ag.behavior_lr)
    if sched is not None:
        behavior_ent = TrainState.create(apply_fn=behavior_ent.apply_fn, params=behavior_ent.params,
                                         tx=adam(ag.behavior_lr, schedule=sched))
    actor = make_state(k2, policy_net(spec.act_dim, ag.actor_hidden_dims, ag), (obs,), adam(ag.actor_lr))
    critic = make_state(k3, nets.critic_ensemble(ag.num_critics, tuple(ag.critic_hidden_dims)), (obs, act),
                        adam(ag.critic_lr))
    log_ent = log_scalar(ag.ent_lr, init=math.log(ag.alpha_entropy) if ag.alpha_entropy > 0 else 0.0)
    return BRACState(behavior, behavior_ent, actor, critic, log_ent, critic.params)


# ----------------------------------------------------------------------------- divergences
def sample_actions(key, mean, log_std, num: int):
    """``num`` reparameterised tanh-Gaussian actions (num, ..., A) and their log-densities (num, ...).

    The pre-tanh draws are the ones ``sampled_kl`` makes from the same key and count."""
    shape = (num,) + mean.shape
    u = nets.gaussian_sample(key, jnp.broadcast_to(mean, shape), jnp.broadcast_to(log_std, shape))
    return jnp.tanh(u), nets.gaussian_log_prob(u, mean, log_std) - nets.tanh_log_det_jacobian(u)


def sampled_kl(key, mean_p, log_std_p, mean_b, log_std_b, num: int):
    """Monte-Carlo KL(p || b) of two tanh-Gaussians from ``num`` samples of p, per state.

    KL is invariant under the tanh bijection, so the Jacobians cancel and the estimate is
    mean_j [log N(u_j; p) - log N(u_j; b)] with u_j ~ N(mean_p, std_p) the pre-tanh samples.
    Gradients flow into p's parameters through the reparameterised samples."""
    u = nets.gaussian_sample(key, jnp.broadcast_to(mean_p, (num,) + mean_p.shape), jnp.broadcast_to(log_std_p, (num,) + mean_p.shape))
    return (nets.gaussian_log_prob(u, mean_p, log_std_p) - nets.gaussian_log_prob(u, mean_b, log_std_b)).mean(0)


def sampled_mmd(key, mean_p, log_std_p, mean_b, log_std_b, num: int, sigma: float, kernel: str = "laplacian",
                squared: bool = False):
    """Sample MMD between ``num`` actions of the tanh-Gaussian p and ``num`` of b at each state: (...,).

    ``sigma`` is ``nets.mmd``'s (k = exp(-dist / (2 sigma))); ``squared`` returns MMD^2.
    Both sets are squashed actions tanh(u) (the space the BRAC reference compares them in);
    p's come from reparameterised pre-tanh draws, so the gradient reaches p's parameters,
    while b's samples are constants. Keys: ``jax.random.split(key)`` -> (p's, b's)."""
    k_p, k_b = jax.random.split(key)

    def draw(k, mean, log_std):
        shape = mean.shape[:-1] + (num, mean.shape[-1])  # (..., num, A): the layout nets.mmd takes
        return jnp.tanh(nets.gaussian_sample(k, jnp.broadcast_to(mean[..., None, :], shape),
                                             jnp.broadcast_to(log_std[..., None, :], shape)))

    a_p = draw(k_p, mean_p, log_std_p)
    a_b = jax.lax.stop_gradient(draw(k_b, mean_b, log_std_b))
    return nets.mmd(a_p, a_b, sigma, kernel, squared=squared)


def _divergence(key, actor_params, state: BRACState, obs, config):
    """D(s) per state (the same estimate in the value penalty and the policy regulariser)."""
    mean_p, log_std_p = state.actor.apply_fn(actor_params, obs)
    mean_b, log_std_b = state.behavior.apply_fn(state.behavior.params, obs)
    ag = config.agent
    if ag.divergence == "mmd":
        # the reference's kernel exp(-d / mmd_sigma) is nets.mmd's at sigma / 2
        return sampled_mmd(key, mean_p, log_std_p, mean_b, log_std_b, ag.num_div_samples, ag.mmd_sigma / 2.0,
                           ag.mmd_kernel, squared=ag.mmd_squared)
    return sampled_kl(key, mean_p, log_std_p, mean_b, log_std_b, ag.num_div_samples)


# ----------------------------------------------------------------------------- behaviour model
def behavior_loss(params, state: BRACState, batch, config, key=None):
    """-mean log pi_b(clip(a)|s) [+ alpha_b mean log pi_b(a~|s), a~ ~ pi_b, with ``behavior_entropy``]."""
    ag = config.agent
    mean, log_std = state.behavior.apply_fn(params, batch.observations)
    nll = -nets.tanh_gaussian_log_prob(batch.actions, mean, log_std, eps=ag.behavior_clip_eps).mean()
    info = {"behavior_loss": nll}
    loss = nll
    if ag.behavior_entropy:
        if key is None:
            raise ValueError("behavior_loss needs a key for the entropy bonus (agent.behavior_entropy=True)")
        logp = nets.tanh_gaussian_sample(key, mean, log_std)[1]
        loss = loss + jnp.exp(state.behavior_ent.params["value"]) * logp.mean()
        info["behavior_entropy"] = -logp.mean()
    return loss, info


def behavior_update(state: BRACState, batch, key, step, config):
    g, info = jax.grad(behavior_loss, has_aux=True)(state.behavior.params, state, batch, config, key)
    state = state.replace(behavior=state.behavior.apply_gradients(grads=g))
    if config.agent.behavior_entropy:
        state = state.replace(behavior_ent=entropy_temperature_update(state.behavior_ent, info["behavior_entropy"],
                                                                      batch.actions.shape[-1]))
        info = {**info, "behavior_alpha": jnp.exp(state.behavior_ent.params["value"])}
    return state, info


# ----------------------------------------------------------------------------- actor-critic
def entropy_weight(state: BRACState, config):
    ag = config.agent
    return jnp.exp(state.log_ent.params["value"]) if ag.train_alpha_entropy else ag.alpha_entropy


def policy_estimates(key, actor_params, state: BRACState, obs, q_params, config):
    """(min_i mean_j Q_i(s, a_j), mean_j log pi(a_j|s), D(s)) with a_j ~ pi(.|s), j = 1..num_target_samples.

    Keys: split(key) -> (a_j's, D's); with ``shared_target_samples`` D uses the a_j's key, so
    a KL estimate runs on the very a_j (when num_div_samples == num_target_samples)."""
    ag = config.agent
    k_a, k_div = jax.random.split(key)
    if ag.shared_target_samples:
        k_div = k_a
    mean, log_std = state.actor.apply_fn(actor_params, obs)
    a, logp = sample_actions(k_a, mean, log_std, ag.num_target_samples)
    obs_n = jnp.broadcast_to(obs, (ag.num_target_samples,) + obs.shape)
    q = state.critic.apply_fn(q_params, obs_n, a).mean(1).min(0)  # (members, n, B) -> (B,)
    div = _divergence(k_div, actor_params, state, obs, config)
    return q, logp.mean(0), div


def critic_target(state: BRACState, batch, key, config, rewards=None, weight=None):
    """y = rewards + bonus + gamma (1 - d) V(s'), V(s') the (value-penalised for 'vp') soft value of pi at s'.

    ``rewards`` defaults to the batch's (iTRPO passes shaped ones); ``weight`` to alpha."""
    ag = config.agent
    r = batch.rewards if rewards is None else rewards
    w = ag.alpha if weight is None else weight
    q, logp, div = policy_estimates(key, state.actor.params, state, batch.next_observations, state.critic_target, config)
    next_v = q - entropy_weight(state, config) * logp
    if ag.variant == "vp":
        next_v = next_v - w * div
    return jax.lax.stop_gradient(r + ag.reward_bonus + config.discount * (1.0 - batch.terminals) * next_v)


def action_grad_penalty(critic_params, state: BRACState, obs, actions):
    """sum_i mean_b |grad_a Q_i(s_b, a_b) + eps|^2, the iTRPO reference's critic regulariser."""
    q_fn = lambda a: state.critic.apply_fn(critic_params, obs, a)  # noqa: E731
    members = jax.eval_shape(q_fn, actions).shape[0]
    total = 0.0
    for i in range(members):
        g = jax.grad(lambda a, i=i: q_fn(a)[i].sum())(actions) + GRAD_EPS
        total = total + (g**2).sum(-1).mean()
    return total


def critic_loss(critic_params, state: BRACState, batch, key, config, rewards=None, weight=None):
    ag = config.agent
    k_y, k_gp = jax.random.split(key)
    target = critic_target(state, batch, k_y, config, rewards, weight)
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    td = ((q - target) ** 2).mean(-1).sum()
    info = {"critic_loss": td, "q": q.mean(), "target": target.mean()}
    loss = td
    if ag.grad_penalty:
        mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
        a = jax.lax.stop_gradient(nets.tanh_gaussian_sample(k_gp, mean, log_std)[0])
        gp = action_grad_penalty(critic_params, state, batch.observations, a)
        loss = loss + ag.grad_penalty * gp
        info["grad_penalty"] = gp
    return loss, info


def actor_loss(actor_params, state: BRACState, batch, key, step, config, weight=None):
    ag = config.agent
    w = ag.alpha if weight is None else weight
    q, logp, div = policy_estimates(key, actor_params, state, batch.observations, state.critic.params, config)
    use_q = jnp.asarray(step > ag.warm_start, q.dtype) if ag.warm_start else 1.0
    loss = (entropy_weight(state, config) * logp + w * div - use_q * q).mean()
    return loss, {"actor_loss": loss, "divergence": div.mean(), "entropy": -logp.mean()}


def update(state: BRACState, batch, key, step, config, rewards=None, weight=None):
    """One BRAC update: critic, Polyak, actor (and pi's entropy weight when trained).

    ``rewards`` / ``weight`` replace the batch rewards / alpha (iTRPO's shaping and KL factor)."""
    ag = config.agent
    k_c, k_a = jax.random.split(key)
    g, cinfo = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_c, config, rewards, weight)
    critic = state.critic.apply_gradients(grads=g)
    state = state.replace(critic=critic, critic_target=nets.polyak(state.critic_target, critic.params, ag.tau))
    g, ainfo = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_a, step, config, weight)
    state = state.replace(actor=state.actor.apply_gradients(grads=g))
    if ag.train_alpha_entropy:
        state = state.replace(log_ent=entropy_temperature_update(state.log_ent, ainfo["entropy"], batch.actions.shape[-1]))
    return state, {**cinfo, **ainfo, "alpha_ent": entropy_weight(state, config)}


def stages(config) -> list[Stage]:
    return [
        Stage("behavior", lambda s, b, k, t: behavior_update(s, b, k, t, config), config.agent.behavior_steps,
              config.batch_size, evaluate=False),
        Stage("train", lambda s, b, k, t: update(s, b, k, t, config), config.num_steps, config.batch_size),
    ]


def act(state: BRACState, obs, key, config, deterministic: bool = True):
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    if deterministic:
        return jnp.tanh(mean)
    return nets.tanh_gaussian_sample(key, mean, log_std)[0]


def variant(config) -> str:
    return f"brac_{config.agent.variant}"


def validate(config):
    ag = config.agent
    check = Checks(ag, "agent")
    check.one_of(VARIANTS, "variant")
    check.one_of(DIVERGENCES, "divergence")
    check.integer(1, "num_div_samples", "num_target_samples", "num_critics")
    check.need(not ag.shared_target_samples or (ag.divergence == "kl" and ag.num_div_samples == ag.num_target_samples),
               "shared_target_samples", "needs agent.divergence='kl' and agent.num_div_samples == "
               f"agent.num_target_samples (got {ag.divergence!r}, {ag.num_div_samples}, {ag.num_target_samples})")
    check.above(0, "mmd_sigma")
    check.one_of(nets.MMD_KERNELS, "mmd_kernel")
    check.one_of(LOG_STD_MODES, "log_std_mode")
    check.ordered("log_std_min", "log_std_max")
    check.at_least(0, "alpha", "alpha_entropy", "grad_penalty", "warm_start")
    check.need(not ag.train_alpha_entropy or ag.alpha_entropy > 0, "alpha_entropy",
               "must be > 0 with agent.train_alpha_entropy=True, which learns log(alpha_entropy)")
    check.within("(0, 1)", "behavior_clip_eps")
    milestones = tuple(ag.behavior_lr_milestones)
    check.need(all(0.0 < f < 1.0 for f in milestones), "behavior_lr_milestones",
               "each must be a fraction of behavior_steps in (0, 1)", value=milestones)


ALGORITHM = Algorithm(
    name="brac",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("alpha", "tau", "mmd_sigma", "reward_bonus", "actor_lr", "critic_lr", "behavior_lr", "ent_lr"),
    validate=validate,
    variant=variant,
    config_file="brac_vp",  # configs/brac_pr.py is the other variant
)
