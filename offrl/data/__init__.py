"""Datasets: one pytree of device arrays, however the data was stored.

``load_dataset(dataset, ...)`` accepts
- a Minari id (``mujoco/hopper/medium-v0``; downloaded when absent and online),
- an offrl suite id (``offrl/hopper/medium-v0``; built locally from the committed
  behaviour policies when absent, see ``offrl.data.build``),
- a legacy D4RL file (``/path/to/hopper_medium-v2.hdf5``; see ``offrl.data.d4rl``).
"""
from __future__ import annotations

from offrl.data.dataset import DatasetInfo, Transitions, episodes_to_transitions, sample, to_device
from offrl.data.minari_io import DatasetNotFoundError, load_minari
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
    """(Transitions, DatasetInfo) for a dataset id or file; see the module docstring."""
    if dataset.endswith((".hdf5", ".h5")):
        from offrl.data.d4rl import load_d4rl

        return load_d4rl(dataset, discount=discount)
    if dataset.startswith("offrl/"):
        from offrl.data.build import ensure_dataset

        ensure_dataset(dataset, size=size, progress=True)
    return load_minari(dataset, discount=discount, download=download)
