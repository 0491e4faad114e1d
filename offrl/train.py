"""The runtime: a pure ``train(key)`` per algorithm, scanned in chunks and vmapped over seeds.

``make_train(algo, config, data)`` returns a :class:`Train` whose pieces are pure:

- ``init(key) -> Carry`` builds one seed's state;
- ``run(carry, data, stage, start, length) -> (carry, metrics)`` performs ``length``
  updates of the stage named ``stage`` with ``lax.scan``, starting at the
  stage-local step ``start``; the metrics are averaged over the chunk (``per_step=True``:
  every update's, for logging finer than a chunk);
- ``train(key) -> (carry, [metrics per stage])`` is the whole run in one call;
- ``diagnose(carry, data, stage) -> metrics`` (None when the algorithm declares no
  ``diagnostics``): the algorithm's costly diagnostics on one batch of the stage's size,
  outside the scanned updates; it reads the carry and changes nothing in it, so the runner
  calls it once per chunk, only where the metrics are logged.

``Train.vmapped`` gives the jit-compiled, seed-vmapped versions the runner uses:
N seeds cost one compiled program, and seed i of it matches a run of seed i alone.
Over several devices the seed axis is sharded (``shard_seeds``).
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from offrl.algos import Spec, Stage
from offrl.data.dataset import Transitions, sample
from offrl.nets import vmap_members


DIAGNOSTICS_STREAM = 0x5D1A6  # folded into a member's key: diagnostics draw their own batch, the run's keys stay put


class Carry(NamedTuple):
    state: Any
    key: jax.Array
    hparams: dict  # swept hyperparameters of this run member ({} without a grid)


class Train(NamedTuple):
    init: Callable
    run: Callable
    train: Callable
    stages: list
    spec: Spec
    data: Transitions  # the dataset ``train`` uses by default
    diagnose: Optional[Callable] = None

    def vmapped(self, donate: bool = False, per_step: bool = False):
        """(init, run) jit-compiled over a leading seed (or grid x seed) axis; data is shared, not copied.
        With one member, ``run`` is the unvmapped program with the axis put back (``nets.vmap_members``).

        ``donate``: ``run`` donates its carry, so the chunk writes its new state into the old one's
        memory instead of beside it, and the carry passed in is deleted. The runner does; use it when
        each call's carry is the last one's output. (ARQ's candidate table is 462 MiB per seed on 1M
        states: without donation every chunk holds two copies of it.)

        On the CPU the members are initialised one after another (``lax.map``; the values are the
        vmapped ones). A vmapped orthogonal initialiser (IQL, BPPO) is a batched QR, and XLA's CPU
        LAPACK kernel for it (``lapack_sorgqr_ffi``) spreads the batch over the intra-op thread pool
        that runs it and then blocks a pool thread while it waits. Two such QRs at once fill a 2-thread
        pool, and nothing is left to run the work they wait for. gdb showed this deadlock (every
        thread in a futex, no CPU used for minutes) in bench's BPPO and IQL at 4 seeds on 2 cores."""
        if jax.default_backend() == "cpu":
            init = jax.jit(lambda keys, hparams=None: jax.lax.map(lambda kh: self.init(*kh), (keys, hparams)))
        else:
            init = jax.jit(jax.vmap(self.init))
        # with a member axis of size 1, XLA's GPU program copied ensembles' weights on every update (about
        # 1-5 MB, measured on an H200 target), and on the CPU most algorithms ran slower
        chunk = functools.partial(self.run, per_step=True) if per_step else self.run
        run = jax.jit(vmap_members(chunk, in_axes=(0, None, None, None, None)), static_argnums=(2, 4),
                      donate_argnums=(0,) if donate else ())
        return init, run

    def vmapped_diagnose(self) -> Optional[Callable]:
        """``diagnose`` jit-compiled over the member axis (data shared), or None without diagnostics."""
        if self.diagnose is None:
            return None
        return jax.jit(vmap_members(self.diagnose, in_axes=(0, None, None)), static_argnums=2)


def unaliased(tree):
    """``tree`` with a copy in place of every array that already appeared in it: a donating ``run``
    (``Train.vmapped(donate=True)``) cannot be given one buffer twice (an ``after_chunk`` hook may put the same array in
    two places, as BPPO's does when pi_k becomes pi)."""
    seen = set()

    def once(x):
        if not isinstance(x, jax.Array):
            return x
        if id(x) in seen:
            return x.copy()
        seen.add(id(x))
        return x

    return jax.tree_util.tree_map(once, tree)


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """One PRNG key per seed: seed ``seed + i`` gets ``PRNGKey(seed + i)``, vmapped or alone."""
    return jnp.stack([jax.random.PRNGKey(seed + i) for i in range(num_seeds)])


def spec_of(data: Transitions) -> Spec:
    return Spec(int(data.observations.shape[-1]), int(data.actions.shape[-1]))


def with_hparams(config, hparams: dict):
    """A copy of ``config`` whose dotted keys in ``hparams`` hold the given (possibly traced) values."""
    if not hparams:
        return config
    cfg = copy.deepcopy(config)
    with cfg.ignore_type():
        cfg.update_from_flattened_dict(hparams)
    return cfg


def stage_index(stages, name: str) -> int:
    """The position of the stage called ``name``; ValueError naming the stages there are."""
    names = [s.name for s in stages]
    if name not in names:
        raise ValueError(f"no stage named {name!r}: the stages are {', '.join(names)}")
    return names.index(name)


def make_train(algo, config, data: Transitions) -> Train:
    """Pure pieces of a run; hyperparameters named in a member's ``hparams`` override ``config``
    inside the trace, so a grid of them is vmapped like seeds (see ``offrl.sweep``)."""
    spec = spec_of(data)
    stages: list[Stage] = list(algo.stages(config))
    if len({s.name for s in stages}) != len(stages):
        raise ValueError(f"algorithm {algo.name!r} declares stages with the same name: {[s.name for s in stages]}")

    def init(key, hparams: dict | None = None) -> Carry:
        hparams = {} if hparams is None else hparams
        k_init, k_run = jax.random.split(key)
        return Carry(algo.init(k_init, spec, with_hparams(config, hparams)), k_run, hparams)

    def run(carry: Carry, data: Transitions, stage: str, start, length: int, per_step: bool = False):
        i = stage_index(stages, stage)
        st = algo.stages(with_hparams(config, carry.hparams))[i] if carry.hparams else stages[i]

        def body(c: Carry, step):
            key, k_batch, k_update = jax.random.split(c.key, 3)
            batch = sample(k_batch, data, st.batch_size)
            state, metrics = st.update(c.state, batch, k_update, step)
            return Carry(state, key, c.hparams), metrics

        if st.begin is not None:  # once per chunk, outside the scanned updates: applied when the stage starts
            carry = carry._replace(state=jax.lax.cond(jnp.asarray(start) == 0, st.begin, lambda s: s, carry.state))
        steps = jnp.asarray(start, jnp.int32) + jnp.arange(length, dtype=jnp.int32)
        carry, metrics = jax.lax.scan(body, carry, steps)
        if per_step:  # every update's metrics (for logging finer than a chunk); the updates are the same
            return carry, metrics
        return carry, jax.tree_util.tree_map(lambda m: m.mean(0), metrics)

    def train(key, data: Transitions = data, hparams: dict | None = None):
        carry = init(key, hparams)
        out = []
        for st in stages:
            if st.num_steps:
                carry, m = run(carry, data, st.name, 0, st.num_steps)
                out.append(m)
        return carry, out

    def diagnose(carry: Carry, data: Transitions, stage: str):
        st = stages[stage_index(stages, stage)]
        k_batch, k_diag = jax.random.split(jax.random.fold_in(carry.key, DIAGNOSTICS_STREAM))
        batch = sample(k_batch, data, st.batch_size)
        return algo.diagnostics(carry.state, batch, k_diag, with_hparams(config, carry.hparams))

    return Train(init, run, train, stages, spec, data, diagnose if algo.diagnostics is not None else None)


def _global(tree, spec):
    """Host values (the same on every process) as global arrays laid out by ``spec`` over all devices."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("seeds",))
    sharding = jax.sharding.NamedSharding(mesh, spec)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(put, tree)


def shard_seeds(tree):
    """Spread the leading member (seed, or grid x seed) axis over all devices, those of every process
    under ``jax.distributed``; a no-op on one device. Single-process, a member count that does not
    divide evenly stays on one device; multi-process it is refused (ValueError), since every process
    must own whole members. The values must be the same on every process (they are: keys and grid
    values come from the config)."""
    devices = jax.devices()
    if len(devices) < 2:
        return tree
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    if n % len(devices):
        if jax.process_count() > 1:
            raise ValueError(
                f"{n} run members cannot be split evenly over {len(devices)} devices in {jax.process_count()} "
                f"processes: choose num_seeds (x grid points) divisible by {len(devices)}"
            )
        return tree
    return _global(tree, jax.sharding.PartitionSpec("seeds"))


def replicate(tree):
    """Put shared data (the dataset) on every device, of every process; a no-op on one device."""
    if len(jax.devices()) < 2:
        return tree
    return _global(tree, jax.sharding.PartitionSpec())


def fetch(tree):
    """Host NumPy copies of every member's values, on every process (gathered across processes
    when the member axis is sharded over several)."""
    from jax.experimental import multihost_utils

    def get(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(get, tree)


def local_members(tree) -> tuple[np.ndarray, Any]:
    """(member indices, tree of those members on this process's first device) that this process's
    devices hold; ``tree`` itself, all members, when it is fully addressable (one process)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    n = leaves[0].shape[0]
    if all(not isinstance(x, jax.Array) or x.is_fully_addressable for x in leaves):
        return np.arange(n), tree

    def rows(x):
        shards = {}
        for sh in x.addressable_shards:
            start = (sh.index[0].start or 0) if sh.index else 0
            shards.setdefault(start, np.asarray(sh.data))
        return sorted(shards.items())

    first = rows(leaves[0])
    idx = np.concatenate([np.arange(start, start + len(d)) for start, d in first])
    local = [np.concatenate([d for _, d in rows(x)], axis=0) if x.ndim and x.shape[0] == n else np.asarray(x.addressable_data(0))
             for x in leaves]
    return idx, jax.device_put(jax.tree_util.tree_unflatten(treedef, local), jax.local_devices()[0])


def from_local_members(template, idx, local):
    """The inverse of :func:`local_members`: global arrays laid out like ``template`` (as
    :func:`shard_seeds` left them), built from this process's members ``local`` (rows: member
    indices ``idx``) without any other process's values; each process passes its own (a resumed
    multi-process run: every process restores only the members it checkpointed). ``local`` itself
    when ``template`` is fully addressable (one process)."""
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if all(not isinstance(t, jax.Array) or t.is_fully_addressable for t in t_leaves):
        return local
    n = t_leaves[0].shape[0]
    row = {int(m): i for i, m in enumerate(np.asarray(idx))}

    def put(t, x):
        x = np.asarray(x)
        if not (t.ndim and t.shape[0] == n):  # a leaf without the member axis: the same on every process
            return jax.make_array_from_callback(t.shape, t.sharding, lambda index: x[index])

        def rows(index):
            s = index[0]
            return x[[row[m] for m in range(*s.indices(n))]][(slice(None),) + tuple(index[1:])]

        return jax.make_array_from_callback(t.shape, t.sharding, rows)

    return jax.tree_util.tree_unflatten(treedef, [put(t, x) for t, x in zip(t_leaves, jax.tree_util.tree_leaves(local))])
