"""Evaluation overlapping training (config.eval_overlap): the policy copy reads exactly what the policy
reads, acts as the policy does, and a run that evaluates its copies while the next chunk trains logs,
scores and checkpoints what the sequential run does."""
import copy
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import ROOT, tiny_config
from offrl.checkpoint import save as write
from offrl.evaluation import PolicyCopy, make_policy_fn, policy_act, policy_reads
from offrl.runner import EvalContext, prepare
from offrl.sweep import members as make_members
from offrl.train import make_train, seed_keys


def test_policy_reads_marks_the_leaves_whose_values_reach_the_action():
    def act(state, obs, key):  # vmapped over seeds like policy_act's function
        unused = state["critic"] * 2.0  # computed, never returned
        scale = state["table"].shape[0]  # only its shape
        return jnp.tanh(obs @ state["w"]) * scale + 0 * unused.sum()

    states = {"w": jnp.ones((2, 3, 4)), "table": jnp.ones((2, 7)), "critic": jnp.ones((2, 5)), "b": jnp.ones((2, 4))}
    # 0 * unused.sum() still makes critic an operand of the output: the pass is conservative, never optimistic
    reads = policy_reads(jax.vmap(act), states, obs_dim=3)
    assert dict(zip(sorted(states), reads)) == {"b": False, "critic": True, "table": False, "w": True}

    def act2(state, obs, key):
        return jnp.tanh(obs @ state["w"] + state["b"])

    assert policy_reads(jax.vmap(act2), states, 3) == [True, False, False, True]


def _states(name, **overrides):
    cfg = tiny_config(name, num_seeds=2, **overrides)
    exp = prepare(cfg)
    init, _ = make_train(exp.algo, cfg, exp.data).vmapped()
    m = make_members(cfg, exp.algo.sweepable)
    return cfg, exp, init(jnp.stack([seed_keys(s, 1)[0] for s in m.seed_list()]), m.hparams()).state


@pytest.mark.parametrize("name, reads", [("td3bc", {"actor"}), ("arq", {"actor"}),
                                         ("bppo", {"bc", "pi", "improving"})])
def test_td3bc_arq_and_bppo_policies_read_only_their_actors(tiny_dataset, name, reads):
    cfg, exp, st = _states(name)
    mask = policy_reads(policy_act(exp.algo, cfg), st, exp.data.observations.shape[-1])
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(st)[0]]
    assert {p.split(".")[1] for p, r in zip(paths, mask) if r} == reads


@pytest.mark.parametrize("name", ["td3bc", "bppo", "arq_s"])
def test_the_copy_acts_exactly_as_the_policy(tiny_dataset, name):
    overrides = {"agent.num_candidates": 3, "agent.kth": 2, "agent.sampler_steps": 3} if name == "arq_s" else {}
    cfg, exp, st = _states(name, **overrides)
    obs = jax.random.normal(jax.random.PRNGKey(1), (2, 3, exp.data.observations.shape[-1]))
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    pc = PolicyCopy(exp.algo, cfg, exp.data.observations.shape[-1])
    c = pc.copy(st)
    assert len(c.read) < len(jax.tree_util.tree_leaves(st))  # a copy of part of the state
    np.testing.assert_array_equal(np.asarray(pc(c, obs, keys)), np.asarray(make_policy_fn(exp.algo, cfg)(st, obs, keys)))


def test_auto_overlaps_on_an_accelerator_when_the_host_policy_is_no_slower(tiny_dataset, monkeypatch):
    cfg, exp, st = _states("td3bc")
    ctx = EvalContext(exp, make_policy_fn(exp.algo, cfg))
    assert ctx.overlaps(st) is False and ctx.timing is None  # auto on a CPU-only machine: off, nothing timed
    host, dev = ctx._time_policy(st)
    assert host > 0 and dev > 0
    for timing, expect in (((1e-4, 2e-4), True), ((2e-4, 1e-4), False)):
        ctx.overlap, ctx.platform = None, "gpu"
        monkeypatch.setattr(ctx, "_time_policy", lambda states, t=timing: t)
        assert ctx.overlaps(st) is expect and ctx.timing == timing
    for mode, expect in (("on", True), ("off", False)):
        ctx.overlap, ctx.exp.config.eval_overlap = None, mode
        assert ctx.overlaps(st) is expect


def _run(tmp_path, name, mode, monkeypatch):
    """A tiny TD3+BC run with evaluations and checkpoints every 5 updates: (metrics records, saved carries, printed)."""
    from offrl import checkpoint, runner

    cfg = tiny_config("td3bc", steps=15, num_seeds=2, eval_overlap=mode)
    cfg.eval_interval = cfg.checkpoint_interval = 5
    saved = []

    def recording_save(path, carry, progress):
        saved.append((progress["global_step"], jax.tree_util.tree_map(np.array, jax.device_get(carry)), copy.deepcopy(progress)))
        write(path, carry, progress)

    monkeypatch.setattr(checkpoint, "save", recording_save)
    out = io.StringIO()
    runner.run_experiment(cfg, str(tmp_path / name), out=out)
    return [json.loads(x) for x in open(tmp_path / name / "metrics.jsonl")], saved, out.getvalue()


def test_an_overlapped_run_logs_scores_and_checkpoints_what_the_sequential_run_does(tiny_dataset, tmp_path, monkeypatch):
    on, saved_on, printed = _run(tmp_path, "on", "on", monkeypatch)
    off, saved_off, _ = _run(tmp_path, "off", "off", monkeypatch)
    assert "while training ran" in printed  # the evaluations at 5 and 10 overlapped the next chunk
    assert [r["kind"] for r in on] == [r["kind"] for r in off] == ["train", "eval"] * 3
    for a, b in zip(on, off):
        assert {k: v for k, v in a.items() if k != "seed_updates_per_s"} == {k: v for k, v in b.items() if k != "seed_updates_per_s"}
    # the checkpoints at 5 and 10, saved after the next chunk was dispatched, hold the carry of their own step
    assert [s for s, _, _ in saved_on] == [s for s, _, _ in saved_off] == [5, 10, 15]
    for (_, a, pa), (_, b, pb) in zip(saved_on, saved_off):
        assert pa == pb
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_overlap_copies_to_another_cpu_device_and_matches(tiny_dataset, tmp_path):
    """With two CPU devices the copy goes to the one that trains nothing (the cross-device put must not
    alias the buffers the next chunk frees); the scores equal the sequential run's."""
    scores = {}
    for mode in ("on", "off"):
        workdir = str(tmp_path / mode)
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "experiments", "launch.py"), "--config=configs/td3bc.py",
             "--config.dataset=test/hopper/tiny-v0", "--config.num_seeds=1", "--config.num_steps=20",
             "--config.batch_size=32", "--config.eval_interval=5", "--config.eval_episodes=2",
             "--config.agent.hidden_dims=(16, 16)", f"--config.eval_overlap={mode}", f"--workdir={workdir}"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2"))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "2 cpu device(s)" in proc.stdout
        scores[mode] = [json.loads(x)["raw"] for x in open(os.path.join(workdir, "metrics.jsonl")) if '"eval"' in x]
    assert len(scores["on"]) == 4 and scores["on"] == scores["off"]


def test_a_policy_that_reads_no_state_is_copied_by_one_leaf(tiny_dataset):
    """e.g. a notebook's random-action algorithm: the copy keeps one leaf, so evaluation knows the seed count."""
    import dataclasses

    cfg, exp, st = _states("td3bc")
    algo = dataclasses.replace(exp.algo, act=lambda state, obs, key, config, deterministic: jnp.zeros(obs.shape[:-1] + (3,)))
    pc = PolicyCopy(algo, cfg, exp.data.observations.shape[-1])
    c = pc.copy(st)
    assert len(c.read) == 1 and c.read[0].shape[0] == 2
    assert pc(c, jnp.ones((2, 4, exp.data.observations.shape[-1])), jax.random.split(jax.random.PRNGKey(0), 2)).shape == (2, 4, 3)


def test_on_without_a_cpu_backend_is_refused_before_anything_is_written(tiny_dataset, tmp_path, monkeypatch):
    from offrl import runner

    monkeypatch.setattr(runner, "host_device", lambda states=None: None)  # as under JAX_PLATFORMS=cuda
    with pytest.raises(ValueError, match="no CPU backend: add cpu to JAX_PLATFORMS"):
        runner.run_experiment(tiny_config("td3bc", eval_overlap="on"), str(tmp_path / "run"), out=io.StringIO())
    assert not (tmp_path / "run").exists()
    assert runner.prepare(tiny_config("td3bc", eval_overlap="auto")).config.eval_overlap == "auto"  # auto then stays off


def test_the_next_chunk_trains_in_its_own_thread_while_the_copy_is_evaluated(tiny_dataset, tmp_path, monkeypatch):
    """XLA:GPU returns from a compiled loop only when it has run (the launching thread drives it), so a
    chunk launched from the evaluating thread would not overlap its evaluation. Each overlapped chunk
    here waits until the evaluation has started: it can only see that from another thread."""
    import threading

    from offrl.runner import EvalContext, Snapshot
    from offrl.train import Train

    evaluating, seen = threading.Event(), []
    vmapped, evaluate = Train.vmapped, EvalContext.evaluate

    def blocking_vmapped(self, donate=False):
        init, run = vmapped(self, donate)

        def run_like_a_gpu(*args):
            if threading.current_thread() is not threading.main_thread():
                seen.append(evaluating.wait(timeout=120))
                evaluating.clear()
            return run(*args)

        return init, run_like_a_gpu

    def noting_evaluate(self, states, *args, **kwargs):
        if isinstance(states, Snapshot):
            evaluating.set()
        return evaluate(self, states, *args, **kwargs)

    monkeypatch.setattr(Train, "vmapped", blocking_vmapped)
    monkeypatch.setattr(EvalContext, "evaluate", noting_evaluate)
    records, saved, printed = _run(tmp_path, "threaded", "on", monkeypatch)
    assert seen == [True, True]  # the chunks after the evaluations at 5 and 10 trained beside them
    assert [r["kind"] for r in records] == ["train", "eval"] * 3 and [s for s, _, _ in saved] == [5, 10, 15]


def _configs_with_get_config() -> list[str]:
    import importlib

    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs"))
                   if f.endswith(".py") and not f.startswith("_") and f != "default.py")
    return [n for n in names if hasattr(importlib.import_module(f"configs.{n}"), "get_config")]


@pytest.mark.slow
@pytest.mark.parametrize("name", _configs_with_get_config())
def test_every_config_logs_the_same_metrics_and_scores_with_evaluation_overlapped(tiny_dataset, tmp_path, name):
    """Each config's tiny run (evaluations and checkpoints every 4 of 8 updates), eval_overlap on against off:
    identical metrics and scores, and the evaluations did overlap the next chunk."""
    from offrl import runner

    logged, overlapped = {}, {}
    for mode in ("on", "off"):
        cfg = tiny_config(name, steps=8, eval_overlap=mode)
        cfg.eval_interval = cfg.checkpoint_interval = 4
        if name.startswith("arq"):
            cfg.agent.num_candidates, cfg.agent.kth, cfg.agent.sampler_steps = 3, 2, 3
        out = io.StringIO()
        runner.run_experiment(cfg, str(tmp_path / mode), out=out)
        overlapped[mode] = "while training ran" in out.getvalue()
        logged[mode] = [{k: v for k, v in json.loads(x).items() if k != "seed_updates_per_s"}
                        for x in open(tmp_path / mode / "metrics.jsonl")]
    assert overlapped["on"] and not overlapped["off"]
    assert any(r["kind"] == "eval" for r in logged["on"])
    assert logged["on"] == logged["off"]
