"""CQL(H) — Conservative Q-Learning (Kumar et al., 2020) on a SAC backbone.

Reference: the authors' code, github.com/aviralkumar2907/CQL, ``d4rl/rlkit/torch/sac/cql.py``
(``CQLTrainer.train_from_torch``) run as ``d4rl/examples/cql_mujoco_new.py`` with its README's
locomotion flags (``--min_q_weight=5.0 --lagrange_thresh=-1.0 --policy_lr=1e-4 --min_q_version=3``);
AntMaze as ``cql_antmaze_new.py`` with ``--lagrange_thresh=5.0 --min_q_weight=5.0`` (configs/cql.py:antmaze).
Defaults are that code's values.

Per update, every term computed with the parameters at the start of the step (the reference
builds all losses before stepping any optimiser), except alpha, stepped first and then used:

    L_alpha= -mean log_alpha (log pi(a~|s) + target_entropy),  target -|A|, lr = policy lr 1e-4
    L_pi   = mean alpha log pi(a~|s) - min_i Q_i(s, a~)
             for the first ``bc_warmup_steps`` (40k, the reference ``policy_eval_start``) instead
             mean alpha log pi(a~|s) - log pi(a|s) of the dataset action a (BC warm start)
    y      = r + gamma (1 - d) min_i Q'_i(s', a'),   a' ~ pi(s')   (- alpha log pi(a'|s') if backup_entropy)
    L_Q    = sum_i [ mean (Q_i(s, a) - y)^2 + w (mean_s logsumexp_i(s) - mean Q_i(s, a)) ]
    logsumexp_i(s) = log sum_j exp(Q_i(s, x_j) - log q(x_j)) over 3N actions x_j:
                     N uniform (q = 2^-A), N from pi(.|s) and N from pi(.|s') (q = pi's density),
                     the importance-corrected CQL(H) estimate (``min_q_version=3``)

``agent.lagrange=True`` uses alpha' (w gap - target_action_gap) instead, alpha' = exp(log alpha')
clipped to [0, 1e6] and tuned by dual ascent (lr = critic lr) so that w gap stays near
``target_action_gap`` (reference: on for AntMaze with threshold 5, off for locomotion).
Defaults: w 5, N 10, actor lr 1e-4, critic lr 3e-4, temperature lr 1e-4, MLPs 3x256, tau 0.005,
deterministic backup (no entropy in y), batch 256. AntMaze (configs/cql.py:antmaze): Lagrange on,
threshold 5, w 5, rewards (r - 0.5) * 4 (reward_scale 4, reward_bias -2), as the reference script.
Not followed: rlkit's weight initialisation (fan-in uniform, last layers +-3e-3 / 1e-3) and its
clamp of the policy mean to [-9, 9] outside the BC log-likelihood.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage, single_stage
from offrl.algos.common import adam, entropy_temperature_update, log_scalar, make_state
from offrl.checks import Checks


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            actor_lr=1e-4,
            critic_lr=3e-4,
            alpha_lr=1e-4,  # the reference's temperature optimiser uses the policy lr
            actor_hidden_dims=(256, 256, 256),
            critic_hidden_dims=(256, 256, 256),
            tau=0.005,
            min_q_weight=5.0,
            num_actions=10,
            temperature=1.0,  # CQL(H) logsumexp temperature
            backup_entropy=False,
            lagrange=False,
            target_action_gap=5.0,  # the reference's --lagrange_thresh default (and its AntMaze value)
            alpha_prime_lr=3e-4,  # the reference's alpha' optimiser uses the critic lr
            bc_warmup_steps=40_000,  # policy_eval_start: BC (max log-likelihood) actor loss on steps < this - 1
            log_std_min=-5.0,
            log_std_max=2.0,
        )
    )



class CQLState(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState
    log_alpha: TrainState
    log_alpha_prime: TrainState
    critic_target: dict


def init(key, spec: Spec, config) -> CQLState:
    ag = config.agent
    k1, k2 = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor_net = nets.GaussianPolicy(
        spec.act_dim, tuple(ag.actor_hidden_dims), log_std_min=ag.log_std_min, log_std_max=ag.log_std_max
    )
    actor = make_state(k1, actor_net, (obs,), adam(ag.actor_lr))
    critic = make_state(k2, nets.critic_ensemble(2, tuple(ag.critic_hidden_dims)), (obs, act), adam(ag.critic_lr))
    return CQLState(actor, critic, log_scalar(ag.alpha_lr), log_scalar(ag.alpha_prime_lr), critic.params)


def cql_logsumexp(q_rand, q_pi, logp_pi, q_next, logp_next, act_dim: int, temperature: float = 1.0):
    """Importance-corrected CQL(H) term per state: temperature * logsumexp over the 3N samples of
    (Q - log q)/temperature. Q arrays (..., B, N); log-densities (B, N); uniform density 2^-A."""
    log_uniform = -act_dim * math.log(2.0)
    cat = jnp.concatenate([q_rand - log_uniform, q_pi - logp_pi, q_next - logp_next], axis=-1)
    return temperature * jax.nn.logsumexp(cat / temperature, axis=-1)


def _sample_pi(actor: TrainState, params, obs, key, n):
    """n tanh-Gaussian actions per state: (B, n, A) and their log-densities (B, n)."""
    mean, log_std = actor.apply_fn(params, obs)
    shape = (mean.shape[0], n, mean.shape[-1])
    mean, log_std = jnp.broadcast_to(mean[:, None], shape), jnp.broadcast_to(log_std[:, None], shape)
    a, logp, _ = nets.tanh_gaussian_sample(key, mean, log_std)
    return a, logp


def _q_many(critic: TrainState, params, obs, actions):
    """Q of (B, n, A) actions at (B, obs) states -> (2, B, n)."""
    n = actions.shape[1]
    o = jnp.repeat(obs[:, None], n, axis=1)
    return critic.apply_fn(params, o, actions)


def critic_loss(critic_params, state: CQLState, batch, key, config):
    ag = config.agent
    k_next, k_rand, k_pi, k_pin = jax.random.split(key, 4)
    b, a_dim = batch.actions.shape
    alpha = jnp.exp(state.log_alpha.params["value"])
    # Bellman target.
    next_a, next_logp = _sample_pi(state.actor, state.actor.params, batch.next_observations, k_next, 1)
    next_q = _q_many(state.critic, state.critic_target, batch.next_observations, next_a).min(0)[:, 0]
    if ag.backup_entropy:
        next_q = next_q - alpha * next_logp[:, 0]
    target = jax.lax.stop_gradient(batch.rewards + config.discount * (1.0 - batch.terminals) * next_q)
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)  # (2, B)
    td = ((q - target) ** 2).mean(-1)
    # Conservative term.
    n = ag.num_actions
    rand_a = jax.random.uniform(k_rand, (b, n, a_dim), minval=-1.0, maxval=1.0)
    pi_a, pi_logp = _sample_pi(state.actor, state.actor.params, batch.observations, k_pi, n)
    pin_a, pin_logp = _sample_pi(state.actor, state.actor.params, batch.next_observations, k_pin, n)
    pi_a, pi_logp, pin_a, pin_logp = jax.lax.stop_gradient((pi_a, pi_logp, pin_a, pin_logp))
    q_rand = _q_many(state.critic, critic_params, batch.observations, rand_a)
    q_pi = _q_many(state.critic, critic_params, batch.observations, pi_a)
    q_next = _q_many(state.critic, critic_params, batch.observations, pin_a)  # Q(s, a ~ pi(s')), as the reference
    lse = cql_logsumexp(q_rand, q_pi, pi_logp, q_next, pin_logp, a_dim, ag.temperature)  # (2, B)
    gap = lse.mean(-1) - q.mean(-1)  # (2,)
    if ag.lagrange:
        alpha_prime = jnp.clip(jnp.exp(state.log_alpha_prime.params["value"]), 0.0, 1e6)
        cql = jax.lax.stop_gradient(alpha_prime) * (ag.min_q_weight * gap - ag.target_action_gap)
    else:
        cql = ag.min_q_weight * gap
    loss = (td + cql).sum()
    return loss, {"critic_loss": loss, "td_loss": td.sum(), "cql_gap": gap.mean(), "q": q.mean()}


BC_MEAN_CLIP = 9.0  # the reference clamps the policy mean to [-9, 9] in its log_prob (the BC term)


def actor_loss(actor_params, state: CQLState, batch, key, step, config, alpha=None):
    """SAC's actor loss, or during the BC warm start the behaviour-cloning one (see the docstring).

    ``alpha``: the temperature (default: the state's); the reference's update counter starts
    at 1 and uses BC while it is < ``bc_warmup_steps``, i.e. on our 0-based steps < bc_warmup_steps - 1."""
    ag = config.agent
    mean, log_std = state.actor.apply_fn(actor_params, batch.observations)
    a, logp, _ = nets.tanh_gaussian_sample(key, mean, log_std)
    q = state.critic.apply_fn(state.critic.params, batch.observations, a).min(0)
    if alpha is None:
        alpha = jnp.exp(state.log_alpha.params["value"])
    bc_logp = nets.tanh_gaussian_log_prob(batch.actions, jnp.clip(mean, -BC_MEAN_CLIP, BC_MEAN_CLIP), log_std)
    rl = (alpha * logp - q).mean()
    bc = (alpha * logp - bc_logp).mean()
    loss = jnp.where(step + 1 < ag.bc_warmup_steps, bc, rl)
    return loss, {"actor_loss": loss, "entropy": -logp.mean(), "bc_log_prob": bc_logp.mean()}


def update(state: CQLState, batch, key, step, config):
    ag = config.agent
    k_actor, k_critic = jax.random.split(key)
    # Temperature first (the reference steps alpha, then builds the policy loss with the new alpha),
    # on the same policy sample as the actor loss.
    mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
    _, logp, _ = nets.tanh_gaussian_sample(k_actor, mean, log_std)
    log_alpha = entropy_temperature_update(state.log_alpha, -logp.mean(), batch.actions.shape[-1])
    alpha = jnp.exp(log_alpha.params["value"])
    g_actor, ainfo = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_actor, step, config, alpha)
    # The critic loss sees the policy and alpha' before this step's updates, as the reference.
    state = state.replace(log_alpha=log_alpha)
    g, cinfo = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, k_critic, config)
    critic = state.critic.apply_gradients(grads=g)
    state = state.replace(
        actor=state.actor.apply_gradients(grads=g_actor),
        critic=critic,
        critic_target=nets.polyak(state.critic_target, critic.params, ag.tau),
    )
    info = {**ainfo, **cinfo, "alpha": alpha}
    if ag.lagrange:
        # alpha' ascends on (w gap - target), as the reference: loss = -alpha' (w gap - target).
        prime_gap = jax.lax.stop_gradient(ag.min_q_weight * cinfo["cql_gap"] - ag.target_action_gap)
        prime_loss = lambda p: -jnp.exp(p["value"]) * prime_gap  # noqa: E731
        g = jax.grad(prime_loss)(state.log_alpha_prime.params)
        state = state.replace(log_alpha_prime=state.log_alpha_prime.apply_gradients(grads=g))
        info["alpha_prime"] = jnp.exp(state.log_alpha_prime.params["value"])
    return state, info


def stages(config) -> list[Stage]:
    return single_stage(update, config)


def act(state: CQLState, obs, key, config, deterministic: bool = True):
    mean, log_std = state.actor.apply_fn(state.actor.params, obs)
    if deterministic:
        return jnp.tanh(mean)
    return nets.tanh_gaussian_sample(key, mean, log_std)[0]


def validate(config):
    check = Checks(config.agent, "agent")
    check.integer(1, "num_actions")
    check.at_least(0, "min_q_weight")
    check.above(0, "temperature")
    check.integer(0, "bc_warmup_steps", why="0: no BC warm start")


ALGORITHM = Algorithm(
    name="cql",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("actor_lr", "critic_lr", "alpha_lr", "alpha_prime_lr", "tau", "min_q_weight", "temperature", "target_action_gap"),
    validate=validate,
)
