#!/bin/bash
# GPU measurements of docs/performance.md, one part per call (each fits a 10-minute call on one GPU):
#   OUT=runs/gpu_scaling bash experiments/tools/gpu_scaling.sh bench   # about 4-5 minutes
#   OUT=runs/gpu_scaling bash experiments/tools/gpu_scaling.sh e2e     # up to E2E_LIMIT seconds (default 540)
#   OUT=runs/gpu_scaling bash experiments/tools/gpu_scaling.sh overlap # about 3-4 minutes
#   OUT=runs/gpu_scaling bash experiments/tools/gpu_scaling.sh cpu     # about 3 minutes, the host's CPU only
#   OUT=runs/gpu_scaling bash experiments/tools/gpu_scaling.sh gemm    # about 4-5 minutes
# bench:   TD3+BC at 1 and 16 seeds, profiled (bench.py --profile_dir) and the ops summarised side by side
#          (profile_summary.py); 16 seeds again under XLA flag variants (CUDA graphs off, Triton GEMMs off, no
#          autotuning) and matmul precisions (float32, bfloat16); bench.py --traffic (bytes and kernels per
#          update against the HBM bandwidth); one evaluation on the host's cores (bench.py --eval).
# e2e:     a 5-seed, 1M-update TD3+BC run with its 200 evaluations through the launcher, cut at E2E_LIMIT
#          seconds; the launcher's wall-time split is the last line of $OUT/e2e.txt. Needs the local Hopper
#          medium 100k dataset under MINARI_DATASETS_PATH (or builds it).
# overlap: the same run at 200k updates with eval_overlap=off, then on, each cut at 250 s.
# cpu:     16 TD3+BC seeds on 1 host CPU device, then sharded over 16 (--xla_force_host_platform_device_count).
# gemm:    TD3+BC at 1 and 16 seeds under the default flags, then each GEMM flag alone (cuBLASLt, cuDNN GEMM
#          fusions, Triton warp specialisation, Triton for every GEMM, exhaustive tile search); a flag this
#          XLA does not know ends its own row only.
# A machine whose image lacks ml_collections, gymnasium, mujoco or minari: carry their wheels (e.g. in an
# ignored .whl/) and the dataset (an ignored .dsets/), and start the call with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site:$PWD MINARI_DATASETS_PATH=$PWD/.dsets
set -o pipefail
cd "$(dirname "$0")/../.."
PART=${1:-bench}
PY=${PY:-python3}; OUT=${OUT:-runs/gpu_scaling}; E2E_LIMIT=${E2E_LIMIT:-540}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
quiet() { grep -v "^I[0-9]"; }
# TD3+BC at 1 and 16 seeds once per environment assignment (a hypothesis each), its rows (or the error that
# ended it: a flag this XLA does not know) appended to $OUT/$1; 150 s each
variants() {
    local file="$OUT/$1"; shift
    for var in "$@"; do
        echo "== $var" | tee -a "$file"
        env "$var" timeout 150 $PY experiments/tools/bench.py --config=td3bc --seeds=1,16 --chunk=1000 --min_time=2 \
            --flops_steps=0 --baseline=false --noheader 2>&1 | quiet | grep -E "^\||rror|nknown" | tee -a "$file"
    done
}
device_info() { { nvidia-smi -L; echo "host cores: $(nproc)"; } 2>&1 | tee "$OUT/device.txt"; }
case "$PART" in
bench)
    device_info
    $PY experiments/tools/bench.py --config=td3bc --seeds=1,16 --chunk=1000 --min_time=2 --flops_steps=0 --matmul=8192 \
        --profile_dir="$OUT/prof" 2>&1 | quiet | tee "$OUT/bench_td3bc.txt"
    $PY experiments/tools/profile_summary.py "$OUT/prof/td3bc_train_1" "$OUT/prof/td3bc_train_16" --top 25 | tee "$OUT/profile.md"
    # the GPU's own fused memory traffic per update and per added seed, against the HBM bandwidth
    case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)" in *H200*) BW=4800 ;; *H100*) BW=3350 ;; *) BW=0 ;; esac
    $PY experiments/tools/bench.py --traffic --config=td3bc,iql --seeds=1,4,16,64 --chunk=1000 --bandwidth=$BW 2>&1 | quiet \
        | tee "$OUT/traffic.txt"
    # matmul precision: float32 inputs run as TF32 on tensor cores by default; if 16 seeds take as long in full
    # float32 (no tensor cores), the matmuls are not where the added seeds' time goes; bfloat16 bounds the other side
    variants variants.txt "XLA_FLAGS=--xla_gpu_enable_command_buffer=" "XLA_FLAGS=--xla_gpu_enable_triton_gemm=false" \
        "XLA_FLAGS=--xla_gpu_autotune_level=0" "JAX_DEFAULT_MATMUL_PRECISION=float32" \
        "JAX_DEFAULT_MATMUL_PRECISION=bfloat16"
    $PY experiments/tools/bench.py --eval --config=td3bc --size=10000 --eval_workers=1,0,8 2>&1 | quiet \
        | tee "$OUT/eval.txt"
    ;;
e2e)
    timeout "$E2E_LIMIT" $PY experiments/launch.py --config=configs/td3bc.py --config.dataset=offrl/hopper/medium-v0 \
        --config.dataset_size=100000 --workdir="$OUT/e2e_run" 2>&1 | quiet > "$OUT/e2e.txt"
    echo "e2e exit $? (124: cut at ${E2E_LIMIT}s)" | tee -a "$OUT/e2e.txt"; tail -4 "$OUT/e2e.txt"
    ;;
overlap)
    for mode in off on; do
        rm -rf "$OUT/overlap_$mode"
        timeout 250 $PY experiments/launch.py --config=configs/td3bc.py --config.dataset=offrl/hopper/medium-v0 \
            --config.dataset_size=100000 --config.num_steps=200000 --config.eval_overlap=$mode \
            --workdir="$OUT/overlap_$mode" 2>&1 | quiet > "$OUT/overlap_$mode.txt"
        echo "eval_overlap=$mode exit $? (124: cut at 250s)" | tee -a "$OUT/overlap_$mode.txt"
        grep -E "wall time|eval_overlap" "$OUT/overlap_$mode.txt"
    done
    ;;
cpu)
    for k in 1 16; do
        JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=$k timeout 150 $PY experiments/launch.py \
            --config=configs/td3bc.py --config.dataset=offrl/hopper/medium-v0 --config.dataset_size=100000 \
            --config.num_seeds=16 --config.num_steps=2000 --config.eval_interval=500 --config.eval_episodes=1 \
            --config.compile_cache=off --workdir="$OUT/cpu_$k" 2>&1 | quiet > "$OUT/cpu_$k.txt"
        echo "16 seeds on $k CPU device(s), seed-updates/s of the last chunks: $(grep -o '"seed_updates_per_s": [0-9]*' \
            "$OUT/cpu_$k/metrics.jsonl" | tail -3 | cut -d' ' -f2 | tr '\n' ' ')" | tee -a "$OUT/cpu.txt"
    done
    ;;
gemm)
    device_info
    # the exhaustive tile search last: its autotuning may take minutes
    variants gemm.txt XLA_FLAGS= XLA_FLAGS=--xla_gpu_enable_cublaslt=true XLA_FLAGS=--xla_gpu_cudnn_gemm_fusion_level=2 \
        XLA_FLAGS=--xla_gpu_experimental_enable_triton_warp_specialization=true \
        XLA_FLAGS=--xla_gpu_triton_gemm_any=true XLA_FLAGS=--xla_gpu_exhaustive_tiling_search=true
    ;;
*)
    echo "usage: gpu_scaling.sh bench|e2e|overlap|cpu|gemm" >&2; exit 2 ;;
esac
