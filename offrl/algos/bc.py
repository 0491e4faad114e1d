"""Behaviour cloning, and %BC (cloning only the top X% of trajectories by return).

``agent.loss='mse'``: a = tanh(MLP(s)) regressed on dataset actions (TD3+BC paper's BC).
``agent.loss='nll'``: a tanh-Gaussian policy fitted by maximum likelihood; acts with tanh(mean).
``agent.top_fraction < 1`` is %BC: only the best trajectories (by undiscounted return) are
cloned. Reference for %BC: github.com/kzl/decision-transformer, ``gym/experiment.py`` (Chen et
al. 2021, who introduced it): episodes sorted by return, the best one always kept, then the
next best while the kept timesteps stay <= X% of all timesteps (``agent.top_by='timesteps'``,
the default). The TD3BC++ paper describes its 10%BC as "the top 10% of trajectories"
(``agent.top_by='episodes'``: ceil(X% of the episodes)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage, single_stage
from offrl.algos.common import adam, make_state
from offrl.checks import Checks
from offrl.data.dataset import select_episodes


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(lr=3e-4, hidden_dims=(256, 256), loss="mse", top_fraction=1.0, top_by="timesteps", log_std_min=-5.0,
             log_std_max=2.0)
    )


class BCState(struct.PyTreeNode):
    actor: TrainState


def _net(spec: Spec, config):
    ag = config.agent
    if ag.loss == "mse":
        return nets.DeterministicPolicy(spec.act_dim, tuple(ag.hidden_dims))
    return nets.GaussianPolicy(
        spec.act_dim, tuple(ag.hidden_dims), log_std_min=ag.log_std_min, log_std_max=ag.log_std_max
    )


def init(key, spec: Spec, config) -> BCState:
    net = _net(spec, config)
    return BCState(make_state(key, net, (jnp.zeros((1, spec.obs_dim)),), adam(config.agent.lr)))


def loss_fn(params, state: BCState, batch, config):
    out = state.actor.apply_fn(params, batch.observations)
    if config.agent.loss == "mse":
        loss = ((out - batch.actions) ** 2).mean()
    else:
        mean, log_std = out
        loss = -nets.tanh_gaussian_log_prob(batch.actions, mean, log_std).mean()
    return loss, {"bc_loss": loss}


def update(state: BCState, batch, key, step, config):
    grads, info = jax.grad(loss_fn, has_aux=True)(state.actor.params, state, batch, config)
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), info


def stages(config) -> list[Stage]:
    return single_stage(update, config)


def act(state: BCState, obs, key, config, deterministic: bool = True):
    out = state.actor.apply_fn(state.actor.params, obs)
    if config.agent.loss == "mse":
        return out
    mean, log_std = out
    if deterministic:
        return jnp.tanh(mean)
    return nets.tanh_gaussian_sample(key, mean, log_std)[0]


def top_episodes(returns, lengths, frac: float, by: str = "timesteps") -> np.ndarray:
    """Indices of the episodes %BC keeps, best return first.

    by='timesteps' (the Decision Transformer code): the best episode, then the next best while the
    kept timesteps stay <= max(int(frac * all timesteps), 1); by='episodes': the ceil(frac * N) best."""
    order = np.argsort(-np.asarray(returns), kind="stable")
    if by == "episodes":
        return order[: max(1, int(np.ceil(frac * len(order))))]
    lengths = np.asarray(lengths)[order]
    budget = max(int(frac * lengths.sum()), 1)
    return order[: 1 + int(np.sum(lengths[0] + np.cumsum(lengths[1:]) <= budget))]


def prepare_data(data, info, config):
    ag = config.agent
    if ag.top_fraction >= 1.0:
        return data, info
    keep = top_episodes(info.episode_returns, info.episode_lengths, ag.top_fraction, ag.top_by)
    return select_episodes(data, info, keep)


def validate(config):
    check = Checks(config.agent, "agent")
    check.one_of(("mse", "nll"), "loss")
    check.one_of(("timesteps", "episodes"), "top_by")
    check.within("(0, 1]", "top_fraction")


def variant(config) -> str:
    """'bc', or '10%bc' when only the top fraction of trajectories is cloned."""
    frac = config.agent.top_fraction
    return "bc" if frac >= 1.0 else f"{100 * frac:g}%bc"


ALGORITHM = Algorithm(
    name="bc",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("lr",),
    validate=validate,
    prepare_data=prepare_data,
    variant=variant,
)
