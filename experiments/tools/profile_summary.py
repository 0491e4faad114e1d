"""Where a profiled chunk's time goes: the ops (GPU kernels, or CPU thunks) of a jax.profiler trace.

    python experiments/tools/bench.py --config=td3bc --seeds=1,16 --profile_dir=runs/prof ...
    python experiments/tools/profile_summary.py runs/prof/td3bc_train_1 runs/prof/td3bc_train_16

For each trace directory (the newest ``*.trace.json.gz`` below it), the events of its device
lines (``/device:GPU:*`` streams; on the CPU, XLA's thunks on ``/host:CPU``) grouped by op name:
total time, calls, mean time per call, share of the device lines' total. Two directories side by
side show which ops grow with the number of seeds, e.g. 16 seeds against one. On the CPU an op that
holds others (``while``, ``cond``) is counted with its body, so the shares overlap there.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys

HOST_NOISE = re.compile(r"^(\$|ThunkExecutor|PjitFunction|CommonPjRt|Pjrt|TfrtCpu|XlaModule)")


def load(path: str) -> tuple[collections.Counter, collections.Counter, str]:
    files = sorted(glob.glob(os.path.join(path, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not files:
        sys.exit(f"no *.trace.json.gz below {path}: give a directory that bench.py --profile_dir wrote")
    with gzip.open(files[-1]) as f:
        events = json.load(f)["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    gpu = [p for p, n in names.items() if "/device:GPU" in n]
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") != "X":
            continue
        if gpu:
            if e["pid"] not in gpu:
                continue
        elif HOST_NOISE.match(e["name"]):  # CPU: keep XLA's ops, not the Python and runtime frames around them
            continue
        op = re.sub(r"\.\d+$", "", e["name"])  # fusion.12, fusion.7 -> fusion
        total[op] += e.get("dur", 0.0)
        calls[op] += 1
    return total, calls, "GPU" if gpu else "CPU"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--top", type=int, default=20)
    a = p.parse_args(argv)
    loaded = [load(d) for d in a.dirs]
    order = [op for op, _ in loaded[-1][0].most_common(a.top)]
    head = " | ".join(f"{os.path.basename(d.rstrip('/'))} ({kind}) ms / calls / us per call / share"
                      for d, (_, _, kind) in zip(a.dirs, loaded))
    print(f"| op | {head} |")
    print("|---|" + "---|" * len(loaded))
    for op in order:
        cells = []
        for total, calls, _ in loaded:
            t, c, s = total[op], calls[op], sum(total.values()) or 1.0
            cells.append(f"{t / 1e3:.2f} / {c} / {t / max(c, 1):.1f} / {100 * t / s:.1f}%")
        print(f"| {op[:70]} | {' | '.join(cells)} |")
    print("| all ops | " + " | ".join(f"{sum(t.values()) / 1e3:.2f} / {sum(c.values())}" for t, c, _ in loaded) + " |")


if __name__ == "__main__":
    main()
