"""Checkpoints of the full (seed-vmapped) training carry plus the runner's progress, written atomically."""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from flax import serialization


def save(path: str, carry: Any, progress: dict) -> None:
    """Write ``carry`` (any pytree) and a JSON-able ``progress`` dict; a crash mid-write leaves the old file."""
    host = jax.tree_util.tree_map(np.asarray, jax.device_get(carry))
    blob = serialization.msgpack_serialize(
        {"carry": serialization.to_state_dict(host), "progress": json.dumps(progress)}
    )
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restore(path: str, template: Any) -> tuple[Any, dict]:
    """(carry shaped like ``template``, progress) from a file written by :func:`save`."""
    with open(path, "rb") as f:
        raw = serialization.msgpack_restore(f.read())
    carry = serialization.from_state_dict(template, raw["carry"])
    carry = jax.tree_util.tree_map(lambda t, x: jax.numpy.asarray(x, dtype=t.dtype), template, carry)
    return carry, json.loads(raw["progress"])
