"""The offline dataset as one pytree of device arrays, and the in-graph sampler.

Every algorithm consumes a :class:`Transitions` pytree. It is built from
episodes (each a dict of arrays with T+1 observations and T actions, as Minari
stores them) by :func:`episodes_to_transitions`, which gets the alignment,
the terminal/timeout distinction, the SARSA next actions and the discounted
returns-to-go right once, for every data source (Minari, D4RL HDF5, the local
suite builder).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Transitions(NamedTuple):
    """A flat batch (or a whole dataset) of transitions; every field has leading axis N.

    ``index`` is set by :func:`sample` only: the dataset row each batch row was drawn from (so an
    algorithm can look up per-row tables it built from the dataset, e.g. ARQ's pre-generated
    candidates). A dataset itself has ``index=None`` (no leaf: tree maps skip it).

    ``next_actions`` is data only where the episode goes on. At the last transition of an episode
    it holds a placeholder (that transition's own action ``a_t``), never the behaviour policy's a':
    after a terminal (``terminals == 1``) the (1 - d) mask removes it from any backup; after a
    truncation (``timeouts == 1``: a time limit, or collection stopped) s' is real but a' was never
    recorded. ``timeouts == 1`` marks those rows (an episode's truncation is its last step), so an
    algorithm that reads ``next_actions`` decides there, as its reference does: drop the row
    (weight ``1 - timeouts``: ARQ, Onestep) or treat it as terminal (d = max(terminals, timeouts)).
    Reading the placeholder as a' silently fabricates a SARSA backup."""

    observations: jax.Array  # (N, obs_dim) s_t
    actions: jax.Array  # (N, act_dim) a_t
    rewards: jax.Array  # (N,) r_t
    next_observations: jax.Array  # (N, obs_dim) s_{t+1}
    terminals: jax.Array  # (N,) 1.0 where s_{t+1} is a true terminal state (no bootstrap)
    timeouts: jax.Array  # (N,) 1.0 where the episode was cut after this step (bootstrap allowed)
    next_actions: jax.Array  # (N, act_dim) a_{t+1} of the same episode; a placeholder at an episode's end (below)
    returns: jax.Array  # (N,) discounted Monte-Carlo return-to-go inside the episode
    episode_ids: jax.Array  # (N,) int32 index of the episode the transition belongs to
    index: Optional[jax.Array] = None  # (N,) int32 dataset row of a sampled batch row; None on a dataset

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])


ARRAY_FIELDS = tuple(f for f in Transitions._fields if f != "index")  # what a dataset stores


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Host-side facts about a dataset that are not arrays the update needs."""

    dataset_id: str
    env_id: Optional[str]  # gymnasium id used for evaluation (None: no environment known)
    obs_dim: int
    act_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    episode_returns: np.ndarray  # undiscounted return of every episode, in episode-id order
    episode_lengths: np.ndarray
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    score_convention: str = "none"  # where the reference scores came from
    env_spec: Optional[object] = None  # gymnasium EnvSpec, when the source stores one

    @property
    def num_episodes(self) -> int:
        return int(len(self.episode_returns))


def discounted_returns(rewards: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """Return-to-go G_t = r_t + discount * G_{t+1}, reset after every step where ``ends`` is set.

    ``ends[t]`` marks the last transition of an episode (terminal or timeout); the
    return after it is taken as zero, as Monte-Carlo regression in BPPO does.
    """
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros_like(rewards)
    g = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if ends[t]:
            g = 0.0
        g = rewards[t] + discount * g
        out[t] = g
    return out.astype(np.float32)


def episodes_to_transitions(
    episodes: Sequence[Mapping[str, np.ndarray]], discount: float = 0.99
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Flatten episodes into transition arrays.

    Each episode maps ``observations`` (T+1, obs_dim), ``actions`` (T, act_dim),
    ``rewards`` (T,), ``terminations`` (T,) and ``truncations`` (T,). An episode
    whose last step is neither terminated nor truncated (collection stopped in
    the middle) has that step marked as a timeout: its successor state is real,
    so bootstrapping from it is correct.

    The SARSA ``next_actions`` of the last transition of an episode repeats that
    transition's own action, a placeholder (see :class:`Transitions`): after a
    terminal it is masked out, after a timeout the true next action was never
    recorded, and an algorithm reading next actions drops those rows or ends the
    backup there.

    Returns (numpy field dict, episode returns, episode lengths).
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ARRAY_FIELDS}
    ep_returns, ep_lengths = [], []
    for i, ep in enumerate(episodes):
        obs = np.asarray(ep["observations"], np.float32)
        act = np.asarray(ep["actions"], np.float32)
        rew = np.asarray(ep["rewards"], np.float32).reshape(-1)
        term = np.asarray(ep["terminations"], bool).reshape(-1)
        trunc = np.asarray(ep["truncations"], bool).reshape(-1)
        t = len(act)
        if act.ndim == 1:
            act = act[:, None]
        if obs.ndim == 1:
            obs = obs[:, None]
        if len(obs) != t + 1 or len(rew) != t or len(term) != t or len(trunc) != t:
            raise ValueError(
                f"episode {i}: expected T+1 observations for T actions, rewards, terminations "
                f"and truncations; got {len(obs)} observations, {t} actions, {len(rew)} rewards, "
                f"{len(term)} terminations, {len(trunc)} truncations"
            )
        if t == 0:
            continue
        trunc = trunc & ~term
        if not (term[-1] or trunc[-1]):
            trunc = trunc.copy()
            trunc[-1] = True
        ends = term | trunc
        cols["observations"].append(obs[:-1])
        cols["next_observations"].append(obs[1:])
        cols["actions"].append(act)
        cols["rewards"].append(rew)
        cols["terminals"].append(term.astype(np.float32))
        cols["timeouts"].append(trunc.astype(np.float32))
        cols["next_actions"].append(np.concatenate([act[1:], act[-1:]], axis=0))
        cols["returns"].append(discounted_returns(rew, ends, discount))
        cols["episode_ids"].append(np.full(t, len(ep_returns), np.int32))
        ep_returns.append(float(rew.sum(dtype=np.float64)))
        ep_lengths.append(t)
    if not ep_returns:
        raise ValueError("the dataset holds no transitions (every episode is empty)")
    arrays = {k: np.concatenate(v, axis=0) for k, v in cols.items()}
    return arrays, np.asarray(ep_returns, np.float64), np.asarray(ep_lengths, np.int64)


def to_device(arrays: Mapping[str, np.ndarray]) -> Transitions:
    return Transitions(**{k: jnp.asarray(arrays[k]) for k in ARRAY_FIELDS})


WHOLE_DATASET = 0  # a stage's batch size asking for every transition once, in order (e.g. statistics of the data)


def sample(key: jax.Array, data: Transitions, batch_size: int) -> Transitions:
    """Uniformly sample ``batch_size`` transitions with replacement, inside the graph; the batch's
    ``index`` holds the rows of ``data`` they were drawn at. ``batch_size=WHOLE_DATASET`` gives the
    whole dataset in order (the key is not used)."""
    n = data.observations.shape[0]
    if batch_size == WHOLE_DATASET:
        return data._replace(index=jnp.arange(n, dtype=jnp.int32))
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree_util.tree_map(lambda x: jnp.take(x, idx, axis=0), data._replace(index=None))._replace(index=idx)


def with_fields(data: Transitions, **fields) -> Transitions:
    return data._replace(**fields)


def select_episodes(data: Transitions, info: DatasetInfo, keep: np.ndarray) -> tuple[Transitions, DatasetInfo]:
    """Keep only the episodes whose ids are in ``keep`` (host-side; ids are renumbered)."""
    keep = np.sort(np.asarray(keep, np.int64))
    ep = np.asarray(data.episode_ids)
    mask = np.isin(ep, keep)
    remap = np.full(info.num_episodes, -1, np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    arrays = {k: np.asarray(getattr(data, k))[mask] for k in ARRAY_FIELDS}
    arrays["episode_ids"] = remap[arrays["episode_ids"]]
    new_info = dataclasses.replace(
        info, episode_returns=info.episode_returns[keep], episode_lengths=info.episode_lengths[keep]
    )
    return to_device(arrays), new_info
