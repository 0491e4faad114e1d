"""Onestep RL (Brandfonbrener, Whitney, Ranganath & Bruna, 2021): one step of policy
improvement from the behaviour policy, using Q of the behaviour policy.

Reference code: github.com/davidbrandfonbrener/onestep-rl (``train.py``; ``config/train.yaml``
for the steps, ``config/{beta/bc,q/sarsa,pi/reverse_kl,pi/exp_weight}.yaml`` for each learner,
``policy_learner.py``, ``q_learner.py``, ``baseline_learner.py``). Defaults equal that code's.

Stages, each a plain supervised problem:

1. 'behavior' (no evaluation, 5e5 steps): pi_b, the reference's GaussMLP (2x1024; mean
   tanh(out[:A]), log_std = -5 + 2.5 (tanh(out[A:]) + 1) in (-5, 0)), fitted by maximum likelihood;
2. 'q' (no evaluation, 2e6 steps): SARSA evaluation of pi_b (2x1024) with a target network
   updated (Polyak 0.005) after every ``q_target_every``-th step, using the dataset's next action:
   y = r + gamma (1 - d) Q'(s', a'), d = terminal. A truncated episode's last transition
   (``timeouts``) has no recorded a' (the dataset holds a placeholder there). The reference
   (``d4rl_to_replay.py``) leaves every row D4RL flags as a timeout out of its replay; here
   ``drop_timeouts`` (True) gives those transitions zero weight in this loss, averaged over the
   other rows; False reads the placeholder (a fabricated backup, kept only for comparison). The
   behaviour and policy stages read no a' and keep those rows (their s and a are real data; the
   reference's replay has them out of every stage, one row per episode);
3. 'train' (``num_steps`` = 1e5): pi starts from pi_b with a fresh Adam, and ``operator``:
   'reverse_kl' (the reference's default ``pi: reverse_kl``):
       L = mean_s [ -Q(s, a) + alpha mean_j (log pi(a_j|s) - log pi_b(a_j|s)) ],
       a, a_j ~ pi(.|s) reparameterised, j = 1..num_kl_samples (10), alpha 1;
   'exp_weight' (``pi: exp_weight``):
       A(s, a) = Q(s, a) - mean_j Q(s, a_j),   a_j ~ pi_b(s) (unclipped, as the reference),
       L = -mean min(exp(A / temperature), weight_clip) log pi(clip(a, -1 + 1e-4, 1 - 1e-4) | s),
       weight_clip 100; the dataset action is clipped inside the box for the log-likelihood
       only (the reference's ``stable_action``), Q(s, a) sees it as is.

The paper writes the exp-weight step as pi(a|s) ~ pi_b(a|s) exp(tau A(s, a)) and the reference's
``temp`` is that tau (0.01); ``temperature`` here is 1/tau, so the default 100 is the reference's
0.01. Both alpha and temperature are plain numbers in the update, so one program can sweep them
(``--config.grid="agent.temperature=30,100,300"``).
The improved pi is the same untruncated Gaussian as pi_b, as the reference runs it: its pi
configs say ``dist_type: trunc`` (a Normal truncated to [-1, 1]), but ``train.py`` then calls
``pi.load_from_pilearner(beta)``, which deep-copies beta's ``GaussMLP`` together with its
``dist_type = 'normal'`` (``config/beta/bc.yaml``), so every loss and every action of the
reference's improved pi uses the plain Normal. Its actions are clipped to [-1, 1] when acting
(``PiLearner.act``: ``action.clamp(-1., 1.)``), as here (``act``).
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
from offrl.checks import Checks


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            behavior_steps=500_000,  # beta_steps
            q_steps=2_000_000,
            lr=1e-4,
            q_lr=1e-4,
            hidden_dims=(1024, 1024),
            q_hidden_dims=(1024, 1024),
            tau=0.005,
            q_target_every=2,  # target_update_freq
            drop_timeouts=True,  # the reference's replay has no timeout transitions
            operator="reverse_kl",  # reverse_kl | exp_weight
            alpha=1.0,  # reverse_kl: weight of KL(pi || pi_b)
            num_kl_samples=10,  # reverse_kl: n_samples
            temperature=100.0,  # exp_weight: 1 / the reference's temp (0.01)
            weight_clip=100.0,  # exp_weight: max_weight
            num_adv_samples=10,  # exp_weight: the value_sample baseline's n_samples
            log_std_min=-5.0,
            log_std_max=0.0,  # GaussMLP's soft-clamp bounds (-5, 0)
        )
    )


class OnestepState(struct.PyTreeNode):
    actor: TrainState  # pi_b during the behaviour stage, then the improved pi
    behavior_params: dict  # a frozen copy of pi_b, taken when the improvement stage starts
    critic: TrainState
    critic_target: dict


def init(key, spec: Spec, config) -> OnestepState:
    ag = config.agent
    k1, k2 = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    net = nets.GaussianPolicy(spec.act_dim, tuple(ag.hidden_dims), tanh_mean=True, log_std_mode="tanh",
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
    return state.replace(actor=actor), {"behavior_loss": loss}


def q_loss(critic_params, state: OnestepState, batch, config):
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, batch.next_actions)
    target = jax.lax.stop_gradient(sarsa_target(batch.rewards, batch.terminals, next_q, config.discount))
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    w = 1.0 - batch.timeouts if config.agent.drop_timeouts else jnp.ones_like(q)
    loss = (w * (q - target) ** 2).sum() / jnp.maximum(w.sum(), 1.0)
    return loss, {"q_loss": loss, "q": q.mean()}


def q_update(state: OnestepState, batch, key, step, config):
    ag = config.agent
    g, info = jax.grad(q_loss, has_aux=True)(state.critic.params, state, batch, config)
    critic = state.critic.apply_gradients(grads=g)
    # the reference updates the target after every ``target_update_freq``-th optimiser step
    target = select(critic.step % ag.q_target_every == 0, nets.polyak(state.critic_target, critic.params, ag.tau), state.critic_target)
    return state.replace(critic=critic, critic_target=target), info


def reverse_kl_loss(params, state: OnestepState, obs, key, config):
    """mean_s [ -Q(s, a) + alpha mean_j (log pi(a_j|s) - log pi_b(a_j|s)) ], a, a_j ~ pi(.|s) reparameterised."""
    ag = config.agent
    mean, log_std = state.actor.apply_fn(params, obs)
    k1, k2 = jax.random.split(key)
    a = nets.gaussian_sample(k1, mean, log_std)
    q = state.critic.apply_fn(state.critic.params, obs, a)
    n = ag.num_kl_samples
    a_kl = nets.gaussian_sample(k2, jnp.broadcast_to(mean, (n,) + mean.shape), jnp.broadcast_to(log_std, (n,) + mean.shape))
    mean_b, log_std_b = state.actor.apply_fn(state.behavior_params, obs)
    kl = (nets.gaussian_log_prob(a_kl, mean, log_std) - nets.gaussian_log_prob(a_kl, mean_b, log_std_b)).mean(0)
    loss = (-q + ag.alpha * kl).mean()
    return loss, {"actor_loss": loss, "q_pi": q.mean(), "kl": kl.mean()}


STABLE_EPS = 1e-4  # the reference's stable_action: dataset actions clipped to +-(1 - 1e-4) for log pi


def stable_action(a):
    return jnp.clip(a, -1.0 + STABLE_EPS, 1.0 - STABLE_EPS)


def exp_weight_loss(params, state: OnestepState, batch, key, config):
    """-mean min(exp(A / temperature), clip) log pi(stable(a)|s), A = Q(s, a) - mean_j Q(s, a_j), a_j ~ pi_b(s)."""
    ag = config.agent
    obs = batch.observations
    mean_b, log_std_b = state.actor.apply_fn(state.behavior_params, obs)
    n = ag.num_adv_samples
    a_b = nets.gaussian_sample(key, jnp.broadcast_to(mean_b, (n,) + mean_b.shape), jnp.broadcast_to(log_std_b, (n,) + mean_b.shape))
    q_s = state.critic.apply_fn(state.critic.params, jnp.broadcast_to(obs, (n,) + obs.shape), a_b).T  # (B, n)
    q_d = state.critic.apply_fn(state.critic.params, obs, batch.actions)
    w, adv = advantage_weights(q_d, q_s, ag.temperature, ag.weight_clip)
    w = jax.lax.stop_gradient(w)
    loss = nll(params, state, batch._replace(actions=stable_action(batch.actions)), w)
    return loss, {"actor_loss": loss, "adv": adv.mean(), "adv_weight": w.mean()}


def start_improvement(state: OnestepState) -> OnestepState:
    """The improvement stage's start: pi_b frozen as it is, and pi from it with a fresh optimiser state (the
    reference's load_from_pilearner). Once, not in every behaviour step: keeping ``behavior_params`` equal
    to the actor's parameters there copied them on every step (9% of that stage's bytes on a GPU)."""
    return state.replace(actor=state.actor.replace(opt_state=reset_optimizer(state.actor.opt_state)),
                         behavior_params=state.actor.params)


def improve_update(state: OnestepState, batch, key, step, config):
    actor = state.actor
    if config.agent.operator == "reverse_kl":
        g, info = jax.grad(reverse_kl_loss, has_aux=True)(actor.params, state, batch.observations, key, config)
    else:
        g, info = jax.grad(exp_weight_loss, has_aux=True)(actor.params, state, batch, key, config)
    return state.replace(actor=actor.apply_gradients(grads=g)), info


def stages(config) -> list[Stage]:
    ag, b = config.agent, config.batch_size
    return [
        Stage("behavior", lambda s, x, k, t: behavior_update(s, x, k, t, config), ag.behavior_steps, b, evaluate=False),
        Stage("q", lambda s, x, k, t: q_update(s, x, k, t, config), ag.q_steps, b, evaluate=False),
        Stage("train", lambda s, x, k, t: improve_update(s, x, k, t, config), config.num_steps, b, begin=start_improvement),
    ]


def act(state: OnestepState, obs, key, config, deterministic: bool = True):
    return clipped_gaussian_act(state.actor, obs, key, deterministic)


OPERATORS = ("reverse_kl", "exp_weight")


def variant(config) -> str:
    """'onestep' (reverse KL, the reference's default) or 'onestep-exp' (exponentially weighted)."""
    return "onestep" if config.agent.operator == "reverse_kl" else "onestep-exp"


def validate(config):
    check = Checks(config.agent, "agent")
    check.one_of(OPERATORS, "operator")
    check.integer(1, "num_kl_samples", "q_target_every", "num_adv_samples")
    check.at_least(0, "alpha")
    check.above(0, "temperature")


ALGORITHM = Algorithm(
    name="onestep",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("lr", "q_lr", "tau", "temperature", "weight_clip", "alpha"),
    validate=validate,
    variant=variant,
)
