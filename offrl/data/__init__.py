"""Datasets: one pytree of device arrays, however the data was stored.

``load_dataset(dataset, ...)`` accepts
- a Minari id (``mujoco/hopper/medium-v0``; downloaded when absent and online),
- an offrl suite id (``offrl/hopper/medium-v0``; built locally from the committed
  behaviour policies when absent, see ``offrl.data.build``),
- Minari's D4RL ports beyond locomotion (``D4RL/antmaze/umaze-v1``, ``D4RL/pen/expert-v2``,
  ``D4RL/kitchen/complete-v2``; gymnasium-robotics environments, see ``offrl.data.robotics``),
- a legacy D4RL file (``/path/to/hopper_medium-v2.hdf5``; see ``offrl.data.d4rl``).
"""
from __future__ import annotations

import os
import re

from offrl.data.dataset import DatasetInfo, Transitions, episodes_to_transitions, sample, to_device
from offrl.data.minari_io import DatasetNotFoundError, datasets_root, load_minari
from offrl.data.preprocess import Preprocessing, preprocess

__all__ = [
    "DatasetInfo",
    "DatasetNotFoundError",
    "Preprocessing",
    "Transitions",
    "episodes_to_transitions",
    "load_dataset",
    "preprocess",
    "sample",
    "to_device",
]


def load_dataset(dataset: str, discount: float = 0.99, download: bool = True, size: int = 1_000_000):
    """(Transitions, DatasetInfo) for a dataset id or file; see the module docstring.

    ``size`` is the build size of an ``offrl/*`` suite dataset: each size of one is built once and
    stored beside the others (``offrl.data.build.stored_id``), so a run never trains on another size.
    """
    if dataset.endswith((".hdf5", ".h5")):
        if not os.path.isfile(dataset):
            raise DatasetNotFoundError(
                f"D4RL file '{dataset}' does not exist: give the path of a D4RL .hdf5 file (e.g. hopper_medium-v2.hdf5)"
            )
        from offrl.data.d4rl import load_d4rl

        return load_d4rl(dataset, discount=discount)
    check_not_d4rl_name(dataset)
    if dataset.startswith("offrl/"):
        from offrl.data.build import built_size, ensure_dataset

        stored = ensure_dataset(dataset, size=size, progress=True)
        built = built_size(stored)
        if built is not None and built != size:  # e.g. another process built another size there meanwhile
            raise ValueError(
                f"dataset '{dataset}' in {datasets_root()} holds {built} transitions per level, not "
                f"config.dataset_size={size}: run again (it is then built beside it) or use --config.dataset_size={built}"
            )
        dataset = stored
    return load_minari(dataset, discount=discount, download=download)


LOCOMOTION = ("hopper", "halfcheetah", "walker2d", "ant")


def check_not_d4rl_name(dataset: str) -> None:
    """DatasetNotFoundError for a D4RL task name (``hopper-medium-v2``, what D4RL and CORL users type),
    naming the ids offrl reads instead: its local suite id, Minari's port and the D4RL file route."""
    from offrl.data.minari_io import local_dataset_exists
    from offrl.data.scores import d4rl_task_name

    m = re.fullmatch(r"([a-z0-9]+)-([a-z-]+?)-v(\d+)", dataset.lower())
    if "/" in dataset or m is None or d4rl_task_name(dataset) is None or local_dataset_exists(dataset):
        return
    env, level = m.group(1), m.group(2)
    if env in LOCOMOTION:
        where = (f"offrl/{env}/{level}-v0 (offrl's local suite, built offline), mujoco/{env}/{level}-v0 "
                 f"(Minari's port, downloaded)")
    else:
        where = f"Minari's port D4RL/{env}/{level}-v<N> (downloaded; `minari list remote` lists the versions)"
    raise DatasetNotFoundError(
        f"'{dataset}' is a D4RL task name; offrl reads Minari ids and D4RL files: use {where}, or the path of "
        f"D4RL's file (e.g. --config.dataset=/path/to/{env}_{level}-v{m.group(3)}.hdf5)"
    )
