"""Legacy D4RL HDF5 files: load into the transition pytree, or convert into a Minari dataset.

A D4RL file holds flat rows ``observations``, ``actions``, ``rewards``,
``terminals``, ``timeouts`` (absent in some v0 files: then all false), optionally
``next_observations`` and ``infos/*`` / ``metadata/*`` (read past, not used).

Rows are split into episodes after every row whose terminal or timeout flag is set.

- With ``next_observations``: every row is kept; an episode's T+1 observations
  are its rows' observations plus the last row's next observation, and each
  transition's next observation is taken from the file as it is.
- Without it (as D4RL's ``qlearning_dataset``): the next observation is the
  following row inside the episode. The final row of an episode that ends in a
  timeout, or with no flag at all (the file's last, unfinished episode), has no
  successor in the file and is dropped; the row before it then ends the episode
  as a timeout (bootstrapping allowed). A terminal row is kept (its successor is
  never bootstrapped from; the terminal observation is repeated as its placeholder).

Reference scores are D4RL's (``offrl.data.scores``), found from the task name:
the ``task`` argument, else the file name (``hopper_medium-v2.hdf5`` -> hopper).

Environments: locomotion files map to the Gymnasium ``<Env>-v5`` envs, Adroit files
(``pen|door|hammer|relocate-*``) to gymnasium-robotics' ``AdroitHand<Task>-v1`` (same
observation layout; checked by shape). AntMaze and Kitchen files have no gymnasium-robotics
environment with their observation layout (``offrl.data.robotics.NO_ENV_FOR_LEGACY``): loading one
without ``env_id`` is an error that says so and points to the Minari ports (``D4RL/antmaze/*``,
``D4RL/kitchen/*``).

    python -m offrl.data.d4rl --file=hopper_medium-v2.hdf5 --id=d4rl/hopper/medium-v2
"""
from __future__ import annotations

import argparse
import os
from typing import Optional

import numpy as np

from offrl.data.dataset import DatasetInfo, Transitions, episodes_to_transitions, to_device
from offrl.data.robotics import ADROIT_ENVS, NO_ENV_FOR_LEGACY, ensure_robotics
from offrl.data.scores import D4RL_REFERENCE, d4rl_task_name, reference_scores

# The Gymnasium environment each D4RL task is evaluated in (same observation layout).
D4RL_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5", "ant": "Ant-v5",
             **ADROIT_ENVS}


def task_from_path(path: str, task: Optional[str] = None) -> str:
    """A name ``d4rl_task_name`` understands: ``hopper_medium-v2.hdf5`` -> ``hopper-medium-v2``."""
    name = task if task is not None else os.path.splitext(os.path.basename(path))[0]
    return name.lower().replace("_", "-")


def read_d4rl(path: str) -> dict[str, np.ndarray]:
    """The flat arrays of a D4RL file (``timeouts`` filled with zeros when absent)."""
    import h5py

    with h5py.File(path, "r") as f:
        missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in f]
        if missing:
            raise ValueError(f"{path} is not a D4RL dataset: missing {', '.join(missing)} (has {', '.join(f.keys())})")
        out = {k: np.asarray(f[k][()]) for k in ("observations", "actions", "rewards", "terminals")}
        n = len(out["rewards"])
        out["timeouts"] = np.asarray(f["timeouts"][()]) if "timeouts" in f else np.zeros(n, bool)
        if "next_observations" in f:
            out["next_observations"] = np.asarray(f["next_observations"][()])
    out["rewards"] = out["rewards"].reshape(-1)
    out["terminals"] = out["terminals"].reshape(-1).astype(bool)
    out["timeouts"] = out["timeouts"].reshape(-1).astype(bool)
    out["observations"] = out["observations"].reshape(n, -1).astype(np.float32)
    out["actions"] = out["actions"].reshape(n, -1).astype(np.float32)
    if "next_observations" in out:
        out["next_observations"] = out["next_observations"].reshape(n, -1).astype(np.float32)
    for k, v in out.items():
        if len(v) != n:
            raise ValueError(f"{path}: '{k}' has {len(v)} rows, rewards has {n}")
    return out


def d4rl_episodes(raw: dict[str, np.ndarray]) -> tuple[list[dict], Optional[np.ndarray]]:
    """Split flat D4RL rows into episodes (see module docstring).

    Returns (episodes, next_observations aligned with the transitions those episodes
    flatten into, or None when derived from the following rows).
    """
    obs, act, rew = raw["observations"], raw["actions"], raw["rewards"]
    term, tout = raw["terminals"], raw["timeouts"] & ~raw["terminals"]
    nxt = raw.get("next_observations")
    n = len(rew)
    ends = np.flatnonzero(term | tout)
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends + 1, [n]])
    episodes, next_obs = [], []
    for a, b in zip(starts, stops):  # rows a..b-1
        if b <= a:
            continue
        last = b - 1
        is_term, is_tout = bool(term[last]), bool(tout[last])
        if nxt is not None:
            o = np.concatenate([obs[a:b], nxt[last:last + 1]])
            rows = slice(a, b)
            next_obs.append(nxt[a:b])
        elif is_term:
            o = np.concatenate([obs[a:b], obs[last:last + 1]])
            rows = slice(a, b)
        else:  # timeout or unfinished: the final row has no successor in the file
            if b - a < 2:
                continue
            o = obs[a:b]
            rows = slice(a, b - 1)
        t = rows.stop - rows.start
        terms = np.zeros(t, bool)
        truncs = np.zeros(t, bool)
        if is_term:
            terms[-1] = True
        elif is_tout or nxt is None:
            truncs[-1] = True
        episodes.append(dict(observations=o, actions=act[rows], rewards=rew[rows].astype(np.float64),
                             terminations=terms, truncations=truncs))
    return episodes, (np.concatenate(next_obs) if nxt is not None and next_obs else None)


def _env_for(task: Optional[str], obs_dim: int, act_dim: int, env_id: Optional[str], path: str = ""):
    if env_id is not None:
        if env_id.startswith(("Adroit", "AntMaze", "FrankaKitchen")):
            ensure_robotics()
        return env_id
    if task in NO_ENV_FOR_LEGACY:
        raise ValueError(
            f"{path or task}: no gymnasium-robotics environment matches this D4RL {task} file: "
            f"{NO_ENV_FOR_LEGACY[task]}. Use Minari's port instead (e.g. --dataset=D4RL/{task}/"
            f"{'umaze-v1' if task == 'antmaze' else 'complete-v2'}), or pass env_id to evaluate in an env of your own"
        )
    if task not in D4RL_ENVS:
        return None
    if task in ADROIT_ENVS:
        ensure_robotics()
    try:
        import gymnasium as gym

        env = gym.make(D4RL_ENVS[task])
        ok = env.observation_space.shape == (obs_dim,) and env.action_space.shape == (act_dim,)
        env.close()
        return D4RL_ENVS[task] if ok else None
    except Exception:
        return None


def load_d4rl(path: str, discount: float = 0.99, task: Optional[str] = None,
              env_id: Optional[str] = None) -> tuple[Transitions, DatasetInfo]:
    """(Transitions, DatasetInfo) from a D4RL HDF5 file; D4RL reference scores from ``task`` or the file name."""
    raw = read_d4rl(path)
    episodes, next_obs = d4rl_episodes(raw)
    arrays, ep_returns, ep_lengths = episodes_to_transitions(episodes, discount=discount)
    if next_obs is not None:
        arrays["next_observations"] = next_obs
    name = task_from_path(path, task)
    ref_min, ref_max, convention = reference_scores(name, None, None)
    d4rl_task = d4rl_task_name(name)
    obs_dim, act_dim = int(arrays["observations"].shape[1]), int(arrays["actions"].shape[1])
    env_id = _env_for(d4rl_task, obs_dim, act_dim, env_id, path)
    low, high = -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32)
    if env_id is not None:
        import gymnasium as gym

        env = gym.make(env_id)
        low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
        env.close()
    info = DatasetInfo(
        dataset_id=path, env_id=env_id, obs_dim=obs_dim, act_dim=act_dim, action_low=low, action_high=high,
        episode_returns=ep_returns, episode_lengths=ep_lengths, ref_min_score=ref_min, ref_max_score=ref_max,
        score_convention=convention if d4rl_task is None else "D4RL reference returns (task from the file name)",
    )
    return to_device(arrays), info


def d4rl_to_minari(path: str, dataset_id: str, task: Optional[str] = None, env_id: Optional[str] = None,
                   description: Optional[str] = None):
    """Write a D4RL file as the Minari dataset ``dataset_id`` (with D4RL's reference scores); refuses to overwrite.

    Needs a Gymnasium environment with the file's observation/action shapes (``env_id``, or
    found from the task name for the locomotion tasks).
    """
    from offrl.data.minari_io import write_minari

    raw = read_d4rl(path)
    episodes, _ = d4rl_episodes(raw)
    name = task_from_path(path, task)
    d4rl_task = d4rl_task_name(name)
    env_id = _env_for(d4rl_task, raw["observations"].shape[1], raw["actions"].shape[1], env_id, path)
    if env_id is None:
        raise ValueError(f"no Gymnasium environment known for {path} (task '{name}'): pass env_id")
    ref_min, ref_max = D4RL_REFERENCE[d4rl_task] if d4rl_task else (None, None)
    desc = description or f"Imported from the D4RL file {os.path.basename(path)} by offrl.data.d4rl."
    return write_minari(dataset_id, episodes, env_id, ref_min, ref_max, desc)


def main(argv=None):
    p = argparse.ArgumentParser(description="Convert a legacy D4RL HDF5 file into a Minari dataset.")
    p.add_argument("--file", required=True)
    p.add_argument("--id", required=True, help="Minari id to write, e.g. d4rl/hopper/medium-v2")
    p.add_argument("--task", default=None, help="D4RL task name if the file name does not say it")
    p.add_argument("--env", default=None, help="Gymnasium id (default: from the task)")
    a = p.parse_args(argv)
    d4rl_to_minari(a.file, a.id, a.task, a.env)
    print(f"wrote {a.id}")


if __name__ == "__main__":
    main()
