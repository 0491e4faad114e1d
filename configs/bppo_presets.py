"""BPPO's per-dataset hyperparameters (paper Table 6, Appendix K) for the tasks of Tables 1 and 2.

``preset(task)`` gives agent overrides for a D4RL task name (``hopper-medium-replay-v2``) or an
offrl / Minari id (``offrl/hopper/medium-replay-v0``): the improvement learning rate, the initial
clip ratio, the asymmetric coefficient omega and the number of improvement steps.

  lr      1e-4 Gym locomotion and Adroit cloned; 1e-5 Kitchen, AntMaze and Adroit human
  eps_0   0.1 hopper-medium-replay, 0.5 AntMaze, 0.25 otherwise
  omega   0.9 Gym locomotion, 0.7 otherwise
  steps   1000, 100 for AntMaze
The paper's Table 2 uses Filtered BC (failed trajectories removed) for the four medium/large
AntMaze tasks; that filtering is not part of these presets.
"""
from __future__ import annotations

import re

GYM = [f"{e}-{l}-v2" for l in ("medium", "medium-replay", "medium-expert") for e in ("halfcheetah", "hopper", "walker2d")]
ADROIT = [f"{e}-{l}-v1" for l in ("human", "cloned") for e in ("pen", "hammer", "door", "relocate")]
KITCHEN = [f"kitchen-{l}-v0" for l in ("complete", "partial", "mixed")]
ANTMAZE = [f"antmaze-{l}-v2" for l in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")]
TASKS = GYM + ADROIT + KITCHEN + ANTMAZE


def _task_name(dataset: str) -> str:
    """'offrl/hopper/medium-replay-v0' or 'mujoco/hopper/medium-v0' -> 'hopper-medium-replay-v2'."""
    if "/" not in dataset:
        return dataset
    parts = dataset.split("/")
    env, level = parts[-2], re.sub(r"-v\d+$", "", parts[-1])
    return f"{env}-{level}-v2"


def preset(dataset: str) -> dict:
    task = _task_name(dataset)
    env = task.split("-")[0]
    if env in ("halfcheetah", "hopper", "walker2d", "ant", "humanoid"):
        suite = "gym"
    elif env in ("pen", "hammer", "door", "relocate"):
        suite = "adroit"
    elif env in ("kitchen", "antmaze"):
        suite = env
    else:
        raise ValueError(f"no BPPO preset for '{dataset}': Table 6 covers Gym locomotion, Adroit, Kitchen and AntMaze")
    lr = 1e-5 if suite in ("kitchen", "antmaze") or (suite == "adroit" and "-human" in task) else 1e-4
    eps = 0.5 if suite == "antmaze" else (0.1 if task.startswith("hopper-medium-replay") else 0.25)
    return dict(
        pi_lr=lr,
        clip_eps=eps,
        omega=0.9 if suite == "gym" else 0.7,
        pi_steps=100 if suite == "antmaze" else 1000,
    )


PRESETS = {t: preset(t) for t in TASKS}
