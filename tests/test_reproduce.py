"""reproduce.py end to end on a legacy D4RL file: the cell runs, the table pairs ours with the paper's number."""
import os
import subprocess
import sys

import numpy as np

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
