"""Minari datasets in and out: load one (locally or by download) into the data pytree, write one."""
from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import numpy as np

from offrl.data.dataset import DatasetInfo, Transitions, episodes_to_transitions, to_device
from offrl.data.scores import reference_scores


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is neither on disk nor could be fetched."""


def datasets_root() -> str:
    """The directory Minari searches (``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return root if root else os.path.join(os.path.expanduser("~"), ".minari", "datasets")


def local_dataset_exists(dataset_id: str) -> bool:
    return os.path.isdir(os.path.join(datasets_root(), dataset_id, "data"))


def open_minari(dataset_id: str, download: bool = True):
    """Open a Minari dataset, downloading it when absent and ``download`` is set.

    Raises :class:`DatasetNotFoundError` naming the dataset, the directory searched and
    what to do, when it is not on disk and cannot be fetched.
    """
    import minari

    if local_dataset_exists(dataset_id):
        return minari.load_dataset(dataset_id)
    root = datasets_root()
    hint = (
        f"build it locally (python -m offrl.data.build, for the offrl/<env>/<level>-v0 suites), "
        f"copy it into {root}, or set MINARI_DATASETS_PATH to the directory that holds it"
    )
    if not download:
        raise DatasetNotFoundError(
            f"dataset '{dataset_id}' is not in {root} (MINARI_DATASETS_PATH) and downloading is off: {hint}"
        )
    if dataset_id.startswith("offrl/"):
        raise DatasetNotFoundError(
            f"dataset '{dataset_id}' is not in {root} (MINARI_DATASETS_PATH); offrl datasets are "
            f"built locally, not downloaded: {hint}"
        )
    try:  # Minari's remote is on Hugging Face: its per-request retry warnings are said once, by the error below
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:
        hub_logging = None
    level = hub_logging.get_verbosity() if hub_logging else None
    if hub_logging:
        hub_logging.set_verbosity_error()
    try:
        minari.download_dataset(dataset_id)
    except Exception as e:  # network down, unknown remote id, ...
        raise DatasetNotFoundError(
            f"dataset '{dataset_id}' is not in {root} (MINARI_DATASETS_PATH) and could not be "
            f"downloaded ({type(e).__name__}: {e}). Go online and retry, check the id with "
            f"`minari list remote`, or {hint}"
        ) from e
    finally:
        if hub_logging:
            hub_logging.set_verbosity(level)
    return minari.load_dataset(dataset_id)


def _episode_dict(ep, observation_space=None) -> dict:
    """An episode as plain arrays; dict observations (AntMaze, Kitchen) flattened in ``observation_space``'s
    key order, as the evaluation env's FlattenObservation does (``offrl.data.robotics``)."""
    obs, act = ep.observations, ep.actions
    if isinstance(act, dict):
        raise ValueError("dictionary actions are not supported")
    if isinstance(obs, dict):
        if observation_space is None:
            raise ValueError("dictionary observations need the dataset's observation space to be flattened")
        from offrl.data.robotics import flatten_observations

        obs = flatten_observations(observation_space, obs)
    return {
        "observations": obs,
        "actions": act,
        "rewards": ep.rewards,
        "terminations": ep.terminations,
        "truncations": ep.truncations,
    }


def _env_id(ds) -> tuple[Optional[str], Optional[object]]:
    for getter in (lambda: ds._eval_env_spec, lambda: ds.env_spec):
        try:
            spec = getter()
        except Exception:
            spec = None
        if spec is not None:
            return spec.id, spec
    return None, None


def load_minari(
    dataset_id: str, discount: float = 0.99, download: bool = True
) -> tuple[Transitions, DatasetInfo]:
    """Load a Minari dataset into the transition pytree (on the default device) plus its info."""
    ds = open_minari(dataset_id, download=download)
    obs_space = ds.observation_space
    arrays, ep_returns, ep_lengths = episodes_to_transitions(
        [_episode_dict(ep, obs_space) for ep in ds.iterate_episodes()], discount=discount
    )
    meta = ds.storage.metadata
    ref_min, ref_max, convention = reference_scores(
        dataset_id, meta.get("ref_min_score"), meta.get("ref_max_score")
    )
    env_id, env_spec = _env_id(ds)
    from offrl.data.robotics import evaluation_spec

    env_spec = evaluation_spec(env_spec, dataset_id, obs_space)
    space = ds.action_space
    info = DatasetInfo(
        dataset_id=dataset_id,
        env_id=env_id,
        obs_dim=int(arrays["observations"].shape[1]),
        act_dim=int(arrays["actions"].shape[1]),
        action_low=np.asarray(space.low, np.float32).reshape(-1),
        action_high=np.asarray(space.high, np.float32).reshape(-1),
        episode_returns=ep_returns,
        episode_lengths=ep_lengths,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        score_convention=convention,
        env_spec=env_spec,
    )
    return to_device(arrays), info


def write_minari(
    dataset_id: str,
    episodes: Sequence[dict],
    env,
    ref_min_score: Optional[float] = None,
    ref_max_score: Optional[float] = None,
    description: str = "",
    algorithm_name: str = "offrl",
):
    """Write episodes (dicts as in :func:`episodes_to_transitions`, plus optional ``seed``) as a Minari dataset.

    ``env`` is a gymnasium id, env or EnvSpec. Refuses to overwrite an existing dataset.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    if local_dataset_exists(dataset_id):
        raise FileExistsError(
            f"dataset '{dataset_id}' already exists in {datasets_root()}: delete it first "
            f"(minari.delete_dataset('{dataset_id}')) or choose another id"
        )
    buffers = [
        EpisodeBuffer(
            id=i,
            seed=ep.get("seed"),
            observations=np.asarray(ep["observations"], np.float32),
            actions=np.asarray(ep["actions"], np.float32),
            rewards=list(np.asarray(ep["rewards"], np.float64)),
            terminations=list(np.asarray(ep["terminations"], bool)),
            truncations=list(np.asarray(ep["truncations"], bool)),
            infos={},
        )
        for i, ep in enumerate(episodes)
    ]
    kwargs = {}
    if ref_max_score is not None:
        kwargs = dict(ref_min_score=ref_min_score, ref_max_score=ref_max_score)
    with warnings.catch_warnings():  # minari nags about optional metadata (permalink, e-mail, eval env)
        warnings.simplefilter("ignore", UserWarning)
        return minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env,
            algorithm_name=algorithm_name,
            author="offrl",
            description=description,
            **kwargs,
        )
