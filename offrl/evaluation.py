"""One evaluation loop: every seed's policy at once in vectorised Gymnasium environments.

``S`` seeds x ``E`` episodes environments step together; each environment step is
one batched, jit-compiled policy call over all seeds. Environment ``(s, e)`` is
reset with seed ``base_seed + e``, so every seed's policy meets the same start
states. Actions are deterministic unless asked otherwise.

The environments are stepped in this process or over worker processes
(``offrl.envpool``); the results do not depend on it. An environment whose episode has ended is not stepped again.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.preprocess import Preprocessing
from offrl.data.scores import normalized_score
from offrl.envpool import make_envs


class EvalResult(NamedTuple):
    returns: np.ndarray  # (S, E) raw episode returns
    lengths: np.ndarray  # (S, E)
    raw: np.ndarray  # (S,) mean raw return per seed
    normalized: np.ndarray  # (S,) mean normalised score per seed (NaN without reference scores)


def make_policy_fn(algo, config, deterministic: bool = True) -> Callable:
    """jit(vmap over seeds) of ``algo.act``: (states, obs (S, E, obs_dim), keys (S,)) -> (S, E, A)."""

    def act(state, obs, key):
        return algo.act(state, obs, key, config, deterministic)

    return jax.jit(jax.vmap(act))


@functools.partial(jax.jit, static_argnums=1)
def _next_keys(key, num_seeds: int):
    """(the next step's key, one key per seed for this step), in one compiled call (split eagerly,
    they were about a tenth of an evaluation's host time)."""
    key, sub = jax.random.split(key)
    return key, jax.random.split(sub, num_seeds)


def evaluate(
    policy_fn: Callable,
    states,
    env: str | gym.envs.registration.EnvSpec,
    num_episodes: int,
    base_seed: int,
    pre: Preprocessing,
    ref_min: Optional[float] = None,
    ref_max: Optional[float] = None,
    key: Optional[jax.Array] = None,
    max_steps: Optional[int] = None,
    workers: int = 1,
    envs=None,
) -> EvalResult:
    """``workers``: processes stepping the environments made here (``offrl.envpool.make_envs``; 1: in
    this process, 0: ``auto_workers``). Worker processes take a moment to start, so they pay off when
    kept: ``envs`` gives the ``num_seeds * num_episodes`` environments to use instead (left open), as
    the runner does with one pool for the whole run (``config.eval_workers``)."""
    num_seeds = jax.tree_util.tree_leaves(states)[0].shape[0]
    n = num_seeds * num_episodes
    own = envs is None
    envs = make_envs(env, n, workers) if own else envs
    try:
        obs = envs.reset([base_seed + e for _ in range(num_seeds) for e in range(num_episodes)])
        returns = np.zeros(n)
        lengths = np.zeros(n, np.int64)
        done = np.zeros(n, bool)
        nonfinite = np.zeros(n, bool)  # a diverged member's episodes end at their first non-finite action, scored nan
        key = jax.random.PRNGKey(base_seed) if key is None else key
        t = 0
        while not done.all() and (max_steps is None or t < max_steps):
            key, keys = _next_keys(key, num_seeds)
            o = jnp.asarray(pre.observations(obs).reshape(num_seeds, num_episodes, -1), jnp.float32)
            a = np.asarray(policy_fn(states, o, keys)).reshape(n, -1)
            bad = ~np.isfinite(a).all(-1)
            nonfinite |= bad & ~done
            done |= bad  # a non-finite action ends that episode (scored nan) before it is stepped
            obs, rew, term, trunc = envs.step(pre.env_actions(a), ~done)
            returns += np.where(done, 0.0, rew)
            lengths += ~done
            done |= term | trunc
            t += 1
    finally:
        if own:
            envs.close()
    returns = np.where(nonfinite, np.nan, returns).reshape(num_seeds, num_episodes)
    raw = returns.mean(1)
    return EvalResult(returns, lengths.reshape(num_seeds, num_episodes), raw, normalized_score(raw, ref_min, ref_max))
