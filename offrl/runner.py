"""The host loop around the compiled runtime: chunks, evaluation, logging, checkpoints, resume.

``run_experiment(config, workdir)`` is what ``experiments/launch.py`` calls. Every
input is checked (config values, algorithm, dataset, environment) before anything
is written, so a bad invocation leaves no half-made run directory behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from offrl import checkpoint, compile_cache, config as config_lib
from offrl.algos import Algorithm, get_algorithm
from offrl.data import load_dataset, preprocess
from offrl.data.dataset import DatasetInfo, Transitions
from offrl.data.preprocess import Preprocessing
from offrl.data.scores import normalized_score, normalized_spread
from offrl.sweep import label, members as make_members, parse_grid
from offrl.envpool import make_envs
from offrl.evaluation import EvalResult, PolicyCopy, StateCopy, evaluate, host_device, make_policy_fn
from offrl.logger import Logger, check_wandb, diverged_note, finite_mean, plot_curve, score_table
from offrl.train import fetch, from_local_members, local_members, make_train, replicate, seed_keys, shard_seeds, unaliased

CHECKPOINT = "checkpoint.msgpack"
POLICY_FILE = "policy.json"


class RunInterrupted(Exception):
    """SIGINT (Ctrl-C) or SIGTERM stopped a run at a chunk boundary, once its checkpoint was written."""

    def __init__(self, step: int):
        super().__init__(f"interrupted at update {step}; rerun the same command to resume")
        self.step = step


@contextlib.contextmanager
def _stop_requests():
    """{"signal": name} once SIGINT or SIGTERM arrives: the run then stops at the next chunk boundary
    with a checkpoint; a second signal raises KeyboardInterrupt at once (no checkpoint). Only in a
    single process's main thread (under jax.distributed every process must stop at the same update)."""
    asked: dict = {}
    if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
        yield asked
        return

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked["signal"] = signal.Signals(signum).name

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield asked
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, resolved and checked, before anything is written."""

    config: Any
    algo: Any
    data: Transitions
    info: DatasetInfo
    pre: Preprocessing
    env: Any  # gymnasium EnvSpec or id used for evaluation
    compile_cache: Optional[str] = None  # the persistent compilation cache's directory (None: off)


def prepare(config, algo: Optional[Algorithm] = None) -> Experiment:
    """``algo``: an :class:`Algorithm` record to run instead of the registered ``config.algo``
    (e.g. one written in a notebook); its ``name`` must equal ``config.algo``."""
    config_lib.validate(config)
    check_wandb(config)
    if config.get("eval_overlap") == "on" and host_device() is None:
        raise ValueError("config.eval_overlap=on evaluates on the host CPU, but this process has no CPU backend: "
                         "add cpu to JAX_PLATFORMS (e.g. JAX_PLATFORMS=cuda,cpu) or set config.eval_overlap=auto")
    if algo is None:
        algo = get_algorithm(config.algo)
    elif not isinstance(algo, Algorithm) or algo.name != config.algo:
        raise ValueError(f"algo must be an Algorithm record named config.algo={config.algo!r}, got {algo!r:.60}")
    algo.validate(config)
    parse_grid(config.grid, config, algo.sweepable)
    cache = compile_cache.check(config.get("compile_cache", compile_cache.AUTO))
    data, info = load_dataset(config.dataset, config.discount, config.download, config.dataset_size)
    data, info = algo.prepare_data(data, info, config)
    data, pre = preprocess(data, info, config)
    env = info.env_spec if info.env_spec is not None else info.env_id
    if env is None:
        raise ValueError(
            f"dataset '{config.dataset}' names no environment, so its policies cannot be evaluated; "
            f"use a dataset that stores its env spec"
        )
    return Experiment(config, algo, data, info, pre, env, cache)


class Snapshot(NamedTuple):
    """A copy of this process's members' policies (``EvalContext.snapshot``), evaluated while training goes on."""

    idx: np.ndarray  # the members it holds
    copy: StateCopy


class EvalContext:
    """What an algorithm's ``after_chunk`` hook may use between compiled chunks.

    The evaluation environments (and their worker processes, ``config.eval_workers``) are made
    once per size and kept in ``envs`` for the next evaluations; ``close`` ends them.
    ``overlaps``/``snapshot`` are the runner's: under ``config.eval_overlap`` it evaluates a copy of the
    policies on the host CPU while the accelerator trains the next chunk."""

    def __init__(self, exp: Experiment, policy_fn, asked: Optional[dict] = None):
        self.exp, self.policy_fn = exp, policy_fn
        self.asked = {} if asked is None else asked  # non-empty once SIGINT / SIGTERM asked the run to stop
        self.seconds = 0.0  # wall time spent evaluating (reported as a share of the run)
        self.envs = {}  # number of environments -> offrl.envpool environments
        self.host = PolicyCopy(exp.algo, exp.config, exp.data.observations.shape[-1])
        self.overlap = None  # whether evaluations overlap training, decided at the first (config.eval_overlap)
        self.platform = jax.devices()[0].platform  # where training runs
        self.timing = None  # under "auto" on an accelerator: (host, accelerator) seconds per policy call
        self._trainer = None  # the thread that runs the next chunk while this one evaluates (``dispatch``)

    def overlaps(self, states) -> bool:
        """Whether to evaluate ``states`` from a host copy while training goes on: ``config.eval_overlap``
        on/off, or auto: on an accelerator, when one policy call on the host CPU is no slower than on the
        accelerator (the first evaluation times both)."""
        if self.overlap is None:
            mode = self.exp.config.get("eval_overlap", "auto")
            if mode != "auto" or self.platform == "cpu" or host_device() is None:
                self.overlap = mode == "on"
            else:
                self.timing = self._time_policy(local_members(states)[1])
                self.overlap = self.timing[0] <= self.timing[1]
                if jax.process_count() > 1:  # every process as process 0 decided (same numerics, same order of work)
                    from jax.experimental import multihost_utils

                    self.overlap = bool(multihost_utils.broadcast_one_to_all(np.asarray(self.overlap)))
        return self.overlap

    def _time_policy(self, states) -> tuple[float, float]:
        num = jax.tree_util.tree_leaves(states)[0].shape[0]
        obs = np.zeros((num, self.exp.config.eval_episodes, self.exp.data.observations.shape[-1]), np.float32)
        keys = jax.random.split(jax.random.PRNGKey(0), num)
        copy = self.host.copy(states)

        def best(fn, *args):
            np.asarray(fn(*args))  # compiled (the first evaluation would compile it anyway)
            times = []
            for _ in range(5):
                t = time.perf_counter()
                np.asarray(fn(*args))
                times.append(time.perf_counter() - t)
            return min(times)

        with jax.default_device(copy.device):
            host = best(self.host, copy, jax.device_put(obs, copy.device), jax.device_put(keys, copy.device))
        return host, best(self.policy_fn, states, obs, keys)

    def stop_requested(self) -> bool:
        """Whether SIGINT / SIGTERM has asked the run to stop: a long host step in ``after_chunk`` (e.g. a
        pre-generation over the dataset) can check it between its pieces and raise KeyboardInterrupt
        once what it has done is saved, instead of finishing first."""
        return bool(self.asked)

    def dispatch(self, run, *args) -> Future:
        """``run(*args)``, the next chunk, started before an overlapping evaluation. XLA:GPU drives a
        compiled loop from the host thread that launched it (jax-ml/jax#2491), so on a GPU the call
        returns only once the whole chunk has trained: called here, the evaluation would start after
        it. A thread of its own lets this thread evaluate meanwhile. Under jax.distributed it runs here,
        in order: every process must launch its computations in the same order."""
        if jax.process_count() > 1:
            done = Future()
            done.set_result(run(*args))
            return done
        if self._trainer is None:
            self._trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="offrl-chunk")
        return self._trainer.submit(run, *args)

    def snapshot(self, states) -> Snapshot:
        """A copy of what this process's members' policies read, on the host CPU (``evaluate`` takes it)."""
        idx, states = local_members(states)
        return Snapshot(idx, self.host.copy(states))

    def evaluate(self, states, num_episodes: Optional[int] = None, base_seed: Optional[int] = None) -> EvalResult:
        """Evaluate ``states`` (the run's seed-stacked states, or a :class:`Snapshot` of them)."""
        c, info = self.exp.config, self.exp.info
        t = time.time()
        if isinstance(states, Snapshot):  # evaluated on the host CPU, by the policy compiled for the copy
            idx, states, policy_fn, device = states.idx, states.copy, self.host, states.copy.device
        else:  # under jax.distributed: this process's members only
            (idx, states), policy_fn, device = local_members(states), self.policy_fn, None
        episodes = num_episodes or c.eval_episodes
        n = len(idx) * episodes
        if n not in self.envs:
            self.envs[n] = make_envs(self.exp.env, n, c.get("eval_workers", 0))
        with contextlib.nullcontext() if device is None else jax.default_device(device):
            res = evaluate(
                policy_fn,
                states,
                self.exp.env,
                episodes,
                c.eval_seed if base_seed is None else base_seed,
                self.exp.pre,
                info.ref_min_score,
                info.ref_max_score,
                envs=self.envs[n],
            )
        if jax.process_count() > 1:  # every process gets every member's result, in member order
            from jax.experimental import multihost_utils

            order = np.asarray(multihost_utils.process_allgather(idx)).reshape(-1)
            res = EvalResult(*(np.asarray(multihost_utils.process_allgather(np.asarray(x)))
                               .reshape((-1,) + np.shape(x)[1:])[np.argsort(order)] for x in res))
        self.seconds += time.time() - t
        return res

    def close(self) -> None:
        if self._trainer is not None:  # a chunk still training (the run stopped by an error) finishes first
            self._trainer.shutdown(wait=True)
            self._trainer = None
        for envs in self.envs.values():
            envs.close()
        self.envs = {}


class _NoLogger:
    """The logger of processes other than 0 under jax.distributed: process 0 writes metrics.jsonl."""

    def log(self, record):
        pass

    def truncate_after(self, step):
        pass

    def close(self, summary=None):
        pass


def _plan(stages, eval_interval: int, cuts: Optional[dict] = None):
    """[(stage name, start, length)] chunks: each stage is cut every eval_interval updates, and the
    stage called ``name`` also every ``cuts[name]`` updates (an algorithm's ``chunk_every(config)``,
    e.g. so that BPPO's ``after_chunk`` can select policies online more often than the runner evaluates)."""
    chunks = []
    cuts = cuts or {}
    unknown = set(cuts) - {st.name for st in stages}
    if unknown:
        raise ValueError(f"chunk_every names stages that do not exist: {sorted(unknown)}")
    for st in stages:
        start = 0
        periods = [eval_interval] + ([int(cuts[st.name])] if cuts.get(st.name) else [])
        while start < st.num_steps:
            length = min(min(p - start % p for p in periods), st.num_steps - start)
            chunks.append((st.name, start, length))
            start += length
    return chunks


def scored_evals(evals: list[dict]) -> list[dict]:
    """The evaluations a reported score averages: only those of the stage that produced the final
    policy (the last evaluated stage), so e.g. BPPO's behaviour-cloning evaluations never enter it."""
    if not evals:
        return []
    return [e for e in evals if e["stage"] == evals[-1]["stage"]]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def changed_keys(saved: dict, config) -> list:
    """The dotted keys whose values differ between a run's saved config.json and ``config``, leaving out the
    keys that only change how a run executes (``offrl.config.EXECUTION_ONLY``; absent in an older file)."""
    old, new = _flat(saved), _flat(json.loads(config.to_json()))
    return sorted(k for k in old.keys() | new.keys()
                  if k not in config_lib.EXECUTION_ONLY and old.get(k, "<absent>") != new.get(k, "<absent>"))


def _check_workdir(workdir: str, config, algo: Algorithm, ckpt_path: Optional[str] = None) -> tuple[bool, Optional[int]]:
    """(resume, num_steps the run had) when ``workdir`` holds a checkpoint of this config (at
    ``ckpt_path``: under jax.distributed, this process's own), or of this config with a smaller
    ``num_steps`` (the run continues); error on any other run."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.exists(cfg_path):
        if os.path.isdir(workdir) and os.listdir(workdir):
            raise FileExistsError(f"workdir {workdir} is not empty and holds no offrl run: choose another --workdir")
        return False, None
    with open(cfg_path) as f:
        saved = json.load(f)
    old, new = _flat(saved), _flat(json.loads(config.to_json()))
    changed = changed_keys(saved, config)
    has_ckpt = os.path.exists(ckpt_path or os.path.join(workdir, CHECKPOINT))
    if old.get("algo") != new.get("algo"):
        raise FileExistsError(
            f"workdir {workdir} holds a {old.get('algo') or 'different'} run, not {config.algo}: choose another --workdir "
            f"(or rerun it with its own config, {os.path.join(workdir, 'config.json')})"
        )
    if not changed:
        return has_ckpt, None
    if changed == ["num_steps"] and new["num_steps"] > old["num_steps"]:
        before = algo.stages(_with_num_steps(config, old["num_steps"]))
        after = algo.stages(config)
        same_head = [(s.name, s.num_steps) for s in before[:-1]] == [(s.name, s.num_steps) for s in after[:-1]]
        if len(before) == len(after) and same_head and before[-1].name == after[-1].name:
            return has_ckpt, old["num_steps"]
        raise FileExistsError(
            f"workdir {workdir}: raising num_steps changes a stage before {config.algo}'s last one, so the run "
            f"cannot continue: choose another --workdir"
        )
    diff = ", ".join(f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in changed[:4])
    raise FileExistsError(
        f"workdir {workdir} holds a run with a different config ({diff}{', ...' if len(changed) > 4 else ''}): "
        f"choose another --workdir (or delete it to start over); only a larger num_steps continues a run"
    )


def _check_workdir_path(workdir: str) -> None:
    """ValueError (one line) when ``workdir`` cannot become the run's directory: it is a file, or the
    nearest part of its path that exists is a file or is not writable. Creates nothing, so a run that
    fails later (bad data, bad grid) leaves no empty directory behind."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"workdir {workdir} is a file: give a directory (new or an earlier run's)")
    base = path
    while not os.path.exists(base):
        base = os.path.dirname(base)
    if not os.path.isdir(base):
        raise ValueError(f"workdir {workdir} cannot be created: {base} is a file: give a directory path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"workdir {workdir} cannot be created: {base} is not writable: give a writable directory")


def _make_dir(path: str, workdir: str) -> None:
    """``os.makedirs``, with what the checks above cannot see (e.g. a read-only file system) as one line."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"workdir {workdir} cannot be created ({e.strerror or e}): give a writable directory") from None


def _with_num_steps(config, num_steps: int):
    c = config.copy_and_resolve_references()
    c.num_steps = num_steps
    return c


def _remaining(chunks, done: int):
    """The chunks still to run once ``done`` updates are done (a chunk cut by ``done`` starts there)."""
    out, g = [], 0
    for name, start, length in chunks:
        if g + length > done:
            skip = max(done - g, 0)
            out.append((name, start + skip, length - skip))
        g += length
    return out


def _windows(done: int, length: int, every: int) -> list[tuple[int, int]]:
    """[(lo, hi)] offsets in a chunk of ``length`` updates starting after update ``done``: cut where the
    global update count is a multiple of ``every`` and at the chunk's end (``every`` 0: the whole chunk)."""
    if not every:
        return [(0, length)]
    cuts = list(range(every - done % every, length, every)) + [length]
    return list(zip([0] + cuts[:-1], cuts))


def _per_member(values) -> list:
    """(members, ...) -> each member's mean over its finite entries (None when it has none)."""
    v = np.asarray(values, np.float64)
    return [finite_mean(row) for row in v.reshape(v.shape[0], -1)]


def _point_summary(name: str, raw: np.ndarray, ok: np.ndarray, info: DatasetInfo) -> str:
    """'alpha=1 13.2 ± 7.1': a grid point's score (normalised if the dataset has references, else
    return) over its finite members, for the progress line."""
    if not ok.any():
        return f"{name} n/a"
    stats, _ = _stats(np.asarray(raw, np.float64), ok, info)
    if stats["normalized_mean"] is not None:
        return f"{name} {stats['normalized_mean']:.1f} ± {stats['normalized_std']:.1f}"
    return f"{name} return {stats['raw_mean']:.1f}"


def _nonfinite(values) -> np.ndarray:
    """(members,) bool: which members have a non-finite entry in ``values`` (leading axis: members)."""
    v = np.asarray(values, np.float64)
    return ~np.isfinite(v.reshape(v.shape[0], -1)).all(axis=1)


def _stats(raw: np.ndarray, ok: np.ndarray, info: DatasetInfo) -> tuple[dict, Optional[np.ndarray]]:
    """(mean/std of the raw and normalised per-seed scores over the members ``ok``, normalised scores or None)."""
    has_ref = info.ref_max_score is not None
    norm = normalized_score(raw, info.ref_min_score, info.ref_max_score) if has_ref else None
    good = raw[ok]
    return dict(
        raw_mean=float(good.mean()) if ok.any() else None,
        raw_std=float(good.std()) if ok.any() else None,
        normalized_mean=float(np.asarray(norm)[ok].mean()) if has_ref and ok.any() else None,
        normalized_std=float(normalized_spread(good.std(), info.ref_min_score, info.ref_max_score))
        if has_ref and ok.any() else None,
    ), norm


def _summary(exp: Experiment, evals: list[dict], point: dict, idx, diverged: Optional[dict] = None,
             extra: Optional[dict] = None) -> dict:
    """The score row of one grid point (members ``idx`` of every evaluation); statistics are over
    the members that did not diverge (``diverged``: {member index: record}), which are listed.
    ``extra``: the algorithm's extra scores, {name: per-member raw returns of every member}."""
    c, info = exp.config, exp.info
    last = scored_evals(evals)[-c.report_last :]
    raw = np.mean([np.asarray(e["raw"], np.float64)[idx] for e in last], axis=0)  # per seed
    members = np.arange(idx.start, idx.stop)
    bad = {int(m): (diverged or {})[str(m)] for m in members if str(m) in (diverged or {})}
    alive = np.array([int(m) not in bad for m in members])  # members that did not diverge
    ok = alive & np.isfinite(raw)
    seeds = [c.seed + i for i in range(c.num_seeds)]
    has_ref = info.ref_max_score is not None
    stats, norm = _stats(raw, ok, info)
    extras = {}
    for name, values in (extra or {}).items():
        x = np.asarray(values, np.float64).reshape(-1)[idx]
        x_stats, x_norm = _stats(x, alive & np.isfinite(x), info)
        extras[name] = dict(**x_stats, per_seed_raw=x.tolist(),
                            per_seed_normalized=x_norm.tolist() if has_ref else [None] * len(x))
    row = {
        "algo": c.algo,
        "variant": exp.algo.variant_name(c),
        "dataset": c.dataset,
        "hparams": point,
        "score_convention": info.score_convention,
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
        "evaluations_averaged": len(last),
        "episodes_per_evaluation": c.eval_episodes,
        **stats,
        "per_seed_raw": raw.tolist(),
        "per_seed_normalized": norm.tolist() if has_ref else [None] * len(raw),
        "seeds": seeds,
        "finite_seeds": int(ok.sum()),
        "diverged": [dict(seed=seeds[int(m) - idx.start], **bad[int(m)]) for m in members if int(m) in bad]
        + [dict(seed=seeds[i], first_nonfinite_eval=None, first_nonfinite_metric=None)
           for i, m in enumerate(members) if int(m) not in bad and not np.isfinite(raw[i])],
    }
    if extras:  # the algorithm's further named scores, next to (never instead of) the score above
        row["extra_scores"] = extras
    return row


def results_note(config, stages, num_transitions: int, row: dict, evals: list[dict]) -> str:
    """What results.md's table means: dataset and size, budget per stage, seeds, which evaluations
    the score averages, episodes, and that ± is the standard deviation over seeds."""
    scored = scored_evals(evals)
    last = scored[-config.report_last:]
    built = f", built with config.dataset_size={config.dataset_size}" if config.dataset.startswith("offrl/") else ""
    per_stage = ", ".join(f"{st.name} {st.num_steps}" for st in stages)
    return (f"- Dataset: {config.dataset} ({num_transitions} transitions trained on{built}).\n"
            f"- Budget: {sum(st.num_steps for st in stages)} updates ({per_stage}), batch {config.batch_size}.\n"
            f"- Seeds: {', '.join(str(x) for x in row['seeds'])} per row, trained together in one vmapped program.\n"
            f"- Score: per seed, the mean of the last {len(last)} of the {len(scored)} evaluations of the "
            f"'{last[-1]['stage'] if last else '-'}' stage (updates {', '.join(str(e['global_step']) for e in last)}), "
            f"{config.eval_episodes} episodes each; a row shows the mean over seeds ± the standard deviation over seeds "
            f"(ddof=0). Normalisation: {row['score_convention']}.\n")


def extra_note(rows: list[dict]) -> str:
    """One line per extra score of each row (``Algorithm.extra_scores``), beside the main score; '' if none."""
    out = []
    for r in rows:
        for name, x in r.get("extra_scores", {}).items():
            where = label(r.get("hparams", {}))
            if x["raw_mean"] is None:
                val = "n/a"
            elif x["normalized_mean"] is not None:
                val = f"normalised {x['normalized_mean']:.1f} ± {x['normalized_std']:.1f}, raw {x['raw_mean']:.1f} ± {x['raw_std']:.1f}"
            else:
                val = f"raw {x['raw_mean']:.1f} ± {x['raw_std']:.1f}"
            out.append(f"- extra score `{name}`{' (' + where + ')' if where != '-' else ''}: {val} "
                       f"(per seed raw {[round(v, 1) for v in x['per_seed_raw']]}); not the reported score")
    return ("\n" + "\n".join(out) + "\n") if out else ""


def timing_line(t: dict) -> str:
    """The run's last line: where its wall time went (``summary['timing']``)."""
    share = lambda x: f"{100 * x / max(t['wall_s'], 1e-9):.0f}%"  # noqa: E731
    hidden = (f", {t['evaluation_during_training_s']:.0f}s of it while training ran (config.eval_overlap)"
              if t["evaluation_during_training_s"] else "")
    cache = ((f"{t['programs_from_cache']} of {t['programs']} programs loaded from the compile cache {t['compile_cache']}"
              + (f", {t['compile_seconds_saved']:.0f}s of compiling saved" if t["programs_from_cache"] else ""))
             if t["compile_cache"] else "no compile cache")
    # what no column holds: diagnostics, logging, checkpoints, and any launch that blocked its thread
    rest = max(t["wall_s"] - t["data_s"] - t["training_s"] - t["evaluation_s"], 0.0)
    return (f"wall time {t['wall_s']:.0f}s: data {t['data_s']:.0f}s ({share(t['data_s'])}), training {t['training_s']:.0f}s "
            f"waited for ({share(t['training_s'])}, compilation included), evaluation {t['evaluation_s']:.0f}s "
            f"({share(t['evaluation_s'])}{hidden}), the rest {rest:.0f}s ({share(rest)}: "
            f"host work between chunks); compilation {t['compilation_s']:.0f}s ({cache})")


def run_experiment(config, workdir: str, stop_after: Optional[int] = None, out=sys.stdout,
                   algo: Optional[Algorithm] = None) -> dict:
    """Train ``config.num_seeds`` seeds in one vmapped program, evaluating and logging; returns the summary.

    ``stop_after`` ends the run (with a checkpoint) once that many updates are done: used
    to test resuming. SIGINT (Ctrl-C) or SIGTERM ends it at the next chunk boundary with a
    checkpoint of that update and raises :class:`RunInterrupted`; a second signal raises
    KeyboardInterrupt at once. ``algo``: an unregistered :class:`Algorithm` record to run (its name is
    ``config.algo``), e.g. one written in a notebook. Rerunning a workdir resumes it; rerunning
    it with only ``num_steps`` raised continues it from its checkpoint. Members whose training
    metrics or evaluation returns become non-finite are reported as diverged, and the
    statistics are over the others.
    """
    contexts = []  # the run's EvalContext, whose environments (worker processes) end with the run
    try:
        with _stop_requests() as asked:
            return _run_experiment(config, workdir, stop_after, out, algo, contexts, asked)
    finally:
        for ctx in contexts:
            ctx.close()


def _run_experiment(config, workdir: str, stop_after: Optional[int], out, algo: Optional[Algorithm],
                    contexts: list, asked: Optional[dict] = None) -> dict:
    """``run_experiment``'s body; ``contexts`` receives its EvalContext, which the caller closes;
    ``asked`` becomes non-empty when a signal asks the run to stop."""
    asked = {} if asked is None else asked
    t_start = time.time()
    _check_workdir_path(workdir)
    exp = prepare(config, algo)
    t_data = time.time() - t_start  # loading / building and preprocessing the dataset
    compile_cache.use(exp.compile_cache)
    clock = compile_cache.CompileClock().start()
    # under jax.distributed (README: scale-out) process 0 writes the run's files and prints; every
    # process writes its own members' checkpoint and evaluations to process_<i>/, and resumes from it
    lead, multi = jax.process_index() == 0, jax.process_count() > 1
    own_dir = os.path.join(workdir, f"process_{jax.process_index()}") if multi else workdir
    resume, continued_from = _check_workdir(workdir, config, exp.algo, os.path.join(own_dir, CHECKPOINT))
    if multi:  # every process has checked the workdir before any of them writes to it
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("offrl: workdir checked")

    def say(msg):
        if lead:
            print(msg, file=out, flush=True)

    _make_dir(own_dir, workdir)
    if lead:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2))
        with open(os.path.join(workdir, POLICY_FILE), "w") as f:  # what offrl.load_policy needs besides the checkpoint
            json.dump(dict({k: np.asarray(v).tolist() for k, v in exp.pre._asdict().items()}, env_id=exp.info.env_id), f)

    algo = exp.algo
    name = algo.variant_name(config)
    trainer = make_train(algo, config, exp.data)
    log_every = int(config.get("log_interval", 0))  # > 0: the chunks return every update's metrics, logged in windows
    # each chunk's carry is the last one's output
    init, run = trainer.vmapped(donate=True, per_step=True) if log_every else trainer.vmapped(donate=True)
    diagnose = trainer.vmapped_diagnose()  # the algorithm's costly diagnostics, once per chunk
    data = replicate(exp.data)
    members = make_members(config, algo.sweepable)
    keys = jax.numpy.stack([seed_keys(s, 1)[0] for s in members.seed_list()])
    carry = shard_seeds(init(keys, members.hparams()))
    policy_fn = make_policy_fn(algo, config)
    ctx = EvalContext(exp, policy_fn, asked)
    contexts.append(ctx)
    chunks = _plan(trainer.stages, config.eval_interval, algo.chunk_every(config))
    stage_of = {st.name: st for st in trainer.stages}
    total = sum(n for _, _, n in chunks)

    progress = {"chunk": 0, "global_step": 0, "evals": [], "diverged": {}}
    ckpt_path = os.path.join(own_dir, CHECKPOINT)
    if resume and multi:  # this process's members from its own checkpoint, placed where shard_seeds put them
        idx, local = local_members(carry)
        restored, progress = checkpoint.restore(ckpt_path, local)
        carry = from_local_members(carry, idx, restored)
    elif resume:
        carry, progress = checkpoint.restore(ckpt_path, carry)
        carry = shard_seeds(carry)
    if multi:  # every process resumes at the same update, or none does
        at = np.asarray(multihost_utils.process_allgather(np.asarray([progress["global_step"] if resume else -1])))
        if len(set(at.reshape(-1).tolist())) > 1:
            found = ", ".join(f"process_{i}: {'none' if a < 0 else f'update {a}'}" for i, a in enumerate(at.reshape(-1)))
            raise ValueError(f"workdir {workdir}: the processes' checkpoints disagree ({found}); a run killed while "
                             f"they were written cannot resume: delete {workdir} and start it again")
    n_seeds = len(members.seeds)

    def member_name(m: int) -> str:
        point = members.points[m // n_seeds]
        return (label(point) + " " if point else "") + f"seed {members.seeds[m % n_seeds]}"

    logger = Logger(workdir, config, resume=resume, member_names=[member_name(m) for m in range(members.size)]) \
        if lead else _NoLogger()
    if not resume and lead and os.path.exists(logger.path):  # an earlier attempt stopped before any checkpoint
        say(f"{workdir} holds no checkpoint of this run: starting it again from update 0 (its earlier records are dropped)")
        logger.truncate_after(-1)
    if resume:
        progress.setdefault("diverged", {})
        logger.truncate_after(progress["global_step"])
        if continued_from is not None:
            say(f"continuing {workdir} from update {progress['global_step']} to {total} (num_steps raised from {continued_from})")
        elif progress["global_step"] >= total:
            say(f"{workdir} is complete ({total} updates): its results follow; raise --config.num_steps to continue it")
        else:
            say(f"resuming {workdir} at update {progress['global_step']}/{total}")
    say(
        f"{config.algo} on {config.dataset}: {exp.data.size} transitions, {config.num_seeds} seeds x "
        f"{len(members.points)} grid point(s) = {members.size} runs vmapped, "
        f"{total} updates in {len(chunks)} chunks, {len(jax.devices())} {jax.devices()[0].platform} device(s)"
    )

    todo = _remaining(chunks, progress["global_step"])
    if todo:  # the first chunk's compile is the long silence before the first progress line
        say(f"compiling the first chunk ({todo[0][0]} stage, {todo[0][2]} updates)"
            + (f", or loading it from the compile cache {exp.compile_cache}" if exp.compile_cache else "") + " ...")
    t0, steps0, t_train = time.time(), progress["global_step"], 0.0
    last_ckpt, t_ckpt = progress["global_step"], time.time()
    diverged = progress["diverged"]  # {member index (str): first non-finite metric / evaluation}
    pending, t_overlap = None, 0.0  # the next chunk, dispatched before an evaluation it overlaps
    for ci, (stage_name, start, length) in enumerate(todo):
        stage = stage_of[stage_name]
        if pending is None:
            tc, hidden = time.time(), 0.0
            carry, metrics = run(unaliased(carry), data, stage_name, start, length)
        else:  # trained while the last chunk's policies were evaluated (hidden: seconds of that)
            (nxt, tc, hidden), pending = pending, None
            carry, metrics = nxt.result()
        metrics = fetch(metrics)
        waited = max(time.time() - tc - hidden, 1e-9)  # wall time this chunk was waited for
        t_train += waited
        gstep = progress["global_step"] + length
        for k, v in sorted(metrics.items()):
            for m in np.flatnonzero(_nonfinite(v)):
                d = diverged.setdefault(str(m), {"first_nonfinite_metric": None, "first_nonfinite_eval": None})
                if d["first_nonfinite_metric"] is None:
                    d["first_nonfinite_metric"] = {"metric": f"train/{k}", "global_step": gstep}
        windows = _windows(progress["global_step"], length, log_every)
        for lo, hi in windows:
            part = {k: np.asarray(v)[:, lo:hi] for k, v in metrics.items()} if log_every else metrics
            record = {"global_step": progress["global_step"] + hi, "stage": stage.name, "stage_step": start + hi,
                      "kind": "train"}
            record.update({f"train/{k}": finite_mean(v) for k, v in part.items()})
            # each member's own (grid point-major: member = point * num_seeds + seed index), so one diverging
            # configuration can be told from the others
            record["members"] = {f"train/{k}": _per_member(v) for k, v in part.items()}
            if hi == length:  # the chunk's last record carries its rate and diagnostics
                if not hidden:  # a chunk that trained under an evaluation has no rate of its own
                    record["seed_updates_per_s"] = members.size * length / waited
                if diagnose is not None:
                    record.update({f"diag/{k}": finite_mean(v) for k, v in fetch(diagnose(carry, data, stage_name)).items()})
            logger.log(record)
        carry = carry._replace(state=algo.after_chunk(carry.state, ctx, stage_name, start + length))
        line = f"[{name}] {stage.name} {start + length}/{stage.num_steps}"
        stage_end = start + length == stage.num_steps
        final = ci + 1 == len(todo)
        stopping = (stop_after is not None and gstep >= stop_after) or bool(asked)
        save = final or stopping or (config.checkpoint_interval and gstep - last_ckpt >= config.checkpoint_interval) \
            or time.time() - t_ckpt >= config.get("checkpoint_seconds", config_lib.CHECKPOINT_SECONDS) > 0
        host_carry = None  # the checkpoint's copy of the carry, when the next chunk is dispatched before it is saved
        if stage.evaluate and (stage_end or (start + length) % config.eval_interval == 0):
            n_eval = len(progress["evals"])
            base_seed = config.eval_seed + 1000 * n_eval
            undecided = ctx.overlap is None
            overlap = not (final or stopping) and ctx.overlaps(carry.state)
            if undecided and ctx.timing is not None:  # auto has just timed the policy calls
                say(f"eval_overlap=auto: a policy call takes {1e3 * ctx.timing[0]:.2f} ms on the host CPU, "
                    f"{1e3 * ctx.timing[1]:.2f} ms on {ctx.platform}: " + ("evaluating on the host while training goes on"
                                                                       if ctx.overlap else f"evaluating on {ctx.platform}"))
            if overlap:
                # copy the policies to the host, dispatch the next chunk (it consumes the carry), then
                # evaluate the copy on the host CPU while the accelerator trains
                snap = ctx.snapshot(carry.state)
                if save:
                    host_carry = jax.tree_util.tree_map(np.array, jax.device_get(local_members(carry)[1]))
                nxt = ctx.dispatch(run, unaliased(carry), data, *todo[ci + 1])
                te = time.time()
                res = ctx.evaluate(snap, base_seed=base_seed)
                pending = (nxt, te, time.time() - te)
                t_overlap += pending[2]
            else:
                res = ctx.evaluate(carry.state, base_seed=base_seed)
            for m in np.flatnonzero(_nonfinite(res.raw)):
                d = diverged.setdefault(str(m), {"first_nonfinite_metric": None, "first_nonfinite_eval": None})
                if d["first_nonfinite_eval"] is None:
                    d["first_nonfinite_eval"] = gstep
            ok = np.array([str(m) not in diverged for m in range(members.size)]) & np.isfinite(res.raw)
            ev = {
                "global_step": gstep,
                "stage": stage.name,
                "stage_step": start + length,
                "kind": "eval",
                "raw": res.raw.tolist(),
                "normalized": res.normalized.tolist(),
                "normalized_mean": finite_mean(np.asarray(res.normalized)[ok]),
                "normalized_std": float(normalized_spread(res.raw[ok].std(), exp.info.ref_min_score, exp.info.ref_max_score))
                if ok.any() else None,
                "raw_mean": finite_mean(res.raw[ok]),
                "finite_members": int(ok.sum()),
            }
            logger.log(ev)
            progress["evals"].append({k: ev[k] for k in ("global_step", "stage", "raw", "normalized")})
            if not ok.any():
                line += " | score n/a (every member diverged)"
            elif len(members.points) > 1:  # one summary per grid point: the points are different configurations
                line += " | " + "; ".join(_point_summary(label(p), res.raw[g * n_seeds:(g + 1) * n_seeds],
                                                         ok[g * n_seeds:(g + 1) * n_seeds], exp.info)
                                          for g, p in enumerate(members.points))
            elif exp.info.ref_max_score is not None:
                line += f" | score {ev['normalized_mean']:.1f} ± {ev['normalized_std']:.1f}"
            else:
                line += f" | return {ev['raw_mean']:.1f}"
        if asked and not stopping and pending is None:  # asked during the evaluation: stop here, not a chunk later
            stopping = save = True
        if diverged:
            names = [member_name(int(m)) for m in sorted(diverged, key=int)]
            line += f" | {len(names)}/{members.size} diverged ({'; '.join(names[:4])}{'; ...' if len(names) > 4 else ''})"
        progress["chunk"], progress["global_step"] = len(chunks) - len(todo) + ci + 1, gstep
        done_steps = gstep - steps0
        rate = done_steps / max(time.time() - t0, 1e-9)
        eta = (total - gstep) / max(rate, 1e-9)
        say(f"{line} | total {gstep}/{total} ({100 * gstep / max(total, 1):.0f}%) | "
            f"{rate * members.size:.0f} seed-updates/s | elapsed {time.time() - t0:.0f}s | ETA {eta:.0f}s")
        if save:  # this process's members (all of them in one process)
            checkpoint.save(ckpt_path, local_members(carry)[1] if host_carry is None else host_carry, progress)
            last_ckpt, t_ckpt = gstep, time.time()
        if stopping and not final:
            logger.close()
            if asked:
                raise RunInterrupted(gstep)
            say(f"stopped after {gstep} updates; run again with the same --workdir to resume")
            return {"stopped_at": gstep}

    if not progress["evals"]:
        res = ctx.evaluate(carry.state, base_seed=config.eval_seed)
        progress["evals"].append(
            {"global_step": progress["global_step"], "stage": "final", "raw": res.raw.tolist(), "normalized": res.normalized.tolist()}
        )
    n = len(members.seeds)
    extra = {k: fetch(v) for k, v in algo.extra_scores(carry.state, config).items()}  # e.g. BPPO's best pi_k
    rows = [_summary(exp, progress["evals"], p, slice(g * n, (g + 1) * n), diverged, extra) for g, p in enumerate(members.points)]
    scored = [r for r in rows if r["raw_mean"] is not None]
    best = max(scored, key=lambda r: r["raw_mean"]) if scored else None
    summary = rows[0] if len(rows) == 1 else {"rows": rows, "best": best}
    table = score_table(rows)
    if multi:  # this process's members: indices, seeds and their evaluations
        own = local_members(carry.key)[0].tolist()
        with open(os.path.join(own_dir, "members.json"), "w") as f:
            json.dump({"members": own, "seeds": [members.seed_list()[m] for m in own],
                       "evals": [{"global_step": e["global_step"], "stage": e["stage"], "raw": [e["raw"][m] for m in own]}
                                 for e in progress["evals"]]}, f, indent=2)
    wall, compiled = time.time() - t_start, clock.read()
    # this process's share of the run's wall time (a resumed run: since it resumed), also in results.json / wandb
    summary["timing"] = {"wall_s": wall, "data_s": t_data, "training_s": t_train, "evaluation_s": ctx.seconds,
                         "evaluation_during_training_s": t_overlap, "compilation_s": compiled["seconds"],
                         "programs": compiled["programs"], "programs_from_cache": compiled["hits"],
                         "compile_seconds_saved": compiled["saved"], "compile_cache": exp.compile_cache}
    if not lead:
        return summary
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    diverged_lines = diverged_note(rows)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table + "\n\n" + results_note(config, trainer.stages, exp.data.size, rows[0], progress["evals"])
                + extra_note(rows) + diverged_lines)
    groups = [(label(p) if p else "mean over seeds", slice(g * n, (g + 1) * n)) for g, p in enumerate(members.points)]
    plot_curve(progress["evals"], os.path.join(workdir, "curve.png"),
               f"{name} on {config.dataset} ({exp.data.size} transitions), {total} updates, "
               f"{config.eval_episodes} episodes per evaluation", groups)
    logger.close(summary)
    say(table + ("\n" + diverged_lines.strip() if diverged_lines else ""))
    say(timing_line(summary["timing"]))
    say(f"wrote {workdir}/results.md, results.json, metrics.jsonl, curve.png")
    return summary

