"""The one launcher: train any registered algorithm on any dataset, vmapped over seeds.

    python experiments/launch.py --config=configs/td3bc.py --config.num_seeds=5 \
        --config.dataset=offrl/hopper/medium-v0 --workdir=runs/td3bc_hopper_medium

Writes config.json, metrics.jsonl, results.md/json, curve.png and a checkpoint into
--workdir; running the same command again resumes from the checkpoint.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(ROOT, "configs", "default.py"), "ml_collections config file (configs/<algo>.py)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<algo>_<dataset>_<time>).")
_STOP_AFTER = flags.DEFINE_integer("stop_after", None, "Stop (with a checkpoint) after this many updates.")


def main(argv):
    del argv
    from offrl.runner import run_experiment

    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join(
        "runs", f"{config.algo}_{config.dataset.replace('/', '_')}_{time.strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        run_experiment(config, workdir, stop_after=_STOP_AFTER.value)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
