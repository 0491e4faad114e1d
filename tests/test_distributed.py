"""Scale-out with jax.distributed: two local CPU processes on the loopback address train the seed
axis sharded over their devices; results equal a single-process run of the same members, each
process writes only its own members, and process 0 writes the table. A two-process run stopped
part-way resumes, each process from its own process_<i>/ checkpoint, to the same results."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from flax import serialization

from conftest import ROOT, tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

WORKER = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
import jax
jax.distributed.initialize(coordinator_address="127.0.0.1:{port}", num_processes=2, process_id={pid})
import os
datasets = os.environ["MINARI_DATASETS_PATH"]
from conftest import tiny_config
os.environ["MINARI_DATASETS_PATH"] = datasets  # the test's tiny dataset, not a fresh directory
from offrl.runner import run_experiment
assert jax.process_count() == 2 and len(jax.devices()) == 2
cfg = tiny_config("td3bc", steps=4, num_seeds=2)
cfg.eval_interval = 2
cfg.eval_overlap = {overlap!r}
{prelude}
run_experiment(cfg, {workdir!r}, stop_after={stop})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(workdir: str, stop=None, overlap="auto", prelude="") -> list[str]:
    """Run the tiny two-process job on ``workdir`` (``stop``: run_experiment's stop_after; ``overlap``:
    config.eval_overlap; ``prelude``: code each process runs first); their outputs."""
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER.format(root=ROOT, tests=os.path.join(ROOT, "tests"), port=port, pid=pid,
                                                 workdir=workdir, stop=stop, overlap=overlap, prelude=prelude)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for pid in range(2)
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, o in zip(procs, outs):
        assert p.returncode == 0, o[-3000:]
    return outs


@pytest.fixture(scope="module")
def alone(tiny_dataset, tmp_path_factory):
    """The same two members trained in one process."""
    from offrl.runner import run_experiment

    cfg = tiny_config("td3bc", steps=4, num_seeds=2)
    cfg.eval_interval = 2
    return run_experiment(cfg, str(tmp_path_factory.mktemp("one")), out=open(os.devnull, "w"))


@pytest.mark.parametrize("overlap", ["auto", "on"])
def test_two_processes_equal_one(alone, tmp_path, overlap):
    """Also with each process evaluating a host copy of its member while the next chunk trains."""
    workdir = str(tmp_path / "two")
    outs = _two_processes(workdir, overlap=overlap)
    assert "seed-updates/s" in outs[0] and "seed-updates/s" not in outs[1]  # process 0 prints
    assert ("while training ran" in outs[0]) == (overlap == "on")

    with open(os.path.join(workdir, "results.json")) as f:
        two = json.load(f)
    np.testing.assert_allclose(two["per_seed_raw"], alone["per_seed_raw"], rtol=1e-3)
    assert two["seeds"] == alone["seeds"] == [0, 1]

    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["kind"] for r in lines].count("eval") == 2
    for pid in range(2):  # each process: its own member's checkpoint and evaluations, nothing else
        own = os.path.join(workdir, f"process_{pid}")
        assert sorted(os.listdir(own)) == ["checkpoint.msgpack", "members.json"]
        with open(os.path.join(own, "members.json")) as f:
            mine = json.load(f)
        assert mine["members"] == [pid] and mine["seeds"] == [pid]
        assert [e["raw"][0] for e in mine["evals"]] == [e["raw"][pid] for e in lines if e["kind"] == "eval"]


def test_stopped_two_process_run_resumes_from_each_process_checkpoint(alone, tmp_path):
    workdir = str(tmp_path / "two")
    outs = _two_processes(workdir, stop=2)  # both processes checkpoint their own member at update 2 and exit
    assert "stopped after 2 updates" in outs[0]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    for pid in range(2):
        with open(os.path.join(workdir, f"process_{pid}", "checkpoint.msgpack"), "rb") as f:
            assert json.loads(serialization.msgpack_restore(f.read())["progress"])["global_step"] == 2
    outs = _two_processes(workdir)  # the same command again: each process restores its own members
    assert "resuming" in outs[0] and "at update 2/4" in outs[0]
    with open(os.path.join(workdir, "results.json")) as f:
        two = json.load(f)
    np.testing.assert_allclose(two["per_seed_raw"], alone["per_seed_raw"], rtol=1e-3)
    lines = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["global_step"] for r in lines if r["kind"] == "eval"] == [2, 4]  # no duplicate rows after the resume
    for pid in range(2):
        with open(os.path.join(workdir, f"process_{pid}", "members.json")) as f:
            mine = json.load(f)
        assert mine["members"] == [pid] and [e["global_step"] for e in mine["evals"]] == [2, 4]


# as if on an accelerator, with timings that make process 0 choose the host copy and process 1 not
AUTO_ON_A_GPU = """
from offrl.runner import EvalContext
_init, _overlaps = EvalContext.__init__, EvalContext.overlaps
def _gpu_init(self, *args):
    _init(self, *args)
    self.platform = "gpu"
    self._time_policy = lambda states: (1.0, 2.0) if jax.process_index() == 0 else (2.0, 1.0)
def _said(self, states):
    print("process", jax.process_index(), "overlaps:", _overlaps(self, states), flush=True)
    return self.overlap
EvalContext.__init__, EvalContext.overlaps = _gpu_init, _said
"""


def test_every_process_follows_process_0s_auto_overlap_decision(alone, tmp_path):
    outs = _two_processes(str(tmp_path / "two"), prelude=AUTO_ON_A_GPU)
    assert "process 0 overlaps: True" in outs[0] and "process 1 overlaps: True" in outs[1]
    assert "process 1 overlaps: False" not in outs[1]
    with open(tmp_path / "two" / "results.json") as f:
        np.testing.assert_allclose(json.load(f)["per_seed_raw"], alone["per_seed_raw"], rtol=1e-3)
