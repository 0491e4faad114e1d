"""Behaviour cloning, and %BC (cloning only the top X% of trajectories by return).

``agent.loss='mse'``: a = tanh(MLP(s)) regressed on dataset actions (TD3+BC paper's BC).
``agent.loss='nll'``: a tanh-Gaussian policy fitted by maximum likelihood; acts with tanh(mean).
``agent.top_fraction < 1`` keeps only the best trajectories (by undiscounted return), as
the %BC baseline of Chen et al. (2021) and the TD3BC++ paper do.
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
from offrl.data.dataset import select_episodes


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(lr=3e-4, hidden_dims=(256, 256), loss="mse", top_fraction=1.0, log_std_min=-5.0, log_std_max=2.0)
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


def prepare_data(data, info, config):
    frac = config.agent.top_fraction
    if frac >= 1.0:
        return data, info
    n_keep = max(1, int(np.ceil(frac * info.num_episodes)))
    keep = np.argsort(-info.episode_returns, kind="stable")[:n_keep]
    return select_episodes(data, info, keep)


def validate(config):
    ag = config.agent
    if ag.loss not in ("mse", "nll"):
        raise ValueError(f"agent.loss must be 'mse' or 'nll', got '{ag.loss}'")
    if not 0.0 < ag.top_fraction <= 1.0:
        raise ValueError(f"agent.top_fraction must be in (0, 1], got {ag.top_fraction}")


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
