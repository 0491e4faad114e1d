"""D4RL's domains beyond locomotion, through Minari and gymnasium-robotics: AntMaze, Adroit, Kitchen.

Minari hosts D4RL's AntMaze (``D4RL/antmaze/*``), Adroit (``D4RL/pen|door|hammer|relocate/*``) and
Kitchen (``D4RL/kitchen/*``) datasets; their environments live in gymnasium-robotics (``pip install
-e '.[robotics]'``). ``offrl.data.load_dataset`` loads them like any Minari dataset; this module adds
what they need beyond locomotion:

- **Observations.** AntMaze and Kitchen observe a dict (``observation``, ``achieved_goal``,
  ``desired_goal``; Kitchen's goals are dicts of per-task arrays). Datasets and the evaluation env
  see one flat vector: the leaves concatenated in the observation space's key order, recursively,
  which is exactly ``gymnasium.spaces.flatten`` / the ``FlattenObservation`` wrapper
  (:func:`flatten_observations`; tested against both).
- **Environment recovery.** The dataset's evaluation env spec (``eval_env_spec``, else ``env_spec``) is
  used with ``FlattenObservation`` appended for dict observations (:func:`evaluation_spec`). For
  AntMaze, ``continuing_task=False``: the episode ends when the ant reaches the goal, so the return
  is 1 (success) or 0, D4RL's convention that its references (0, 1) assume; Minari's stored spec keeps
  the task running after success, where returns count steps at the goal instead.
- **Scores.** D4RL's reference returns (``d4rl/infos.py`` REF_MIN_SCORE / REF_MAX_SCORE; see
  ``offrl.data.scores.D4RL_REFERENCE``) for every ``D4RL/<domain>/*`` id: AntMaze (0, 1), Kitchen
  (0, 4: tasks completed), pen (96.26, 3076.83), door (-56.51, 2880.57), hammer (-274.86, 12794.13),
  relocate (-6.43, 4233.88).
- **Kitchen and MuJoCo.** gymnasium-robotics' FrankaKitchen-v1 fails with MuJoCo >= 3.2 (the upstream
  package pinned ``mujoco<=3.2.0`` for the Franka model, Gymnasium-Robotics PR 225); with the MuJoCo
  4.0 installed here it fails in ``mujoco_utils.get_joint_qpos``, whose ``joint_type in (mjJNT_HINGE,
  mjJNT_SLIDE)`` is False for a NumPy integer under MuJoCo 4's enums. :func:`ensure_robotics` makes
  that module compare plain integers (nothing else changes), after which the env steps. The
  simulator is not the one the D4RL kitchen data were recorded with (MuJoCo 2.x), so kitchen scores
  are not bit-comparable with older numbers; the same holds, less strongly, for every domain here.
  Also: gymnasium-robotics >= 1.2.1 changed the reward of the Adroit ``*Dense-v1`` door, hammer and
  relocate envs without a version bump (Farama notice; v2 in gymnasium-robotics >= 1.4.3).

Legacy D4RL ``.hdf5`` files: Adroit maps to ``AdroitHand<Task>-v1`` (same observation layout and
size), see ``offrl.data.d4rl``; AntMaze and Kitchen files have no gymnasium-robotics counterpart
(:data:`NO_ENV_FOR_LEGACY` says why) and load only with an explicit ``env_id``.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Optional

import numpy as np

ADROIT_ENVS = {
    "pen": "AdroitHandPen-v1",
    "door": "AdroitHandDoor-v1",
    "hammer": "AdroitHandHammer-v1",
    "relocate": "AdroitHandRelocate-v1",
}
DOMAINS = ("antmaze", *ADROIT_ENVS, "kitchen")

NO_ENV_FOR_LEGACY = {
    "antmaze": (
        "D4RL antmaze .hdf5 files observe 29 numbers (the ant's qpos and qvel, x-y in D4RL's maze frame), "
        "while gymnasium-robotics' AntMaze_*-v4 observes a dict (27-dim ant state without x-y, achieved and "
        "desired goal) in a maze frame centred on the origin"
    ),
    "kitchen": (
        "D4RL kitchen .hdf5 files observe 60 numbers (robot and object state plus a fixed goal), while "
        "gymnasium-robotics' FrankaKitchen-v1 observes a 59-dim state plus per-task goal dicts"
    ),
}


def domain_of(name: str) -> Optional[str]:
    """The D4RL domain an id or file name belongs to: ``D4RL/pen/expert-v2`` or ``pen-human-v1`` -> ``pen``."""
    from offrl.data.scores import d4rl_task_name

    task = d4rl_task_name(name)
    return task if task in DOMAINS else None


_READY = False


def _enum_membership_broken() -> bool:
    import mujoco

    return np.int32(int(mujoco.mjtJoint.mjJNT_HINGE)) not in (mujoco.mjtJoint.mjJNT_HINGE,)


def ensure_robotics() -> None:
    """Import gymnasium-robotics, register its environments, and make FrankaKitchen work with MuJoCo >= 3.2
    (see the module docstring). Idempotent. ImportError with the install command when it is missing."""
    global _READY
    if _READY:
        return
    try:
        import gymnasium_robotics
        from gymnasium_robotics.utils import mujoco_utils
    except ImportError as e:
        raise ImportError(
            "the D4RL AntMaze/Adroit/Kitchen domains need gymnasium-robotics: pip install -e '.[robotics]' "
            f"(or pip install gymnasium-robotics) ({e})"
        ) from e
    import gymnasium as gym
    import mujoco

    gym.register_envs(gymnasium_robotics)
    if _enum_membership_broken() and not isinstance(mujoco_utils.mujoco, _IntEnumMujoco):
        mujoco_utils.mujoco = _IntEnumMujoco(mujoco)
    _READY = True


class _IntEnumMujoco(types.ModuleType):
    """The ``mujoco`` module as gymnasium-robotics' mujoco_utils sees it: everything delegated, except that
    ``mjtJoint`` members are plain ints, so ``np.int32(3) in (mjJNT_HINGE, mjJNT_SLIDE)`` holds again."""

    def __init__(self, real):
        super().__init__("mujoco")
        self._real = real
        self.mjtJoint = types.SimpleNamespace(
            **{k: int(getattr(real.mjtJoint, k)) for k in dir(real.mjtJoint) if k.startswith("mjJNT_")}
        )

    def __getattr__(self, name):
        return getattr(self._real, name)


def flatten_observations(space, obs) -> np.ndarray:
    """(T, D) float32 from a batch of observations of ``space`` (a Box, or a Dict of them, nested):
    the leaves concatenated in the space's key order, as ``gymnasium.spaces.flatten`` does per step."""
    from gymnasium import spaces

    if isinstance(space, spaces.Dict):
        if not isinstance(obs, dict):
            raise ValueError(f"observations are {type(obs).__name__} but the dataset's space is a Dict")
        return np.concatenate([flatten_observations(sub, obs[k]) for k, sub in space.spaces.items()], axis=-1)
    if isinstance(space, spaces.Box):
        a = np.asarray(obs, np.float32)
        return a.reshape(a.shape[0], -1)
    raise ValueError(f"observation space {space} is not supported (Box or Dict of Boxes only)")


def evaluation_spec(spec, dataset_id: str, observation_space):
    """The env spec offrl evaluates a Minari dataset's policies in: the stored spec, plus ``FlattenObservation``
    when the observations are a dict, plus ``continuing_task=False`` for AntMaze (see the module docstring).
    Registers gymnasium-robotics first when the spec comes from it."""
    from gymnasium import spaces
    from gymnasium.envs.registration import WrapperSpec

    if spec is None:
        return None
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    if entry.startswith("gymnasium_robotics") or domain_of(dataset_id) is not None:
        ensure_robotics()
    kwargs = dict(spec.kwargs or {})
    if domain_of(dataset_id) == "antmaze" or "AntMaze" in spec.id:
        kwargs["continuing_task"] = False
    wrappers = tuple(getattr(spec, "additional_wrappers", ()) or ())
    if isinstance(observation_space, spaces.Dict) and not any(w.name == "FlattenObservation" for w in wrappers):
        wrappers += (WrapperSpec("FlattenObservation", "gymnasium.wrappers:FlattenObservation", {}),)
    return dataclasses.replace(spec, kwargs=kwargs, additional_wrappers=wrappers)
