"""TD3+BC (Fujimoto & Gu, 2021): TD3 whose actor loss adds a behaviour-cloning term.

    y      = r + gamma (1 - d) min_i Q'_i(s', clip(pi'(s') + clip(0.2 N, -0.5, 0.5), -1, 1))
    L_Q    = sum_i mean (Q_i(s, a) - y)^2
    L_pi   = -lambda mean Q_1(s, pi(s)) + mean (pi(s) - a)^2,   lambda = alpha / mean|Q_1(s, pi(s))|

The actor and both targets are updated every ``policy_freq`` critic steps.
Defaults are the paper's (alpha 2.5, lr 3e-4, batch 256, tau 0.005, state
normalisation).

TD3BC++ (configs/td3bcpp.py) is this algorithm with the two plug-ins of ``offrl.plugins``
switched on, each on its own for the paper's ablation (Figure 8):

- ``agent.gp.enabled``: L_Q += lambda_GP * mean sum_i relu(||grad_a Q_i(s, a)|| - k)^2 every
  ``gp.every`` steps, a uniform in the action box (16 per state);
- ``agent.cr.enabled``: the BC term of sample j is weighted by W_j, the batch-min-max-normalised
  mean critic value of the dataset action (no gradient), i.e.
  L_pi = -lambda mean Q_1(s, pi(s)) + mean_j W_j mean_dims (pi(s_j) - a_j)^2,
  with Q the critic before this step's critic update (``cr.weights_from='before'``: the
  reference's ``current_Q1, current_Q2`` of the critic loss) or after it (``'after'``), optionally
  clamped to batch percentiles first (``cr.percentile_clip``, (5, 95) for walker2d-medium-expert).

TD3BC++ reference: the authors' code, github.com/glorgao/TD3BCpp, ``TD3_BC.py`` (its CR is always
on and its GP is on when ``coef_grad_random_action`` > 0); the plug-ins' defaults are its values.
Its step counter starts at 1, so its actor/GP steps are our 0-based steps 1, 3, ... / 4, 9, ...;
ours update on steps 0, 2, ... / 0, 5, ...: the same periods, shifted by one update.

Both off (the default) is plain TD3+BC, update for update. ``agent.log_grad_norm`` logs the
paper's diagnostic metrics ``grad_norm_pi`` / ``grad_norm_data``: mean ||grad_a Q_1|| at the
policy's and at the dataset's actions. They, and the actor's loss terms, are the record's
``diagnostics``: computed once per chunk on one batch, outside the scanned updates (in the scan the
norms cost 42% of throughput, and the actor loss evaluated on the steps that skip the actor 9%),
and they change no parameter.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets, plugins
from offrl.algos import Algorithm, Spec, Stage, single_stage
from offrl.algos.common import adam, make_state, select
from offrl.checks import Checks


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            actor_lr=3e-4,
            critic_lr=3e-4,
            hidden_dims=(256, 256),
            tau=0.005,
            policy_noise=0.2,
            noise_clip=0.5,
            policy_freq=2,
            alpha=2.5,
            gp=plugins.gp_config(),  # TD3BC++ gradient penalty (off: plain TD3+BC)
            cr=plugins.cr_config(),  # TD3BC++ critic-weighted BC term (off: plain TD3+BC)
            log_grad_norm=True,  # diagnostics ||grad_a Q_1|| at pi(s) and at dataset actions, once per chunk
        )
    )


class TD3BCState(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState
    actor_target: dict
    critic_target: dict


def networks(spec: Spec, config):
    hidden = tuple(config.agent.hidden_dims)
    return nets.DeterministicPolicy(spec.act_dim, hidden), nets.critic_ensemble(2, hidden)


def init(key, spec: Spec, config) -> TD3BCState:
    actor_net, critic_net = networks(spec, config)
    k1, k2 = jax.random.split(key)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    actor = make_state(k1, actor_net, (obs,), adam(config.agent.actor_lr))
    critic = make_state(k2, critic_net, (obs, act), adam(config.agent.critic_lr))
    return TD3BCState(actor, critic, actor.params, critic.params)


def critic_loss(critic_params, state: TD3BCState, batch, key, config):
    ag = config.agent
    noise = jnp.clip(ag.policy_noise * jax.random.normal(key, batch.actions.shape), -ag.noise_clip, ag.noise_clip)
    next_a = jnp.clip(state.actor.apply_fn(state.actor_target, batch.next_observations) + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_a).min(0)
    target = batch.rewards + config.discount * (1.0 - batch.terminals) * next_q
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(-1).sum()
    return loss, {"critic_loss": loss, "q": q[0].mean()}


def actor_loss(actor_params, state: TD3BCState, batch, config, bc_weights=None):
    """-lambda mean Q1(s, pi(s)) + mean (pi(s) - a)^2; ``bc_weights`` (B,) reweight the BC term per sample."""
    pi = state.actor.apply_fn(actor_params, batch.observations)
    q = q1_fn(state)(batch.observations, pi)[0]  # Q_1 alone: the second critic is neither run nor differentiated
    lmbda = jax.lax.stop_gradient(config.agent.alpha / jnp.abs(q).mean())
    bc = ((pi - batch.actions) ** 2).mean(-1)
    if bc_weights is not None:
        bc = bc * bc_weights
    loss = -lmbda * q.mean() + bc.mean()
    return loss, {"actor_loss": loss, "bc_loss": bc.mean(), "lambda": lmbda}


def q1_fn(state: TD3BCState):
    """(obs, actions) -> Q_1 (1, N): the first critic alone (``nets.first_members``), as the reference's
    ``critic.Q1``; evaluating the ensemble and keeping its first output cost +9% FLOPs per update."""
    return nets.first_members(state.critic.apply_fn, state.critic.params)


def _gp_on(ag) -> bool:
    return "gp" in ag and bool(ag.gp.enabled)


def _cr_on(ag) -> bool:
    return "cr" in ag and bool(ag.cr.enabled)


def critic_objective(critic_params, state: TD3BCState, batch, key, step, config):
    """``critic_loss`` plus, when ``agent.gp.enabled``, the gradient penalty (on its own key)."""
    loss, info = critic_loss(critic_params, state, batch, key, config)
    ag = config.agent
    if _gp_on(ag):
        q_fn = nets.bind(state.critic.apply_fn, critic_params)
        policy_fn = lambda k, o: state.actor.apply_fn(state.actor.params, o)  # noqa: E731
        pen, ginfo = plugins.gp_penalty(
            q_fn, jax.random.fold_in(key, 1), step, batch.observations, batch.actions, ag.gp, policy_fn, True
        )
        info = {**info, **ginfo, "td_loss": loss, "critic_loss": loss + pen}
        loss = loss + pen
    return loss, info


def critic_grads(critic_params, state: TD3BCState, batch, key, step, config):
    """``jax.grad(critic_objective)`` and its metrics, as ``update`` computes them: the penalty's
    gradient is taken inside its ``lax.cond`` (``plugins.gp_penalty_grads``), so the steps without
    it cost what a plain TD3+BC step costs (differentiating through the cond did not: +59%)."""
    grads, info = jax.grad(critic_loss, has_aux=True)(critic_params, state, batch, key, config)
    ag = config.agent
    if _gp_on(ag):
        policy_fn = lambda k, o: state.actor.apply_fn(state.actor.params, o)  # noqa: E731
        gp_grads, pen, ginfo = plugins.gp_penalty_grads(
            state.critic.apply_fn, critic_params, jax.random.fold_in(key, 1), step, batch.observations, batch.actions,
            ag.gp, policy_fn, True,
        )
        grads = jax.tree_util.tree_map(jnp.add, grads, gp_grads)
        loss = info["critic_loss"]
        info = {**info, **ginfo, "td_loss": loss, "critic_loss": loss + pen}
    return grads, info


def bc_weights(state: TD3BCState, batch, config):
    """CR weights of the dataset actions under ``state``'s critic, or None when CR is off (``update``
    passes the state before or after the critic step, per ``cr.weights_from``)."""
    ag = config.agent
    if not _cr_on(ag):
        return None
    return plugins.critic_weights(state.critic.apply_fn(state.critic.params, batch.observations, batch.actions), ag.cr)


def update(state: TD3BCState, batch, key, step, config):
    ag = config.agent
    w_before = bc_weights(state, batch, config) if plugins.cr_weights_before(ag) else None
    grads, info = critic_grads(state.critic.params, state, batch, key, step, config)
    state = state.replace(critic=state.critic.apply_gradients(grads=grads))
    w = w_before if w_before is not None else bc_weights(state, batch, config)

    # Every policy_freq steps: the actor's Adam step and both targets' Polyak steps. The cond computes only
    # the actor's gradient (zeros on the other steps); the steps themselves are selected after it. A cond
    # that returned the whole state copied the actor, its moments and both targets twice on every skipped
    # step and once on the others (on a GPU, on average 50 copy kernels and 5.0 MB per seed per update;
    # docs/performance.md). The skipped steps compute nothing else: the actor's metrics are diagnostics
    # (evaluating the actor loss on every skipped step only to log it cost 9% of throughput).
    take = step % ag.policy_freq == 0
    g = jax.lax.cond(take, lambda s: jax.grad(actor_loss, has_aux=True)(s.actor.params, s, batch, config, w)[0],
                     lambda s: jax.tree_util.tree_map(jnp.zeros_like, s.actor.params), state)
    actor = select(take, state.actor.apply_gradients(grads=g), state.actor)
    state = state.replace(
        actor=actor,
        actor_target=select(take, nets.polyak(state.actor_target, actor.params, ag.tau), state.actor_target),
        critic_target=select(take, nets.polyak(state.critic_target, state.critic.params, ag.tau), state.critic_target),
    )
    if w is not None:
        info["cr_weight_mean"] = w.mean()
    return state, info


def diagnostics(state: TD3BCState, batch, key, config) -> dict:
    """The actor's ``actor_loss`` / ``bc_loss`` / ``lambda`` (with CR's weights from the current
    critic) and, when ``agent.log_grad_norm``, ``grad_norm_pi`` / ``grad_norm_data``, of ``state``
    on ``batch``: the runtime calls this once per chunk, outside the scanned updates."""
    _, info = actor_loss(state.actor.params, state, batch, config, bc_weights(state, batch, config))
    if config.agent.get("log_grad_norm", False):
        pi = state.actor.apply_fn(state.actor.params, batch.observations)
        info = {**info, **plugins.grad_norm_metrics(q1_fn(state), batch.observations, pi, batch.actions)}
    return info


def variant(config) -> str:
    """The name score tables show: td3bc, td3bc+gp, td3bc+cr or td3bc++."""
    return plugins.variant_name("td3bc", config.agent, "td3bc++")


def stages(config) -> list[Stage]:
    return single_stage(update, config)


def act(state: TD3BCState, obs, key, config, deterministic: bool = True):
    return state.actor.apply_fn(state.actor.params, obs)


def validate(config):
    ag = config.agent
    check = Checks(ag, "agent")
    check.integer(1, "policy_freq")
    check.within("(0, 1]", "tau")
    check.at_least(0, "alpha")
    if "gp" in ag and "cr" in ag:
        plugins.validate(ag)


ALGORITHM = Algorithm(
    name="td3bc",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("actor_lr", "critic_lr", "tau", "policy_noise", "noise_clip", "alpha", "gp.weight", "gp.k"),
    validate=validate,
    variant=variant,
    diagnostics=diagnostics,
)
