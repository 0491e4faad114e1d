#!/bin/bash
# The GPU figures of docs/performance.md and docs/arq.md, in one short run on one accelerator:
#   OUT=runs/gpu bash experiments/tools/gpu_bench.sh
# TD3+BC (with the minimal hand-written TD3+BC beside it) and IQL at 1, 4, 5, 16, 64 vmapped seeds,
# (--flops_steps=0: on the GPU, XLA returned no cost analysis for the per-update trace, so no share column)
# then ARQ's pre-generation (500-step PC sampler, Dopri5 ODE likelihoods, exact and Hutchinson traces).
set -o pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}; OUT=${OUT:-runs/gpu}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null | tee "$OUT/device.txt"
$PY -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
$PY experiments/tools/bench.py --config=td3bc,iql --seeds=1,4,5,16,64 --chunk=1000 --min_time=2 --flops_steps=0 \
    --matmul=8192 2>&1 | grep -v "^I[0-9]" | tee "$OUT/bench_td3bc_iql.txt"
$PY experiments/tools/bench.py --config=arq --sampler --seeds=1 --sampler_states=256,1024 --sampler_train=200 \
    --sampler_repeats=2 2>&1 | grep -v "^I[0-9]" | tee "$OUT/bench_arq_sampler.txt"
