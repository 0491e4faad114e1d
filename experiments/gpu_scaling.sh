#!/bin/bash
# Issue 17's open GPU questions in one device call (about 10 minutes; run on the lent machine):
#   OUT=runs/gpu_scaling bash experiments/gpu_scaling.sh
# 1. why 16 vmapped seeds give 7.5x one seed's seed-updates/s and not >= 12x: TD3+BC at 1 and 16
#    seeds, profiled (bench.py --profile_dir), and the ops that grow summarised side by side;
# 2. evaluation on the device host's cores: one evaluation of the td3bc config (5 seeds x 10
#    full-length Hopper episodes) in process and over worker processes (config.eval_workers);
# 3. the end-to-end time of a 5-seed, 1M-update TD3+BC run with its 200 evaluations (the launcher's
#    own wall-time split), cut at E2E_LIMIT seconds; its progress lines are kept in $OUT/e2e.txt.
set -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; OUT=${OUT:-runs/gpu_scaling}; E2E_LIMIT=${E2E_LIMIT:-420}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null | tee "$OUT/device.txt"; nproc | tee -a "$OUT/device.txt"
$PY experiments/bench.py --config=td3bc --seeds=1,16 --chunk=1000 --min_time=2 --flops_steps=0 --matmul=8192 \
    --profile_dir="$OUT/prof" 2>&1 | grep -v "^I[0-9]" | tee "$OUT/bench_td3bc.txt"
$PY experiments/profile_summary.py "$OUT/prof/td3bc_train_1" "$OUT/prof/td3bc_train_16" --top 25 | tee "$OUT/profile.md"
$PY experiments/bench.py --eval --config=td3bc --size=10000 --eval_workers=1,0,8 2>&1 | grep -v "^I[0-9]" | tee "$OUT/eval.txt"
timeout "$E2E_LIMIT" $PY experiments/launch.py --config=configs/td3bc.py --config.dataset=offrl/hopper/medium-v0 \
    --config.dataset_size=100000 --workdir="$OUT/e2e_run" 2>&1 | grep -v "^I[0-9]" > "$OUT/e2e.txt"
echo "e2e exit $? (124: cut at ${E2E_LIMIT}s)" | tee -a "$OUT/e2e.txt"; tail -4 "$OUT/e2e.txt"
