"""Reference scores and D4RL-style normalised scores: the one score function every algorithm uses."""
from __future__ import annotations

from typing import Optional

import numpy as np

# D4RL's reference returns (REF_MIN_SCORE, REF_MAX_SCORE in d4rl/infos.py of Farama-Foundation/D4RL):
# the random and expert policies' returns for locomotion and Adroit (the same for every level of a
# task: v0, v1, v2), 0 and 1 (success) for AntMaze, 0 and 4 (tasks completed) for Kitchen.
D4RL_REFERENCE = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "kitchen": (0.0, 4.0),
}

# Conventions, as they are written next to a reported score.
DATASET_REFERENCE = "dataset metadata (ref_min_score / ref_max_score)"
D4RL_CONVENTION = "D4RL reference returns (Minari mujoco/* datasets carry none)"
D4RL_PORT_CONVENTION = "D4RL reference returns (d4rl/infos.py), used for Minari's D4RL/* ports"


def d4rl_task_name(dataset_id: str) -> Optional[str]:
    """The D4RL task (locomotion env or domain: ``hopper``, ``antmaze``, ``pen``, ``kitchen``...) a Minari
    ``mujoco/<env>/<level>`` or ``D4RL/<domain>/<level>`` id or a D4RL name (``pen-human-v1``) refers to."""
    name = dataset_id.lower().replace("_", "-")  # legacy file names: hopper_medium-v2
    parts = name.split("/")
    candidates = parts if len(parts) > 1 else [name.split("-")[0]]
    if len(parts) > 1 and parts[0] not in ("mujoco", "d4rl"):
        return None
    for p in candidates:
        if p in D4RL_REFERENCE:
            return p
    return None


def reference_scores(
    dataset_id: str, ref_min: Optional[float], ref_max: Optional[float]
) -> tuple[Optional[float], Optional[float], str]:
    """(min, max, convention) for a dataset: D4RL's returns for Minari's ``D4RL/<domain>/*`` ports (the
    convention papers report; their metadata may hold re-measured values), else the dataset's own
    metadata, else D4RL's returns found from the task name."""
    task = d4rl_task_name(dataset_id)
    if task is not None and dataset_id.lower().startswith("d4rl/"):
        lo, hi = D4RL_REFERENCE[task]
        return lo, hi, D4RL_PORT_CONVENTION
    if ref_min is not None and ref_max is not None:
        return float(ref_min), float(ref_max), DATASET_REFERENCE
    if task is not None:
        lo, hi = D4RL_REFERENCE[task]
        return lo, hi, D4RL_CONVENTION
    return None, None, "none"


def normalized_score(returns, ref_min: Optional[float], ref_max: Optional[float]):
    """100 * (R - R_min) / (R_max - R_min); NaN where no reference is known."""
    r = np.asarray(returns, np.float64)
    if ref_min is None or ref_max is None:
        return np.full_like(r, np.nan)
    return 100.0 * (r - ref_min) / (ref_max - ref_min)


def normalized_spread(spread, ref_min: Optional[float], ref_max: Optional[float]):
    """A spread (std, stderr) of raw returns in normalised units: scaled, never offset."""
    s = np.asarray(spread, np.float64)
    if ref_min is None or ref_max is None:
        return np.full_like(s, np.nan)
    return 100.0 * s / (ref_max - ref_min)
