"""BPPO's per-dataset settings: the paper's Table 6 (Appendix K) and, as a switch, the reference
code's tips (github.com/Dragon-Zhuang/BPPO, comments in ``main.py``), as one function of the
dataset name.

``bppo_dataset_settings(dataset, tips=False)`` -> {dotted config key: value} for a D4RL task name
(``hopper-medium-replay-v2``), an offrl / Minari id (``offrl/hopper/medium-replay-v0``,
``mujoco/hopper/medium-v0``) or a legacy D4RL file (``.../hopper-medium-replay-v2.hdf5``):

  agent.pi_lr           1e-4 Gym locomotion and Adroit cloned; 1e-5 Kitchen, AntMaze, Adroit human  (Table 6)
  agent.clip_eps        0.1 hopper-medium-replay, 0.5 AntMaze, 0.25 otherwise                        (Table 6)
  agent.omega           0.9 Gym locomotion, 0.7 otherwise                                            (Table 6)
  agent.pi_steps        100 AntMaze, 1000 otherwise                                                  (Appendix K)
  agent.v_steps, q_steps, bc_steps
                        2e6 / 2e6 / 5e5 (Appendix K: "we run 2 x 10^6 steps for fitting Q and V ...
                        5 x 10^5 steps for pi_beta cloning", main.py's defaults)
  agent.entropy_weight  0 (main.py's default; the paper names no entropy term)
  normalize_obs         False (main.py's ``is_state_norm`` default)

These are the settings the paper states for its numbers, and the code's own defaults. The code
also carries tips in comments; ``tips=True`` (``agent.code_tips``, the ``tips`` word of
configs/bppo.py) applies them instead of the last three rows:

  agent.entropy_weight  0.01 for the Gym ``-medium`` datasets ("for ()-medium-() tasks, try to use
                        the entropy loss, weight == 0.01", read as <env>-medium-v2)
  agent.v_steps, q_steps, bc_steps
                        2e5 / 2e5 / 5e4 for hopper-medium and walker2d-medium-replay ("for
                        hopper-medium-v2 and walker2d-medium-replay-v2, run 5e-4/2e-5/2e-5 for bc/q/v.
                        5e-5/2e-6/2e-6 for others": exponents with a stray minus, since the second
                        triple is exactly the default step counts)
  normalize_obs         False for hopper-medium ("for hopper-medium-v2, do not use state
                        normalization"), True otherwise

The tips are worded as things to try ("try to reduce the bc/q/v step if it works poorly"), and the
paper's Appendix K gives the default step counts for every task, so they are not the default.

A dataset of no known suite gets the Gym values. The paper's Table 2 uses Filtered BC (failed
trajectories removed) for the four medium/large AntMaze tasks; that filtering is not part of
these settings.

``follow_dataset(config)`` is how every path applies them — the launcher (``--config.dataset=...``),
the variant words of ``configs/bppo.py:<task>`` and the tables (``experiments/reproduce.py``): each
of these keys becomes a lazy reference computed from ``config.dataset`` (and ``agent.code_tips``),
so it follows the dataset however and whenever the dataset is set, and a key the user sets
explicitly (a flag, ``--set``) keeps the user's value. ``config.agent.dataset_settings`` is a
readable line saying what the dataset implies; it is printed by ``reproduce.py`` and saved in every
run's config.json.
"""
from __future__ import annotations

import os
import re

from ml_collections.config_dict import FieldReference
from ml_collections.config_dict.config_dict import _Op

GYM = [f"{e}-{l}-v2" for l in ("medium", "medium-replay", "medium-expert") for e in ("halfcheetah", "hopper", "walker2d")]
ADROIT = [f"{e}-{l}-v1" for l in ("human", "cloned") for e in ("pen", "hammer", "door", "relocate")]
KITCHEN = [f"kitchen-{l}-v0" for l in ("complete", "partial", "mixed")]
ANTMAZE = [f"antmaze-{l}-v2" for l in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")]
TASKS = GYM + ADROIT + KITCHEN + ANTMAZE
SHORT_PRETRAINING = ("hopper-medium", "walker2d-medium-replay")

SETTING_KEYS = ("agent.pi_lr", "agent.clip_eps", "agent.omega", "agent.pi_steps", "agent.entropy_weight",
                "agent.v_steps", "agent.q_steps", "agent.bc_steps", "normalize_obs")


def task_name(dataset: str) -> str:
    """'offrl/hopper/medium-replay-v0', 'mujoco/hopper/medium-v0', '/x/hopper-medium-replay-v2.hdf5'
    -> 'hopper-medium-replay-v2' (a D4RL name is returned as is)."""
    if dataset.endswith(".hdf5"):
        return os.path.basename(dataset)[: -len(".hdf5")]
    if "/" not in dataset:
        return dataset
    parts = dataset.split("/")
    env, level = parts[-2], re.sub(r"-v\d+$", "", parts[-1])
    return f"{env}-{level}-v2"


def suite_of(task: str) -> str:
    env = task.split("-")[0]
    if env in ("pen", "hammer", "door", "relocate"):
        return "adroit"
    if env in ("kitchen", "antmaze"):
        return env
    return "gym"


def bppo_dataset_settings(dataset: str, tips: bool = False) -> dict:
    """{dotted config key: value} the paper (Table 6, Appendix K) and the reference code's defaults
    prescribe for ``dataset``; ``tips``: with the code comments' tips (see the module docstring)."""
    task = task_name(dataset)
    suite = suite_of(task)
    level = re.sub(r"-v\d+$", "", task)  # e.g. 'hopper-medium-replay'
    short = tips and level in SHORT_PRETRAINING
    return {
        "agent.pi_lr": 1e-5 if suite in ("kitchen", "antmaze") or (suite == "adroit" and "-human" in task) else 1e-4,
        "agent.clip_eps": 0.5 if suite == "antmaze" else (0.1 if level == "hopper-medium-replay" else 0.25),
        "agent.omega": 0.9 if suite == "gym" else 0.7,
        "agent.pi_steps": 100 if suite == "antmaze" else 1000,
        "agent.entropy_weight": 0.01 if tips and suite == "gym" and level.endswith("-medium") else 0.0,
        "agent.v_steps": 200_000 if short else 2_000_000,
        "agent.q_steps": 200_000 if short else 2_000_000,
        "agent.bc_steps": 50_000 if short else 500_000,
        "normalize_obs": bool(tips) and level != "hopper-medium",
    }


def describe(dataset: str, tips: bool = False) -> str:
    """One line: what ``bppo_dataset_settings`` gives for ``dataset``."""
    vals = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in bppo_dataset_settings(dataset, tips).items())
    source = "paper Table 6 / Appendix K + the reference code's tips" if tips else "paper Table 6 / Appendix K, reference defaults"
    return f"BPPO settings for {task_name(dataset)} ({source}; keys set explicitly keep their value): {vals}"


def _lazy(refs: list, fn, field_type) -> FieldReference:
    """A reference whose value is fn(*values of refs), recomputed whenever it is read; setting the
    key to a value replaces it (ml_collections drops a reference's op on ``set``)."""
    return FieldReference(field_type(), field_type=field_type, op=_Op(lambda _, *v: field_type(fn(*v)), refs))


def follow_dataset(config):
    """Make every key of ``bppo_dataset_settings`` (and ``agent.dataset_settings``, the line saying
    what they are) a lazy function of ``config.dataset`` and ``config.agent.code_tips``;
    ``config.num_steps`` becomes their sum."""
    if "code_tips" not in config.agent:
        config.agent.code_tips = False  # True: the reference's code-comment tips (entropy, shorter pretraining, normalisation)
    refs = [config.get_ref("dataset"), config.agent.get_ref("code_tips")]
    for key in SETTING_KEYS:
        parent, name = (config.agent, key.split(".", 1)[1]) if key.startswith("agent.") else (config, key)
        parent[name] = _lazy(refs, lambda d, t, key=key: bppo_dataset_settings(d, t)[key], type(parent[name]))
    config.agent.dataset_settings = _lazy(refs, describe, str)
    ag = config.agent
    config.num_steps = ag.get_ref("v_steps") + ag.get_ref("q_steps") + ag.get_ref("bc_steps") + ag.get_ref("pi_steps")
    return config
