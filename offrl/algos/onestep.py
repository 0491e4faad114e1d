"""Onestep RL (Brandfonbrener, Whitney, Ranganath & Bruna, 2021): one step of policy
improvement from the behaviour policy, using Q of the behaviour policy.

Stages, each a plain supervised problem:

1. 'behavior' (no evaluation): pi_b, a Gaussian (tanh mean, state-dependent std), fitted by
   maximum likelihood of dataset actions;
2. 'q' (no evaluation): SARSA evaluation of pi_b with a target network, using the dataset's
   next action a' (``batch.next_actions``):  y = r + gamma (1 - d) Q'(s', a');
3. 'train': exponentiated-advantage (AWR) improvement starting from pi = pi_b:
       A(s, a) = Q(s, a) - mean_j Q(s, a_j),   a_j ~ pi_b(s), j = 1..num_adv_samples
       L_pi    = -mean min(exp(A / temperature), weight_clip) log pi(a | s)

The paper writes the exp-weight step as pi(a|s) ~ pi_b(a|s) exp(tau A(s, a)) and tunes tau per
dataset, so ``temperature`` here is 1/tau; it is a plain number in the update, so one program can
sweep it (``--config.grid="agent.temperature=0.1,0.3,1,3"``). Defaults: temperature 1, weight clip
100, MLPs 2x256, lr 1e-4, batch 512.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, clipped_gaussian_act, make_state, reset_optimizer, select


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            behavior_steps=500_000,
            q_steps=500_000,
            lr=1e-4,
            q_lr=1e-4,
            hidden_dims=(256, 256),
            q_hidden_dims=(256, 256),
            tau=0.005,
            temperature=1.0,
            weight_clip=100.0,
            num_adv_samples=10,
            log_std_min=-5.0,
            log_std_max=2.0,
        )
    )


class OnestepState(struct.PyTreeNode):
    actor: TrainState  # pi_b during the behaviour stage, then the improved pi
    behavior_params: dict  # a frozen copy of pi_b (kept equal to actor.params in stage 1)
    critic: TrainState
    critic_target: dict


def init(key, spec: Spec, config) -> OnestepState:
    ag = config.agent
    k1, k2 = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    net = nets.GaussianPolicy(spec.act_dim, tuple(ag.hidden_dims), tanh_mean=True,
                              log_std_min=ag.log_std_min, log_std_max=ag.log_std_max)
    actor = make_state(k1, net, (obs,), adam(ag.lr))
    critic = make_state(k2, nets.Critic(tuple(ag.q_hidden_dims)), (obs, act), adam(ag.q_lr))
    return OnestepState(actor, actor.params, critic, critic.params)


def sarsa_target(rewards, terminals, next_q, discount):
    """r + gamma (1 - d) Q'(s', a'_data)."""
    return rewards + discount * (1.0 - terminals) * next_q


def advantage_weights(q_data, q_samples, temperature: float, clip: float):
    """A = Q(s, a) - mean_j Q(s, a_j) (q_samples (B, n)); weights min(exp(A / temperature), clip)."""
    adv = q_data - q_samples.mean(-1)
    return jnp.minimum(jnp.exp(adv / temperature), clip), adv


def nll(params, state: OnestepState, batch, weights=None):
    mean, log_std = state.actor.apply_fn(params, batch.observations)
    logp = nets.gaussian_log_prob(batch.actions, mean, log_std)
    w = 1.0 if weights is None else weights
    return -(w * logp).mean()


def behavior_update(state: OnestepState, batch, key, step, config):
    loss, g = jax.value_and_grad(nll)(state.actor.params, state, batch)
    actor = state.actor.apply_gradients(grads=g)
    return state.replace(actor=actor, behavior_params=actor.params), {"behavior_loss": loss}


def q_loss(critic_params, state: OnestepState, batch, config):
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, batch.next_actions)
    target = jax.lax.stop_gradient(sarsa_target(batch.rewards, batch.terminals, next_q, config.discount))
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    loss = ((q - target) ** 2).mean()
    return loss, {"q_loss": loss, "q": q.mean()}


def q_update(state: OnestepState, batch, key, step, config):
    g, info = jax.grad(q_loss, has_aux=True)(state.critic.params, state, batch, config)
    critic = state.critic.apply_gradients(grads=g)
    return state.replace(critic=critic, critic_target=nets.polyak(state.critic_target, critic.params, config.agent.tau)), info


def improve_update(state: OnestepState, batch, key, step, config):
    ag = config.agent
    # The improvement starts from pi_b with a fresh optimiser state.
    actor = state.actor
    actor = actor.replace(opt_state=select(step == 0, reset_optimizer(actor.opt_state), actor.opt_state))
    obs = batch.observations
    mean_b, log_std_b = actor.apply_fn(state.behavior_params, obs)
    n = ag.num_adv_samples
    a_b = jnp.clip(nets.gaussian_sample(key, jnp.broadcast_to(mean_b, (n,) + mean_b.shape),
                                        jnp.broadcast_to(log_std_b, (n,) + mean_b.shape)), -1.0, 1.0)
    q_s = state.critic.apply_fn(state.critic.params, jnp.broadcast_to(obs, (n,) + obs.shape), a_b).T  # (B, n)
    q_d = state.critic.apply_fn(state.critic.params, obs, batch.actions)
    w, adv = advantage_weights(q_d, q_s, ag.temperature, ag.weight_clip)
    w = jax.lax.stop_gradient(w)
    loss, g = jax.value_and_grad(nll)(actor.params, state, batch, w)
    return state.replace(actor=actor.apply_gradients(grads=g)), {"actor_loss": loss, "adv": adv.mean(), "adv_weight": w.mean()}


def stages(config) -> list[Stage]:
    ag, b = config.agent, config.batch_size
    return [
        Stage("behavior", lambda s, x, k, t: behavior_update(s, x, k, t, config), ag.behavior_steps, b, evaluate=False),
        Stage("q", lambda s, x, k, t: q_update(s, x, k, t, config), ag.q_steps, b, evaluate=False),
        Stage("train", lambda s, x, k, t: improve_update(s, x, k, t, config), config.num_steps, b),
    ]


def act(state: OnestepState, obs, key, config, deterministic: bool = True):
    return clipped_gaussian_act(state.actor, obs, key, deterministic)


def validate(config):
    ag = config.agent
    if ag.temperature <= 0:
        raise ValueError(f"agent.temperature must be > 0, got {ag.temperature}")
    if ag.num_adv_samples < 1:
        raise ValueError(f"agent.num_adv_samples must be >= 1, got {ag.num_adv_samples}")


ALGORITHM = Algorithm(
    name="onestep",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("lr", "q_lr", "tau", "temperature", "weight_clip"),
    validate=validate,
)
