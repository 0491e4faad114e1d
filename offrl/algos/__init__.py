"""The algorithm contract: every algorithm is one :class:`Algorithm` record.

An algorithm lives in one module of this package, read top to bottom beside its paper, and
ends by building its record::

    ALGORITHM = Algorithm(
        name="td3bc", init=init, stages=stages, act=act, default_config=default_agent_config,
        sweepable=("alpha", "tau", "actor_lr", "critic_lr"), validate=validate, variant=variant,
    )

The record's fields are the whole contract; the runner, the benchmark and the tests call
fields, nothing else. Required:

- ``init(key, spec: Spec, config) -> state``: a pytree (usually a ``flax.struct.PyTreeNode``
  holding ``TrainState``s, target parameters and counters).
- ``stages(config) -> list[Stage]``: what the runtime scans through, in order, each with a
  unique ``name``. A stage's ``update(state, batch, key, step) -> (state, metrics)`` is pure;
  ``batch`` is a :class:`offrl.data.Transitions` of ``stage.batch_size`` transitions drawn by
  the runtime's one sampler, with ``batch.index`` the dataset row of each (so an update can look
  up per-row tables it built from the dataset, e.g. ARQ's pre-generated candidates); ``step`` is the stage-local update index (int32 scalar, the
  same for every seed, so ``lax.cond`` on it stays a real branch under the seed vmap).
  A stage's optional ``begin(state) -> state`` runs once, when the stage starts (before its update
  at step 0, not when a resumed run continues it): a swap into a pretrained policy, an optimiser
  reset, a frozen copy of the behaviour policy. In ``update`` such a swap would cost every step (a
  ``select``, or a ``lax.cond`` that copies the state; tests/test_algorithms.py).
  Single-stage algorithms use :func:`single_stage`.
- ``act(state, obs, key, config, deterministic=True) -> actions`` in [-1, 1]^A (the runtime
  rescales dataset actions into that box and back for the environment).
- ``default_config() -> ConfigDict``: the algorithm's ``config.agent`` defaults (those of
  the reference codebase its docstring names).

Optional, each with a no-op default:

- ``sweepable``: the ``agent.*`` keys the updates read only arithmetically, so a grid over
  them runs as one vmapped program (``config.grid``; see ``offrl.sweep``). Learning rates
  are sweepable when their optimiser is built by ``common.adam`` (``optax.inject_hyperparams``
  keeps them in the optimiser state). Anything not listed is refused by a grid before
  anything is written: step counts, sizes and switches shape the program.
- ``validate(config)``: raise ``ValueError`` naming a bad hyperparameter (default: accept); state
  the rules with ``offrl.checks.Checks`` so every message has the one form.
- ``prepare_data(data, info, config) -> (data, info)``: e.g. %BC's filtering (default: as is).
- ``variant(config) -> str``: the name tables and progress lines show (default: ``name``).
- ``chunk_every(config) -> {stage name: period}``: extra chunk cuts for ``after_chunk``
  (default: none, chunks end at evaluations only).
- ``after_chunk(states, ctx, stage_name, stage_step) -> states``: a host-side step between
  compiled chunks, e.g. BPPO's online policy selection (default: none).
- ``diagnostics(state, batch, key, config) -> metrics``: costly diagnostics (gradient norms,
  extra critic passes) computed once per chunk on one batch, outside the scanned updates, so
  they never slow the hot path (default: none).
- ``extra_scores(states, config) -> {name: per-member raw returns}``: further named scores a
  run reports next to its main score, read from the final states (e.g. BPPO's online-selected
  best pi_k, evaluated by its ``after_chunk`` and kept in the state so it survives resuming).
  The runner turns each into the same statistics as the main score (same members, same
  normalisation) under ``extra_scores`` in results.json and one line each in results.md; they
  never replace the main score (default: none).
- ``config_file``: the ``configs/<file>.py`` the shared harness uses (default: ``name``).

The reported score of a run comes only from evaluations of its last evaluating stage
(a behaviour-cloning stage may be evaluated and logged, but it never enters the score).

Every module in this package not named ``common`` or starting with ``_`` is an algorithm:
adding the file registers it, and the shared harness (tests/test_algorithms.py) covers it.
An algorithm outside the package runs without being registered: ``config.algo`` =
``path/to/my_algo.py`` (the file's ``ALGORITHM``) or ``my_package.my_algo:NAME``; the launcher
then starts ``config.agent`` from the record's ``default_config()``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable, NamedTuple, Optional

NOT_ALGORITHMS = ("common",)
ALGORITHMS = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_") and m.name not in NOT_ALGORITHMS)
)
REQUIRED = ("name", "init", "stages", "act", "default_config")


class Spec(NamedTuple):
    obs_dim: int
    act_dim: int


class Stage(NamedTuple):
    name: str
    update: Callable  # (state, batch, key, step) -> (state, metrics: dict[str, scalar])
    num_steps: int
    batch_size: int  # offrl.data.dataset.WHOLE_DATASET (0): every transition once, in order
    evaluate: bool = True  # evaluate the policy in the environment during this stage
    begin: Optional[Callable] = None  # state -> state, once when the stage starts (its step 0)


def _accept(config) -> None:
    return None


def _keep_data(data, info, config):
    return data, info


def _no_cuts(config) -> dict:
    return {}


def _no_hook(states, ctx, stage_name: str, stage_step: int):
    return states


def _no_extra_scores(states, config) -> dict:
    return {}


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One algorithm: its pure pieces and optional hooks (see the module docstring)."""

    name: str = ""
    init: Optional[Callable] = None
    stages: Optional[Callable] = None
    act: Optional[Callable] = None
    default_config: Optional[Callable] = None
    sweepable: tuple = ()
    validate: Callable = _accept
    prepare_data: Callable = _keep_data
    variant: Optional[Callable] = None
    chunk_every: Callable = _no_cuts
    after_chunk: Callable = _no_hook
    diagnostics: Optional[Callable] = None
    extra_scores: Callable = _no_extra_scores
    config_file: str = ""

    def __post_init__(self):
        for f in REQUIRED:
            if not getattr(self, f):
                raise TypeError(f"Algorithm {self.name or '?'!r} is missing its required field '{f}' (required: {', '.join(REQUIRED)})")
        if isinstance(self.sweepable, str):
            raise TypeError(f"Algorithm {self.name!r}: sweepable is a tuple of agent keys, not the string {self.sweepable!r}")
        object.__setattr__(self, "sweepable", tuple(self.sweepable))
        if not self.config_file:
            object.__setattr__(self, "config_file", self.name)

    def variant_name(self, config) -> str:
        """What tables and progress lines call a run of this config."""
        return self.variant(config) if self.variant is not None else self.name


def single_stage(update: Callable, config) -> list[Stage]:
    """The stages of a one-stage algorithm: ``config.num_steps`` updates ``update(state, batch, key, step, config)``."""
    return [Stage("train", lambda s, b, k, t: update(s, b, k, t, config), config.num_steps, config.batch_size)]


def is_outside(name: str) -> bool:
    """Whether ``config.algo`` names an algorithm outside this package: ``path/to/my_algo.py`` or ``module:NAME``."""
    return name.endswith(".py") or ":" in name


def load_outside(name: str) -> Algorithm:
    """The :class:`Algorithm` record that ``name`` names outside offrl: ``path/to/my_algo.py`` (its
    ``ALGORITHM``), ``path/to/my_algo.py:NAME`` or ``my_package.my_algo:NAME`` (an importable module).
    The runner gives it every check a registered algorithm gets (required fields, ``validate``, grids)."""
    import importlib.util
    import os
    import sys

    where, _, attr = name.rpartition(":") if ":" in name else (name, "", "ALGORITHM")
    attr = attr or "ALGORITHM"
    if where.endswith(".py"):
        path = os.path.abspath(os.path.expanduser(where))
        if not os.path.isfile(path):
            raise ValueError(f"algorithm file '{where}' does not exist: give the path of a Python file that ends with "
                             f"{attr} = Algorithm(...), or an importable module:NAME")
        module_name = "offrl_outside_" + "".join(ch if ch.isalnum() else "_" for ch in path)
        module = sys.modules.get(module_name)
        if module is None:  # loaded once per process: its functions (and their compiled programs) are reused
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise ValueError(f"algorithm '{name}': module '{where}' cannot be imported ({e}); give module:NAME of an "
                             f"importable module or path/to/my_algo.py") from None
    record = getattr(module, attr, None)
    if not isinstance(record, Algorithm):
        raise ValueError(f"algorithm '{name}': {where} defines no {attr} = Algorithm(...) (found {type(record).__name__})")
    return record


def get_algorithm(name: str) -> Algorithm:
    """The record of ``config.algo``: a module of this package, or one outside it (:func:`load_outside`)."""
    if name not in ALGORITHMS:
        if is_outside(name):
            return load_outside(name)
        raise ValueError(
            f"unknown algorithm '{name}': choose one of {', '.join(sorted(ALGORITHMS))} "
            f"(set --config.algo or pick a file in configs/), or give your own as path/to/my_algo.py or module:NAME"
        )
    record = importlib.import_module(f"offrl.algos.{name}").ALGORITHM
    if not isinstance(record, Algorithm) or record.name != name:
        raise TypeError(f"offrl/algos/{name}.py must end with ALGORITHM = Algorithm(name={name!r}, ...)")
    return record
