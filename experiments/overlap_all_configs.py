"""Every config's tiny run with eval_overlap on (each next chunk launched from its own thread while the
host evaluates) against off: the logged metrics and scores must be identical, and every run must have
overlapped. Exit status 1 otherwise. On the 2-core CPU machine, about 4 minutes:

    python experiments/overlap_all_configs.py
"""
import io
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from conftest import make_tiny_dataset, tiny_config  # noqa: E402  (tests/: the tiny dataset and configs)
from offrl import runner  # noqa: E402


def run(name: str, mode: str):
    """(metrics records without their timing, whether an evaluation overlapped training) of one tiny run."""
    cfg = tiny_config(name, steps=8, eval_overlap=mode)
    cfg.eval_interval = cfg.checkpoint_interval = 4
    if name.startswith("arq"):
        cfg.agent.num_candidates, cfg.agent.kth, cfg.agent.sampler_steps = 3, 2, 3
    with tempfile.TemporaryDirectory() as wd:
        printed = io.StringIO()
        runner.run_experiment(cfg, os.path.join(wd, "run"), out=printed)
        records = [json.loads(line) for line in open(os.path.join(wd, "run", "metrics.jsonl"))]
    return [{k: v for k, v in r.items() if k != "seed_updates_per_s"} for r in records], "while training ran" in printed.getvalue()


def main() -> int:
    make_tiny_dataset()
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and f[:-3] != "default"
                   and not f.startswith("_") and hasattr(__import__(f"configs.{f[:-3]}", fromlist=["_"]), "get_config"))
    bad = []
    for name in names:
        t = time.time()
        (on, overlapped), (off, _) = run(name, "on"), run(name, "off")
        print(f"{name}: identical={on == off} overlapped={overlapped} ({time.time() - t:.0f}s)", flush=True)
        if on != off or not overlapped:
            bad.append(name)
    print("differ or did not overlap:", ", ".join(bad) or "none")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
