"""Algorithm registry and the contract every algorithm module follows.

An algorithm is one module in this package exposing:

- ``init(key, spec: Spec, config) -> state``: a pytree (usually a ``flax.struct.PyTreeNode``
  holding ``TrainState``s, target parameters and counters).
- ``stages(config) -> list[Stage]``: what the runtime scans through, in order. Each
  stage's ``update(state, batch, key, step) -> (state, metrics)`` is pure; ``batch`` is a
  :class:`offrl.data.Transitions` of ``stage.batch_size`` transitions drawn by the
  runtime's one sampler; ``step`` is the stage-local update index (int32 scalar, the
  same for every seed, so ``lax.cond`` on it stays a real branch under the seed vmap). Single-stage algorithms return one stage of
  ``config.num_steps`` updates.
- ``act(state, obs, key, config, deterministic=True) -> actions`` in [-1, 1]^A
  (the runtime rescales dataset actions into that box and back for the environment).

Optional: ``prepare_data(data, info, config) -> (data, info)`` (e.g. %BC's filtering),
``validate(config)`` raising ``ValueError`` on bad hyperparameters, and
``after_chunk(states, ctx, stage, stage_step) -> states`` for host-side steps between compiled chunks
(e.g. BPPO's online policy selection), ``chunk_every(config) -> {stage: period}`` to cut chunks
more often than ``eval_interval`` for that hook, and ``variant(config) -> str`` naming the
variant in results; see ``offrl.runner``.

Every module in this package not named ``common`` or starting with ``_`` is an
algorithm: adding the file registers it, and the shared test harness
(tests/test_algorithms.py) then covers it, with ``configs/<name>.py`` or, if the module sets
``CONFIG = "<file>"``, ``configs/<file>.py`` (e.g. brac -> brac_vp).
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Callable, NamedTuple

NOT_ALGORITHMS = ("common",)
ALGORITHMS = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in NOT_ALGORITHMS)
)


class Spec(NamedTuple):
    obs_dim: int
    act_dim: int


class Stage(NamedTuple):
    name: str
    update: Callable  # (state, batch, key, step) -> (state, metrics: dict[str, scalar])
    num_steps: int
    batch_size: int
    evaluate: bool = True  # evaluate the policy in the environment during this stage


def get_algorithm(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm '{name}': choose one of {', '.join(sorted(ALGORITHMS))} "
            f"(set --config.algo or pick a file in configs/)"
        )
    return importlib.import_module(f"offrl.algos.{name}")
