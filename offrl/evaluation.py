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
from typing import Any, Callable, NamedTuple, Optional

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from offrl.data.preprocess import Preprocessing
from offrl.data.scores import normalized_score
from offrl.envpool import make_envs


class EvalResult(NamedTuple):
    returns: np.ndarray  # (S, E) raw episode returns
    lengths: np.ndarray  # (S, E)
    raw: np.ndarray  # (S,) mean raw return per seed
    normalized: np.ndarray  # (S,) mean normalised score per seed (NaN without reference scores)


def policy_act(algo, config, deterministic: bool = True) -> Callable:
    """vmap over seeds of ``algo.act``: (states, obs (S, E, obs_dim), keys (S,)) -> (S, E, A)."""

    def act(state, obs, key):
        return algo.act(state, obs, key, config, deterministic)

    return jax.vmap(act)


def make_policy_fn(algo, config, deterministic: bool = True) -> Callable:
    """jit of :func:`policy_act`."""
    return jax.jit(policy_act(algo, config, deterministic))


def policy_reads(act: Callable, states, obs_dim: int) -> list[bool]:
    """For each leaf of ``states`` (seed-stacked), whether ``act`` (:func:`policy_act`) reads its values:
    a liveness pass backwards over the traced call, from the actions to the inputs (an operation whose
    result is needed, or that has effects, needs all its operands). A leaf only whose shape is used is not read."""
    from jax.extend.core import Literal

    leaves = jax.tree_util.tree_leaves(states)
    num = leaves[0].shape[0]
    obs = jax.ShapeDtypeStruct((num, 1, obs_dim), jnp.float32)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), num))
    jaxpr = jax.make_jaxpr(act)(states, obs, keys).jaxpr
    live = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in live for v in eqn.outvars):
            live.update(v for v in eqn.invars if not isinstance(v, Literal))
    return [v in live for v in jaxpr.invars[: len(leaves)]]


def host_device(states=None):
    """The host CPU device a policy copy goes to: one that holds none of ``states`` where there are
    several (a CPU-only process run with ``--xla_force_host_platform_device_count``), else the first;
    None when this process has no CPU backend (``JAX_PLATFORMS`` without cpu)."""
    try:
        cpus = jax.local_devices(backend="cpu")  # this process's (under jax.distributed, devices() are every process's)
    except RuntimeError:
        return None
    busy = set()
    for x in jax.tree_util.tree_leaves(states):
        if isinstance(x, jax.Array):
            busy |= x.devices()
    return ([d for d in cpus if d not in busy] or cpus)[0]


class StateCopy(struct.PyTreeNode):
    """A copy of the state leaves a policy reads (``read``, on ``device``); ``layout`` rebuilds the whole
    state around them, with zeros for the leaves it does not read (which the compiled call drops)."""

    read: list
    layout: Any = struct.field(pytree_node=False)  # (treedef, ((shape, dtype) per leaf), read mask)
    device: Any = struct.field(pytree_node=False)

    def state(self):
        treedef, shapes, mask = self.layout
        it = iter(self.read)
        return jax.tree_util.tree_unflatten(treedef, [next(it) if r else jnp.zeros(s, d) for r, (s, d) in zip(mask, shapes)])


class PolicyCopy:
    """The policy over a :class:`StateCopy` on the host CPU: what the runner evaluates while a donating
    chunk trains on from the state itself (``config.eval_overlap``). ``copy(states)`` copies only what
    the policy reads (e.g. the actor, not the critics or ARQ's candidate table); calling it is
    :func:`make_policy_fn`'s call on that copy. Its inputs made under ``jax.default_device(copy.device)``."""

    def __init__(self, algo, config, obs_dim: int, deterministic: bool = True):
        self.act, self.obs_dim = policy_act(algo, config, deterministic), obs_dim
        self.masks = {}  # (treedef, shapes) -> which leaves the policy reads (a stage may change the state's shapes)
        self.fn = jax.jit(lambda copy, obs, keys: self.act(copy.state(), obs, keys))

    def copy(self, states) -> StateCopy:
        """The copy, on :func:`host_device`."""
        device = host_device(states)
        if device is None:
            raise ValueError("this process has no CPU backend for the evaluation copy: add cpu to JAX_PLATFORMS")
        leaves, treedef = jax.tree_util.tree_flatten(states)
        shapes = tuple((tuple(x.shape), x.dtype) for x in leaves)
        if (treedef, shapes) not in self.masks:
            mask = policy_reads(self.act, states, self.obs_dim)
            mask[0] = mask[0] or not any(mask)  # a policy that reads no state: one leaf still says how many seeds
            self.masks[treedef, shapes] = tuple(mask)
        mask = self.masks[treedef, shapes]
        # through a NumPy copy: between two CPU devices device_put may alias the buffer a donating chunk then frees
        read = [jax.device_put(np.array(x), device) for x, r in zip(leaves, mask) if r]
        return StateCopy(read, (treedef, shapes, mask), device)

    def __call__(self, copy: StateCopy, obs, keys):
        return self.fn(copy, obs, keys)


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
