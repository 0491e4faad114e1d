"""IQL — Implicit Q-Learning (Kostrikov, Nair & Levine, 2021).

Reference code: github.com/ikostrikov/implicit_q_learning (``learner.py``, ``critic.py``,
``actor.py``, ``policy.py``, ``value_net.py``, ``common.py``; ``configs/mujoco_config.py`` for the
locomotion defaults, ``train_offline.py`` for the reward shaping). Defaults equal that code's,
including its orthogonal initialisation with scale sqrt(2) of every layer's kernel (hidden and
output layers of V, both Q's and the policy mean; ``orthogonal_init=False``: Flax's default).
Not supported: the reference's dropout (used only by its Kitchen config).

Three losses per update, in the reference code's order (value, actor, critic, target):

    L_V  = mean L2^tau( min_i Q'_i(s, a) - V(s) ),     L2^tau(u) = |tau - 1(u < 0)| u^2   (expectile)
    L_pi = -mean min(exp(beta (min_i Q'_i(s, a) - V(s))), 100) log pi(a | s)           (AWR)
    L_Q  = sum_i mean (Q_i(s, a) - r - gamma (1 - d) V(s'))^2

Defaults: expectile 0.7 (0.9 AntMaze), temperature beta 3 (10 AntMaze), weight clip 100,
MLPs 2x256, lr 3e-4, batch 256, tau 0.005, actor lr cosine-decayed over the run.
The policy is a Gaussian with tanh-squashed mean and a state-independent log-std (as the
reference); it acts with its mean. Rewards are shaped by the shared config
(configs/iql.py: x 1000/(max-min trajectory return) for locomotion; AntMaze r - 1 via reward_bias).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage, single_stage
from offrl.algos.common import adam, clipped_gaussian_act, make_state
from offrl.checks import Checks


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            actor_lr=3e-4,
            critic_lr=3e-4,
            value_lr=3e-4,
            hidden_dims=(256, 256),
            tau=0.005,
            expectile=0.7,
            temperature=3.0,
            weight_clip=100.0,
            cosine_actor_lr=True,
            log_std_min=-5.0,
            log_std_max=2.0,
            orthogonal_init=True,  # common.default_init: orthogonal(sqrt 2) on every Dense kernel
        )
    )


class IQLState(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState
    value: TrainState
    critic_target: dict


def expectile_loss(diff, expectile: float):
    """|expectile - 1(diff < 0)| * diff^2, elementwise."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def awr_weights(adv, temperature: float, clip: float):
    """min(exp(temperature * adv), clip)."""
    return jnp.minimum(jnp.exp(adv * temperature), clip)


def init(key, spec: Spec, config) -> IQLState:
    ag = config.agent
    hidden = tuple(ag.hidden_dims)
    k1, k2, k3 = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    kinit = nets.default_init() if ag.orthogonal_init else None
    actor_net = nets.GaussianPolicy(
        spec.act_dim, hidden, state_dependent_std=False, tanh_mean=True,
        log_std_min=ag.log_std_min, log_std_max=ag.log_std_max, kernel_init=kinit,
    )
    cosine = optax.cosine_decay_schedule(1.0, max(config.num_steps, 1)) if ag.cosine_actor_lr else None
    actor = make_state(k1, actor_net, (obs,), adam(ag.actor_lr, schedule=cosine))
    critic = make_state(k2, nets.critic_ensemble(2, hidden, kernel_init=kinit), (obs, act), adam(ag.critic_lr))
    value = make_state(k3, nets.Critic(hidden, kernel_init=kinit), (obs,), adam(ag.value_lr))
    return IQLState(actor, critic, value, critic.params)


def value_loss(value_params, state: IQLState, batch, config):
    q = state.critic.apply_fn(state.critic_target, batch.observations, batch.actions).min(0)
    v = state.value.apply_fn(value_params, batch.observations)
    loss = expectile_loss(q - v, config.agent.expectile).mean()
    return loss, {"value_loss": loss, "v": v.mean()}


def actor_loss(actor_params, state: IQLState, batch, config):
    ag = config.agent
    q = state.critic.apply_fn(state.critic_target, batch.observations, batch.actions).min(0)
    v = state.value.apply_fn(state.value.params, batch.observations)
    w = jax.lax.stop_gradient(awr_weights(q - v, ag.temperature, ag.weight_clip))
    mean, log_std = state.actor.apply_fn(actor_params, batch.observations)
    logp = nets.gaussian_log_prob(batch.actions, mean, log_std)
    loss = -(w * logp).mean()
    return loss, {"actor_loss": loss, "adv_weight": w.mean()}


def critic_loss(critic_params, state: IQLState, batch, config):
    next_v = state.value.apply_fn(state.value.params, batch.next_observations)
    target = batch.rewards + config.discount * (1.0 - batch.terminals) * next_v
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(-1).sum()
    return loss, {"critic_loss": loss, "q": q.mean()}


def update(state: IQLState, batch, key, step, config):
    g, vinfo = jax.grad(value_loss, has_aux=True)(state.value.params, state, batch, config)
    state = state.replace(value=state.value.apply_gradients(grads=g))
    g, ainfo = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, config)
    state = state.replace(actor=state.actor.apply_gradients(grads=g))
    g, cinfo = jax.grad(critic_loss, has_aux=True)(state.critic.params, state, batch, config)
    critic = state.critic.apply_gradients(grads=g)
    state = state.replace(critic=critic, critic_target=nets.polyak(state.critic_target, critic.params, config.agent.tau))
    return state, {**vinfo, **ainfo, **cinfo}


def stages(config) -> list[Stage]:
    return single_stage(update, config)


def act(state: IQLState, obs, key, config, deterministic: bool = True):
    return clipped_gaussian_act(state.actor, obs, key, deterministic)


def validate(config):
    check = Checks(config.agent, "agent")
    check.within("(0, 1)", "expectile")
    check.at_least(0, "temperature")
    check.within("(0, 1]", "tau")


ALGORITHM = Algorithm(
    name="iql",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("actor_lr", "critic_lr", "value_lr", "tau", "expectile", "temperature", "weight_clip"),
    validate=validate,
)
