"""The one launcher, run from a checkout: the same as ``python -m offrl`` (offrl/launch.py).

    python experiments/launch.py --config=configs/td3bc.py --config.num_seeds=5 \
        --config.dataset=offrl/hopper/medium-v0 --workdir=runs/td3bc_hopper_medium

``--config`` takes a path or a bare name (``td3bc``); ``--print_config`` lists every key.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from offrl.launch import run  # noqa: E402

if __name__ == "__main__":
    run()
