"""Mixtures of datasets: medium-expert and the contaminated expert-random-X / expert-cloned-X.

Recipe (Appendix A of the TD3BC++/BEAR++ paper and its reference script,
github.com/cangcn/TD3BCpp ``main.py``): ``expert-random-X`` is the expert
dataset whose final X% of transitions are replaced by the first X% of the random
dataset. With ``n`` the number of transitions of the base dataset,
``k = int(n * (X / 100))`` (rounded down, as the script's ``int(size * mix_ratio)``;
the paper's Table 3 counts confirm it, e.g. Hopper ER-70: 699,323 of 999,034): the
result holds the first ``n - k`` transitions of the base followed by ``k``
transitions of the other dataset, exact to the transition (so ``n`` in all).

Which ``k`` transitions of the other dataset: the **first** ``k`` for random
(and any other source), but the **last** ``k`` for cloned data
(``expert-cloned-X``): the script takes ``cloned[::-1][:k]`` because D4RL's
Adroit ``-cloned`` datasets hold the human demonstrations in their first half
and the behaviour-cloned agent's trajectories in their second half, and the
paper contaminates with the cloned *agent*. (The script also reverses their
order; the mixture here keeps the tail's own order, the same set of transitions,
which uniformly sampled training does not distinguish, with episodes kept whole.)
See :func:`part_taken`.

An episode cut by a boundary ends there with a truncation (timeout): its
successor observation is real, so bootstrapping through it stays correct; an
episode cut at its start (the first one of a tail) simply begins mid-way.
``medium-expert`` is the concatenation of medium and expert (2n transitions), as in D4RL.

Works on episode lists (dicts as :func:`offrl.data.dataset.episodes_to_transitions`
takes them) and on any two Minari datasets, local or remote (``open_minari``)::

    python -m offrl.data.mixtures --base=offrl/hopper/expert-v0 --other=offrl/hopper/random-v0 \
        --percent=30 --out=offrl/hopper/expert-random-30-v0
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import numpy as np

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def num_transitions(episodes: Sequence[dict]) -> int:
    return int(sum(len(ep["actions"]) for ep in episodes))


def _cut(ep: dict, t: int) -> dict:
    """The first ``t`` transitions of an episode (t >= 1); a cut inside the episode ends in a truncation."""
    n = len(ep["actions"])
    if t >= n:
        return ep
    out = dict(ep)
    out["observations"] = ep["observations"][: t + 1]
    for k in ("actions", "rewards", "terminations", "truncations"):
        out[k] = ep[k][:t]
    term = np.asarray(out["terminations"], bool).copy()
    trunc = np.asarray(out["truncations"], bool).copy()
    if not term[-1]:
        trunc[-1] = True
    out["terminations"], out["truncations"] = term, trunc
    return out


def take_transitions(episodes: Sequence[dict], count: int) -> list[dict]:
    """The first ``count`` transitions of an episode list, as episodes (the last one cut if needed)."""
    if count < 0:
        raise ValueError(f"cannot take {count} transitions")
    total = num_transitions(episodes)
    if count > total:
        raise ValueError(f"asked for the first {count} transitions of a dataset that holds only {total}")
    out, left = [], count
    for ep in episodes:
        if left <= 0:
            break
        n = len(ep["actions"])
        if n == 0:
            continue
        out.append(_cut(ep, left) if n > left else ep)
        left -= min(n, left)
    return out


def last_transitions(episodes: Sequence[dict], count: int) -> list[dict]:
    """The last ``count`` transitions of an episode list, as episodes (the first one cut at its start if needed)."""
    total = num_transitions(episodes)
    if not 0 <= count <= total:
        raise ValueError(f"asked for the last {count} transitions of a dataset that holds {total}")
    skip, out = total - count, []
    for ep in episodes:
        n = len(ep["actions"])
        if skip >= n:
            skip -= n
            continue
        if skip > 0:
            ep = dict(ep, observations=ep["observations"][skip:],
                      **{k: ep[k][skip:] for k in ("actions", "rewards", "terminations", "truncations")})
            skip = 0
        out.append(ep)
    return out


def replaced_count(n: int, percent: float) -> int:
    """How many of ``n`` transitions the contaminating dataset supplies for ``percent``%: ``int(n * (percent/100))``
    (rounded down, as the reference script and the paper's Table 3 counts)."""
    if not 0 <= percent <= 100:
        raise ValueError(f"contamination percentage must be in [0, 100], got {percent}")
    return int(n * (float(percent) / 100.0))


PARTS = ("head", "tail")


def part_taken(source: str) -> str:
    """Which end of the contaminating dataset the reference script takes: "tail" for cloned data (``'cloned' in``
    the source's name, as the script tests), "head" for everything else."""
    return "tail" if "cloned" in source else "head"


def contaminate(base: Sequence[dict], other: Sequence[dict], percent: float, part: str = "head") -> list[dict]:
    """``base`` with its final ``percent``% of transitions replaced by that many transitions of ``other``: its first
    ones (``part="head"``) or its last ones (``part="tail"``; see :func:`part_taken`).

    The percentage is of the base's transition count; ``other`` needs at least that many transitions.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    n = num_transitions(base)
    k = replaced_count(n, percent)
    taken = take_transitions(other, k) if part == "head" else last_transitions(other, k)
    return take_transitions(base, n - k) + taken


def concatenate(*parts: Sequence[dict]) -> list[dict]:
    return [ep for part in parts for ep in part]


# --------------------------------------------------------------------------- Minari in and out
def read_episodes(dataset_id: str, download: bool = True, max_transitions: Optional[int] = None) -> list[dict]:
    """A Minari dataset's episodes as dicts (observations T+1, actions, rewards, terminations, truncations)."""
    from offrl.data.minari_io import _episode_dict, open_minari

    ds = open_minari(dataset_id, download=download)
    out, total = [], 0
    for ep in ds.iterate_episodes():
        d = _episode_dict(ep, ds.observation_space)
        d = dict(
            observations=np.asarray(d["observations"], np.float32),
            actions=np.asarray(d["actions"], np.float32),
            rewards=np.asarray(d["rewards"], np.float64),
            terminations=np.asarray(d["terminations"], bool),
            truncations=np.asarray(d["truncations"], bool),
        )
        out.append(d)
        total += len(d["actions"])
        if max_transitions is not None and total >= max_transitions:
            break
    return out


def _source_facts(dataset_id: str, download: bool):
    from offrl.data.minari_io import _env_id, open_minari
    from offrl.data.scores import reference_scores

    ds = open_minari(dataset_id, download=download)
    meta = ds.storage.metadata
    ref_min, ref_max, _ = reference_scores(dataset_id, meta.get("ref_min_score"), meta.get("ref_max_score"))
    env_id, spec = _env_id(ds)
    return ds, ref_min, ref_max, spec if spec is not None else env_id


def mix_minari(base_id: str, other_id: str, percent: float, out_id: str, download: bool = True,
               description: Optional[str] = None, part: Optional[str] = None):
    """Write ``out_id``: ``base_id`` with its final ``percent``% replaced by as many transitions of ``other_id``,
    its first ones or its last ones (``part``; default :func:`part_taken` of ``other_id``: the tail of cloned data).

    Either source may be local or remote (fetched by ``open_minari``). Reference scores and
    the environment come from the base dataset. Refuses to overwrite ``out_id``.
    """
    from offrl.data.minari_io import local_dataset_exists, write_minari, datasets_root

    if local_dataset_exists(out_id):
        raise FileExistsError(f"dataset '{out_id}' already exists in {datasets_root()}; nothing was written")
    ds, ref_min, ref_max, env = _source_facts(base_id, download)
    n = int(ds.total_steps)
    k = replaced_count(n, percent)
    part = part or part_taken(other_id)
    base = read_episodes(base_id, download)
    other = read_episodes(other_id, download, max_transitions=k if part == "head" else None)
    eps = contaminate(base, other, percent, part)
    desc = description or (
        f"{base_id} ({n} transitions) with its final {percent}% ({k} transitions) replaced by the "
        f"{'first' if part == 'head' else 'last'} {k} transitions of {other_id} (offrl.data.mixtures, Appendix A "
        f"recipe of the TD3BC++ paper and its reference script)."
    )
    return write_minari(out_id, eps, env, ref_min, ref_max, desc)


def concat_minari(ids: Sequence[str], out_id: str, download: bool = True, description: Optional[str] = None):
    """Write ``out_id`` = the datasets ``ids`` one after the other (reference scores/env of the last one)."""
    from offrl.data.minari_io import local_dataset_exists, write_minari, datasets_root

    if local_dataset_exists(out_id):
        raise FileExistsError(f"dataset '{out_id}' already exists in {datasets_root()}; nothing was written")
    _, ref_min, ref_max, env = _source_facts(ids[-1], download)
    eps = concatenate(*[read_episodes(i, download) for i in ids])
    desc = description or f"Concatenation of {', '.join(ids)} (offrl.data.mixtures)."
    return write_minari(out_id, eps, env, ref_min, ref_max, desc)


def main(argv=None):
    p = argparse.ArgumentParser(description="Mix two Minari datasets (Appendix A recipe) or concatenate them.")
    p.add_argument("--base", required=True, help="dataset whose final X%% is replaced (e.g. the expert one)")
    p.add_argument("--other", required=True, help="dataset whose first (or last, --part) X%% replaces it")
    p.add_argument("--part", choices=PARTS, default=None,
                   help="which end of --other to take (default: tail for a cloned dataset, head otherwise, "
                        "as the reference script)")
    p.add_argument("--percent", type=float, help="X; leave out to concatenate base then other")
    p.add_argument("--out", required=True)
    p.add_argument("--no_download", action="store_true")
    a = p.parse_args(argv)
    if a.percent is None:
        concat_minari([a.base, a.other], a.out, download=not a.no_download)
    else:
        mix_minari(a.base, a.other, a.percent, a.out, download=not a.no_download, part=a.part)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
