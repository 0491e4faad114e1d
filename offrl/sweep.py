"""Hyperparameter grids, vmapped: every (grid point, seed) pair is one member of a single program.

``config.grid`` is a string such as ``"agent.alpha=1,2.5,5 agent.tau=0.005,0.01"``: the
cartesian product of the listed values. Members are ordered grid point by grid point,
seeds inside, and seed i of grid point g reproduces a run of that point with seed i alone.

Only values the updates use arithmetically can be swept in-graph (alpha, tau, discount,
temperatures, penalty weights, ...). Keys that shape the program or the optimiser
(network sizes, step counts, batch sizes, learning rates) cannot: launch those separately.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from offrl.config import get_dotted

NOT_SWEEPABLE = ("hidden_dims", "_steps", "batch_size", "lr", "num_", "latent")


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


def parse_grid(grid: str, config) -> list[dict]:
    """Grid points from ``config.grid``; ValueError naming the bad entry."""
    if not grid.strip():
        return [{}]
    keys, values = [], []
    for item in grid.split():
        if "=" not in item:
            raise ValueError(f"config.grid entry '{item}' is malformed: write key=v1,v2,... (e.g. agent.alpha=1,2.5)")
        key, vals = item.split("=", 1)
        last = key.split(".")[-1]
        try:
            current = get_dotted(config, key)
        except (KeyError, AttributeError):
            raise ValueError(f"config.grid names '{key}', which is not a config key") from None
        if any(tag in last for tag in NOT_SWEEPABLE) or not isinstance(current, (int, float)) or isinstance(current, bool):
            raise ValueError(
                f"config.grid cannot sweep '{key}' in one program (it is not a numeric value the updates use "
                f"arithmetically: sizes, step counts, learning rates and switches shape the program); launch one run per value"
            )
        try:
            parsed = [float(v) for v in vals.split(",") if v]
        except ValueError:
            raise ValueError(f"config.grid values for '{key}' must be numbers, got '{vals}'") from None
        if not parsed:
            raise ValueError(f"config.grid lists no values for '{key}'")
        keys.append(key)
        values.append(parsed)
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def members(config) -> Members:
    return Members(parse_grid(config.grid, config), [config.seed + i for i in range(config.num_seeds)])


def label(point: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in point.items()) or "-"
