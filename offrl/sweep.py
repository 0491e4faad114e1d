"""Hyperparameter grids, vmapped: every (grid point, seed) pair is one member of a single program.

``config.grid`` is a string such as ``"agent.alpha=1,2.5,5 agent.tau=0.005,0.01"``: the
cartesian product of the listed values. Members are ordered grid point by grid point,
seeds inside, and seed i of grid point g reproduces a run of that point with seed i alone.

What can be swept is declared, not guessed: an algorithm lists in ``Algorithm.sweepable``
the ``agent.*`` keys its updates read only arithmetically (penalty weights, temperatures,
Polyak rates, and learning rates, which ``common.adam`` keeps in the optimiser state).
Every other key — step counts, sizes, switches, anything that drives Python control flow —
is refused with one line before anything is written: launch one run per value instead.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Members(NamedTuple):
    points: list[dict]  # grid points: {dotted key: float}; [{}] without a grid
    seeds: list[int]  # seeds of one grid point

    @property
    def size(self) -> int:
        return len(self.points) * len(self.seeds)

    def hparams(self) -> dict:
        """{key: (members,) float32 array} to vmap over, members ordered point-major."""
        if not self.points[0]:
            return {}
        return {k: jnp.asarray(np.repeat([p[k] for p in self.points], len(self.seeds)), jnp.float32) for k in self.points[0]}

    def seed_list(self) -> list[int]:
        return [s for _ in self.points for s in self.seeds]


def parse_grid(grid: str, config, sweepable=()) -> list[dict]:
    """Grid points from ``config.grid``; ValueError naming the bad entry. ``sweepable``: the
    algorithm's declared ``agent.*`` keys (``Algorithm.sweepable``)."""
    if not grid.strip():
        return [{}]
    allowed = {f"agent.{k}" for k in sweepable}
    keys, values = [], []
    for item in grid.split():
        if "=" not in item:
            raise ValueError(f"config.grid entry '{item}' is malformed: write key=v1,v2,... (e.g. agent.alpha=1,2.5)")
        key, vals = item.split("=", 1)
        try:
            config[key]
        except (KeyError, AttributeError):
            import difflib

            close = difflib.get_close_matches(key, sorted(allowed), n=3, cutoff=0.6)
            close = [f"agent.{key}"] if f"agent.{key}" in allowed else close
            hint = f": did you mean {' or '.join(close)}?" if close else f" (sweepable here: {', '.join(sorted(allowed)) or 'none'})"
            raise ValueError(f"config.grid names '{key}', which is not a config key{hint}") from None
        if key not in allowed:
            raise ValueError(
                f"config.grid cannot sweep '{key}' in one program ({config.algo} reads it to shape the program, "
                f"not only arithmetically); sweepable here: {', '.join(sorted(allowed)) or 'none'}; "
                f"or launch one run per value"
            )
        try:
            parsed = [float(v) for v in vals.split(",") if v]
        except ValueError:
            raise ValueError(f"config.grid values for '{key}' must be numbers, got '{vals}'") from None
        if not parsed:
            raise ValueError(f"config.grid lists no values for '{key}'")
        if key in keys:
            raise ValueError(f"config.grid names '{key}' twice: list all its values in one entry")
        keys.append(key)
        values.append(parsed)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def members(config, sweepable=()) -> Members:
    return Members(parse_grid(config.grid, config, sweepable), [config.seed + i for i in range(config.num_seeds)])


def label(point: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in point.items()) or "-"
