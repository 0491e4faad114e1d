"""reproduce.py end to end on a legacy D4RL file: the cell runs, the table pairs ours with the paper's number."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_d4rl import write_d4rl


def test_reproduce_one_cell_from_a_d4rl_directory(tmp_path):
    src = tmp_path / "d4rl"
    src.mkdir()
    write_d4rl(str(src / "hopper-medium-v2.hdf5"))
    work = tmp_path / "tables"
    args = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--table=bppo_table1",
            f"--source={src}", "--columns=BC", "--tasks=hopper-medium-v2", "--num_seeds=2", "--num_steps=10",
            "--report_last=1", "--eval_episodes=1", "--set=agent.hidden_dims=(16,16)", "--set=batch_size=8", f"--workdir={work}"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (work / "bppo_table1.md").read_text()
    row = [line for line in table.splitlines() if line.startswith("| hopper-medium-v2")][0]
    assert row.endswith("/ 61.3 |")  # the paper's BC score for hopper-medium-v2
    ours = float(row.split("|")[2].split("±")[0])
    assert np.isfinite(ours)
    # a second call reads the finished cell back instead of training again
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "updates in" not in again.stdout and row in again.stdout


def test_bppo_cell_scores_only_the_improvement_stage_and_gets_the_datasets_settings(tmp_path):
    """A BPPO cell evaluates pi_b during BC (logged) and pi during improvement: the cell's score
    averages only the improvement-stage evaluations, and hopper-medium-replay gets clip 0.1."""
    import json

    src = tmp_path / "d4rl"
    src.mkdir()
    write_d4rl(str(src / "hopper-medium-replay-v2.hdf5"))
    work = tmp_path / "tables"
    steps = ["--set=agent.v_steps=4", "--set=agent.q_steps=4", "--set=agent.bc_steps=6", "--set=agent.pi_steps=6",
             "--set=eval_interval=3", "--set=agent.selection='none'", "--set=batch_size=8"]
    nets = [f"--set=agent.{k}_hidden_dims=(16,16)" for k in ("v", "q", "pi")]
    args = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--table=bppo_table1", f"--source={src}",
            "--columns=BPPO", "--tasks=hopper-medium-replay-v2", "--num_seeds=2", "--report_last=10", "--eval_episodes=1",
            f"--workdir={work}", *steps, *nets]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "BPPO settings for hopper-medium-replay-v2" in proc.stdout  # what the dataset implied is printed
    cell = work / "bppo_table1" / "hopper-medium-replay-v2__bppo__2seeds"  # not the protocol's 5 seeds
    config = json.loads((cell / "config.json").read_text())
    assert config["agent"]["clip_eps"] == 0.1 and config["agent"]["omega"] == 0.9  # Table 6's hopper-medium-replay row
    assert config["agent"]["pi_steps"] == 6  # an explicit --set keeps its value
    evals = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("kind") == "eval"]
    assert [e["stage"] for e in evals] == ["bc", "bc", "improve", "improve"]  # BC is evaluated and logged ...
    result = json.loads((cell / "results.json").read_text())
    assert result["evaluations_averaged"] == 2  # ... but only the improvement stage's evaluations are scored
    improve = np.mean([e["raw"] for e in evals if e["stage"] == "improve"], axis=0)
    np.testing.assert_allclose(result["per_seed_raw"], improve, rtol=1e-6)
    with_bc = np.mean([e["raw"] for e in evals], axis=0)
    assert not np.allclose(with_bc, improve)  # the BC evaluations would have changed the number


@pytest.mark.parametrize("flag, message", [
    ("--table=bppo_tabel1", "no table 'bppo_tabel1' in configs/tables: choose one of arq_table2, bppo_table1"),
    ("--columns=TD3BC", "unknown column 'TD3BC': the table has CQL, TD3+BC"),
    ("--tasks=hopper_medium", "task 'hopper_medium' is not a D4RL name like hopper-medium-v2"),
    ("--source=/nowhere/d4rl", "--source=/nowhere/d4rl is neither offrl, minari nor a directory"),
    ("--set=agent.hiden_dims=(8,8)", "--set=agent.hiden_dims=(8,8) for column BC (configs/bc.py): unknown config key "
                                     "'agent.hiden_dims': did you mean agent.hidden_dims?"),
    ("--set=agent.loss=mse", "--set=agent.loss=mse: give key=value with a Python literal value"),
])
def test_bad_flags_fail_in_one_line_and_write_nothing(tmp_path, flag, message):
    work = tmp_path / "tables"
    args = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), "--columns=BC",
            "--tasks=hopper-medium-v2", f"--workdir={work}", flag]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]  # one line, no traceback
    assert not work.exists() and "skip " not in proc.stdout
