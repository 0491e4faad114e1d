"""The host loop around the compiled runtime: chunks, evaluation, logging, checkpoints, resume.

``run_experiment(config, workdir)`` is what ``experiments/launch.py`` calls. Every
input is checked (config values, algorithm, dataset, environment) before anything
is written, so a bad invocation leaves no half-made run directory behind.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional

import jax
import numpy as np

from offrl import checkpoint, config as config_lib
from offrl.algos import get_algorithm
from offrl.data import load_dataset, preprocess
from offrl.data.dataset import DatasetInfo, Transitions
from offrl.data.preprocess import Preprocessing
from offrl.data.scores import normalized_score, normalized_spread
from offrl.sweep import label, members as make_members, parse_grid
from offrl.evaluation import EvalResult, evaluate, make_policy_fn
from offrl.logger import Logger, plot_curve, score_table
from offrl.train import make_train, replicate, seed_keys, shard_seeds

CHECKPOINT = "checkpoint.msgpack"


@dataclasses.dataclass
class Experiment:
    """Everything a run needs, resolved and checked, before anything is written."""

    config: Any
    algo: Any
    data: Transitions
    info: DatasetInfo
    pre: Preprocessing
    env: Any  # gymnasium EnvSpec or id used for evaluation


def prepare(config) -> Experiment:
    config_lib.validate(config)
    algo = get_algorithm(config.algo)
    algo.validate(config)
    parse_grid(config.grid, config, algo.sweepable)
    data, info = load_dataset(config.dataset, config.discount, config.download, config.dataset_size)
    data, info = algo.prepare_data(data, info, config)
    data, pre = preprocess(data, info, config)
    env = info.env_spec if info.env_spec is not None else info.env_id
    if env is None:
        raise ValueError(
            f"dataset '{config.dataset}' names no environment, so its policies cannot be evaluated; "
            f"use a dataset that stores its env spec"
        )
    return Experiment(config, algo, data, info, pre, env)


class EvalContext:
    """What an algorithm's ``after_chunk`` hook may use between compiled chunks."""

    def __init__(self, exp: Experiment, policy_fn):
        self.exp, self.policy_fn = exp, policy_fn

    def evaluate(self, states, num_episodes: Optional[int] = None, base_seed: Optional[int] = None) -> EvalResult:
        c, info = self.exp.config, self.exp.info
        return evaluate(
            self.policy_fn,
            states,
            self.exp.env,
            num_episodes or c.eval_episodes,
            c.eval_seed if base_seed is None else base_seed,
            self.exp.pre,
            info.ref_min_score,
            info.ref_max_score,
        )


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


def _check_workdir(workdir: str, config) -> bool:
    """True when ``workdir`` holds a checkpoint of this same config (resume); error on a different run."""
    cfg_path = os.path.join(workdir, "config.json")
    if not os.path.exists(cfg_path):
        if os.path.isdir(workdir) and os.listdir(workdir):
            raise FileExistsError(f"workdir {workdir} is not empty and holds no offrl run: choose another --workdir")
        return False
    with open(cfg_path) as f:
        old = json.load(f)
    if old != json.loads(config.to_json()):
        raise FileExistsError(
            f"workdir {workdir} holds a run with a different config: choose another --workdir "
            f"(or delete it to start over)"
        )
    return os.path.exists(os.path.join(workdir, CHECKPOINT))


def _summary(exp: Experiment, evals: list[dict], point: dict, idx) -> dict:
    """The score row of one grid point (members ``idx`` of every evaluation)."""
    c, info = exp.config, exp.info
    last = scored_evals(evals)[-c.report_last :]
    raw = np.mean([np.asarray(e["raw"])[idx] for e in last], axis=0)  # per seed
    has_ref = info.ref_max_score is not None
    norm = normalized_score(raw, info.ref_min_score, info.ref_max_score)
    return {
        "algo": c.algo,
        "variant": exp.algo.variant_name(c),
        "dataset": c.dataset,
        "hparams": point,
        "score_convention": info.score_convention,
        "ref_min_score": info.ref_min_score,
        "ref_max_score": info.ref_max_score,
        "evaluations_averaged": len(last),
        "episodes_per_evaluation": c.eval_episodes,
        "raw_mean": float(raw.mean()),
        "raw_std": float(raw.std()),
        "per_seed_raw": raw.tolist(),
        "normalized_mean": float(norm.mean()) if has_ref else None,
        "normalized_std": float(normalized_spread(raw.std(), info.ref_min_score, info.ref_max_score)) if has_ref else None,
        "per_seed_normalized": norm.tolist() if has_ref else [None] * len(raw),
        "seeds": [c.seed + i for i in range(c.num_seeds)],
    }


def run_experiment(config, workdir: str, stop_after: Optional[int] = None, out=sys.stdout) -> dict:
    """Train ``config.num_seeds`` seeds in one vmapped program, evaluating and logging; returns the summary.

    ``stop_after`` ends the run (with a checkpoint) once that many updates are done: used
    to test resuming.
    """
    exp = prepare(config)
    resume = _check_workdir(workdir, config)

    def say(msg):
        print(msg, file=out, flush=True)

    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json(indent=2))

    algo = exp.algo
    name = algo.variant_name(config)
    trainer = make_train(algo, config, exp.data)
    init, run = trainer.vmapped()
    data = replicate(exp.data)
    members = make_members(config, algo.sweepable)
    keys = jax.numpy.stack([seed_keys(s, 1)[0] for s in members.seed_list()])
    carry = shard_seeds(init(keys, members.hparams()))
    policy_fn = make_policy_fn(algo, config)
    ctx = EvalContext(exp, policy_fn)
    chunks = _plan(trainer.stages, config.eval_interval, algo.chunk_every(config))
    stage_of = {st.name: st for st in trainer.stages}
    total = sum(n for _, _, n in chunks)

    progress = {"chunk": 0, "global_step": 0, "evals": []}
    ckpt_path = os.path.join(workdir, CHECKPOINT)
    logger = Logger(workdir, config, resume=resume)
    if resume:
        carry, progress = checkpoint.restore(ckpt_path, carry)
        carry = shard_seeds(carry)
        logger.truncate_after(progress["global_step"])
        say(f"resuming {workdir} at update {progress['global_step']}/{total}")
    say(
        f"{config.algo} on {config.dataset}: {exp.data.size} transitions, {config.num_seeds} seeds x "
        f"{len(members.points)} grid point(s) = {members.size} runs vmapped, "
        f"{total} updates in {len(chunks)} chunks, {len(jax.devices())} {jax.devices()[0].platform} device(s)"
    )

    t0, steps0 = time.time(), progress["global_step"]
    last_ckpt = progress["global_step"]
    for ci in range(progress["chunk"], len(chunks)):
        stage_name, start, length = chunks[ci]
        stage = stage_of[stage_name]
        tc = time.time()
        carry, metrics = run(carry, data, stage_name, start, length)
        metrics = jax.device_get(metrics)
        gstep = progress["global_step"] + length
        record = {"global_step": gstep, "stage": stage.name, "stage_step": start + length, "kind": "train"}
        record.update({f"train/{k}": float(np.mean(v)) for k, v in metrics.items()})
        record["seed_updates_per_s"] = members.size * length / max(time.time() - tc, 1e-9)
        logger.log(record)
        carry = carry._replace(state=algo.after_chunk(carry.state, ctx, stage_name, start + length))
        line = f"[{name}] {stage.name} {start + length}/{stage.num_steps}"
        stage_end = start + length == stage.num_steps
        if stage.evaluate and (stage_end or (start + length) % config.eval_interval == 0):
            n_eval = len(progress["evals"])
            res = ctx.evaluate(carry.state, base_seed=config.eval_seed + 1000 * n_eval)
            ev = {
                "global_step": gstep,
                "stage": stage.name,
                "stage_step": start + length,
                "kind": "eval",
                "raw": res.raw.tolist(),
                "normalized": res.normalized.tolist(),
                "normalized_mean": float(np.mean(res.normalized)),
                "normalized_std": float(normalized_spread(res.raw.std(), exp.info.ref_min_score, exp.info.ref_max_score)),
                "raw_mean": float(res.raw.mean()),
            }
            logger.log(ev)
            progress["evals"].append({k: ev[k] for k in ("global_step", "stage", "raw", "normalized")})
            if exp.info.ref_max_score is not None:
                line += f" | score {ev['normalized_mean']:.1f} ± {ev['normalized_std']:.1f}"
            else:
                line += f" | return {ev['raw_mean']:.1f}"
        progress["chunk"], progress["global_step"] = ci + 1, gstep
        done_steps = gstep - steps0
        rate = done_steps / max(time.time() - t0, 1e-9)
        eta = (total - gstep) / max(rate, 1e-9)
        say(f"{line} | total {gstep}/{total} ({100 * gstep / max(total, 1):.0f}%) | "
            f"{rate * members.size:.0f} seed-updates/s | elapsed {time.time() - t0:.0f}s | ETA {eta:.0f}s")
        final = ci + 1 == len(chunks)
        stopping = stop_after is not None and gstep >= stop_after
        if final or stopping or (config.checkpoint_interval and gstep - last_ckpt >= config.checkpoint_interval):
            checkpoint.save(ckpt_path, carry, progress)
            last_ckpt = gstep
        if stopping and not final:
            logger.close()
            say(f"stopped after {gstep} updates; run again with the same --workdir to resume")
            return {"stopped_at": gstep}

    if not progress["evals"]:
        res = ctx.evaluate(carry.state, base_seed=config.eval_seed)
        progress["evals"].append(
            {"global_step": progress["global_step"], "stage": "final", "raw": res.raw.tolist(), "normalized": res.normalized.tolist()}
        )
    n = len(members.seeds)
    rows = [_summary(exp, progress["evals"], p, slice(g * n, (g + 1) * n)) for g, p in enumerate(members.points)]
    summary = rows[0] if len(rows) == 1 else {"rows": rows, "best": max(rows, key=lambda r: r["raw_mean"])}
    table = score_table(rows)
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(table + f"\n\nScores: {rows[0]['score_convention']}; last {rows[0]['evaluations_averaged']} "
                f"evaluation(s) x {config.eval_episodes} episodes per seed.\n")
    groups = [(label(p) if p else "mean over seeds", slice(g * n, (g + 1) * n)) for g, p in enumerate(members.points)]
    plot_curve(progress["evals"], os.path.join(workdir, "curve.png"), f"{config.algo} on {config.dataset}", groups)
    logger.close(summary)
    say(table)
    say(f"wrote {workdir}/results.md, results.json, metrics.jsonl, curve.png")
    return summary
