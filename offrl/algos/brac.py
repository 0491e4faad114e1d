"""BRAC — Behavior Regularized Actor Critic (Wu, Tucker & Nachum, 2019), value penalty and
policy regularisation in one file (``agent.variant`` 'vp' or 'pr').

Stage 'behavior' (no evaluation): a tanh-Gaussian pi_b cloned by maximum likelihood.
Stage 'train': SAC-style actor-critic with a divergence D(s) between pi(.|s) and pi_b(.|s),
estimated per state from ``num_div_samples`` (4) actions (``agent.divergence``):

- 'kl'  (default): KL(pi || pi_b) from samples of pi (``sampled_kl``);
- 'mmd': the kernel MMD between samples of pi and of pi_b (``sampled_mmd``, the shared
  ``nets.mmd`` that BEAR uses: kernel ``mmd_kernel`` 'laplacian' (default) or 'gaussian',
  bandwidth ``mmd_sigma`` (20), on the squashed actions in [-1, 1]^A as the BRAC reference code).

The same D enters either variant:

    vp: y    = r + gamma (1 - d) [min_i Q'_i(s', a') - alpha D(s')],  a' ~ pi(s')
    pr: y    = r + gamma (1 - d)  min_i Q'_i(s', a')
        L_Q  = sum_i mean (Q_i(s, a) - y)^2
        L_pi = mean [ alpha_ent log pi(a~|s) + alpha D(s) - 1(step >= warm_start) min_i Q_i(s, a~) ]

with a learned entropy temperature alpha_ent (target entropy -|A|) as the reference; the
first ``warm_start`` (20k) updates train the policy on the divergence only.
Defaults: alpha 0.1, Q 2x(300, 300), policy and pi_b (200, 200), lr 1e-3 (pi_b), 1e-3 Q,
3e-5 policy as the reference's, batch 256, tau 0.005.
The BRAC reference code's MMD is the squared estimate with k = exp(-|u - v|_1 / sigma); ``nets.mmd``
(BEAR's) takes the square root and divides by 2 sigma, so its sigma 10 is the reference's kernel
at 20. The dual (critic-estimated) divergences of the paper are not implemented.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, entropy_temperature_update, log_scalar, make_state

VARIANTS = ("vp", "pr")
DIVERGENCES = ("kl", "mmd")


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            variant="vp",
            divergence="kl",
            alpha=0.1,
            num_div_samples=4,
            mmd_sigma=20.0,  # divergence='mmd' only: kernel bandwidth (BEAR's convention, nets.mmd)
            mmd_kernel="laplacian",  # divergence='mmd' only: 'laplacian' or 'gaussian'
            warm_start=20_000,
            behavior_steps=300_000,
            behavior_lr=1e-3,
            behavior_hidden_dims=(200, 200),
            actor_hidden_dims=(200, 200),
            critic_hidden_dims=(300, 300),
            actor_lr=3e-5,
            critic_lr=1e-3,
            ent_lr=3e-5,
            tau=0.005,
            log_std_min=-5.0,
            log_std_max=2.0,
        )
    )


class BRACState(struct.PyTreeNode):
    behavior: TrainState
    actor: TrainState
    critic: TrainState
    log_ent: TrainState
    critic_target: dict


def init(key, spec: Spec, config) -> BRACState:
    ag = config.agent
    k1, k2, k3 = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    pol = lambda h: nets.GaussianPolicy(spec.act_dim, tuple(h), log_std_min=ag.log_std_min, log_std_max=ag.log_std_max)  # noqa: E731
    behavior = make_state(k1, pol(ag.behavior_hidden_dims), (obs,), adam(ag.behavior_lr))
    actor = make_state(k2, pol(ag.actor_hidden_dims), (obs,), adam(ag.actor_lr))
    critic = make_state(k3, nets.critic_ensemble(2, tuple(ag.critic_hidden_dims)), (obs, act), adam(ag.critic_lr))
    log_ent = log_scalar(ag.ent_lr)
    return BRACState(behavior, actor, critic, log_ent, critic.params)


def sampled_kl(key, mean_p, log_std_p, mean_b, log_std_b, num: int):
    """Monte-Carlo KL(p || b) of two tanh-Gaussians from ``num`` samples of p, per state.

    KL is invariant under the tanh bijection, so the Jacobians cancel and the estimate is
    mean_j [log N(u_j; p) - log N(u_j; b)] with u_j ~ N(mean_p, std_p) the pre-tanh samples.
    Gradients flow into p's parameters through the reparameterised samples."""
    u = nets.gaussian_sample(key, jnp.broadcast_to(mean_p, (num,) + mean_p.shape), jnp.broadcast_to(log_std_p, (num,) + mean_p.shape))
    return (nets.gaussian_log_prob(u, mean_p, log_std_p) - nets.gaussian_log_prob(u, mean_b, log_std_b)).mean(0)


def sampled_mmd(key, mean_p, log_std_p, mean_b, log_std_b, num: int, sigma: float, kernel: str = "laplacian"):
    """Sample MMD between ``num`` actions of the tanh-Gaussian p and ``num`` of b at each state: (...,).

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
    return nets.mmd(a_p, a_b, sigma, kernel)


def behavior_loss(params, state: BRACState, batch, config):
    mean, log_std = state.behavior.apply_fn(params, batch.observations)
    loss = -nets.tanh_gaussian_log_prob(batch.actions, mean, log_std).mean()
    return loss, {"behavior_loss": loss}


def behavior_update(state: BRACState, batch, key, step, config):
    g, info = jax.grad(behavior_loss, has_aux=True)(state.behavior.params, state, batch, config)
    return state.replace(behavior=state.behavior.apply_gradients(grads=g)), info


def _divergence(key, actor_params, state: BRACState, obs, config):
    """D(s) per state (the same estimate in the value penalty and the policy regulariser)."""
    mean_p, log_std_p = state.actor.apply_fn(actor_params, obs)
    mean_b, log_std_b = state.behavior.apply_fn(state.behavior.params, obs)
    ag = config.agent
    if ag.divergence == "mmd":
        return sampled_mmd(key, mean_p, log_std_p, mean_b, log_std_b, ag.num_div_samples, ag.mmd_sigma, ag.mmd_kernel)
    return sampled_kl(key, mean_p, log_std_p, mean_b, log_std_b, ag.num_div_samples)


def critic_loss(critic_params, state: BRACState, batch, key, config):
    ag = config.agent
    k_a, k_div = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.next_observations)
    next_a = nets.tanh_gaussian_sample(k_a, mean, log_std)[0]
    next_v = state.critic.apply_fn(state.critic_target, batch.next_observations, next_a).min(0)
    if ag.variant == "vp":
        next_v = next_v - ag.alpha * _divergence(k_div, state.actor.params, state, batch.next_observations, config)
    target = jax.lax.stop_gradient(batch.rewards + config.discount * (1.0 - batch.terminals) * next_v)
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    loss = ((q - target) ** 2).mean(-1).sum()
    return loss, {"critic_loss": loss, "q": q.mean()}


def actor_loss(actor_params, state: BRACState, batch, key, step, config):
    ag = config.agent
    k_a, k_div = jax.random.split(key)
    mean, log_std = state.actor.apply_fn(actor_params, batch.observations)
    a, logp, _ = nets.tanh_gaussian_sample(k_a, mean, log_std)
    q = state.critic.apply_fn(state.critic.params, batch.observations, a).min(0)
    div = _divergence(k_div, actor_params, state, batch.observations, config)
    ent = jnp.exp(state.log_ent.params["value"])
    use_q = (step >= ag.warm_start).astype(q.dtype)
    loss = (ent * logp + ag.alpha * div - use_q * q).mean()
    return loss, {"actor_loss": loss, "divergence": div.mean(), "entropy": -logp.mean()}


def update(state: BRACState, batch, key, step, config):
    ag = config.agent
    k_c, k_a = jax.random.split(key)
    g, cinfo = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_c, config)
    critic = state.critic.apply_gradients(grads=g)
    state = state.replace(critic=critic, critic_target=nets.polyak(state.critic_target, critic.params, ag.tau))
    g, ainfo = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_a, step, config)
    state = state.replace(actor=state.actor.apply_gradients(grads=g),
                          log_ent=entropy_temperature_update(state.log_ent, ainfo["entropy"], batch.actions.shape[-1]))
    return state, {**cinfo, **ainfo, "alpha_ent": jnp.exp(state.log_ent.params["value"])}


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
    if ag.variant not in VARIANTS:
        raise ValueError(f"agent.variant must be one of {VARIANTS}, got '{ag.variant}'")
    if ag.divergence not in DIVERGENCES:
        raise ValueError(f"agent.divergence must be one of {DIVERGENCES}, got '{ag.divergence}'")
    if ag.num_div_samples < 1:
        raise ValueError(f"agent.num_div_samples must be >= 1, got {ag.num_div_samples}")
    if not ag.mmd_sigma > 0:
        raise ValueError(f"agent.mmd_sigma must be > 0, got {ag.mmd_sigma}")
    if ag.mmd_kernel not in nets.MMD_KERNELS:
        raise ValueError(f"agent.mmd_kernel must be one of {nets.MMD_KERNELS}, got '{ag.mmd_kernel}'")
    if ag.alpha < 0:
        raise ValueError(f"agent.alpha must be >= 0, got {ag.alpha}")


ALGORITHM = Algorithm(
    name="brac",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("alpha", "tau", "mmd_sigma", "actor_lr", "critic_lr", "behavior_lr", "ent_lr"),
    validate=validate,
    variant=variant,
    config_file="brac_vp",  # configs/brac_pr.py is the other variant
)
