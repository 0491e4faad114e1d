#!/bin/bash
# What config.compile_cache saves: each config's short run (every stage 200 updates, one evaluation
# episode per seed, its default 5 seeds and networks) twice against one new cache directory, cold then warm,
# as the launcher's own wall-time line reports them (the warm run's results are checked equal to the cold one's).
#   bash experiments/compile_cache.sh                      # td3bc iql cql bracplus itrpo onestep
#   bash experiments/compile_cache.sh bracplus itrpo
# Needs the local offrl/hopper/medium-v0 dataset at DATASET_SIZE transitions (built on first use).
set -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; N=${STEPS:-200}; DATASET_SIZE=${DATASET_SIZE:-100000}
OUT=$(mktemp -d -t offrl-compile-cache-XXXX); trap 'rm -rf "$OUT"' EXIT
stage_steps() {  # the agent keys that set each stage's length, per config
    case "$1" in
    cql) echo "--config.agent.bc_warmup_steps=$((N / 2))" ;;
    bracplus|bracplus_sa) echo "--config.agent.behavior_steps=$N --config.agent.pretrain_steps=$N" ;;
    itrpo|brac_pr|brac_vp) echo "--config.agent.behavior_steps=$N" ;;
    onestep) echo "--config.agent.behavior_steps=$N --config.agent.q_steps=$N" ;;
    bppo) echo "--config.agent.v_steps=$N --config.agent.q_steps=$N --config.agent.bc_steps=$N --config.agent.pi_steps=$N" ;;
    td3bc|td3bcpp|iql|bc|percent_bc|bear|bearpp) echo "" ;;
    *) echo "compile_cache.sh: no stage lengths known for config '$1': add them to stage_steps" >&2; exit 2 ;;
    esac
}
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); every stage $N updates, dataset $DATASET_SIZE"
echo "| config | cold: wall (s) | cold: compilation | warm: wall (s) | warm: compilation | same results |"
echo "|---|---|---|---|---|---|"
for c in ${*:-td3bc iql cql bracplus itrpo onestep}; do
    extra=$(stage_steps "$c") || exit 2
    for run in cold warm; do
        echo "$(date +%H:%M:%S) $c: $run run ..." >&2
        # shellcheck disable=SC2086
        $PY experiments/launch.py --config="$c" --config.dataset_size="$DATASET_SIZE" --config.num_steps="$N" \
            --config.eval_interval="$N" --config.eval_episodes=1 --config.checkpoint_interval=0 $extra \
            --config.compile_cache="$OUT/xla_$c" --workdir="$OUT/${c}_$run" > "$OUT/${c}_$run.txt" 2>&1 \
            || { echo "| $c | $run run failed: $(tail -1 "$OUT/${c}_$run.txt") |"; continue 2; }
    done
    wall() { sed -n 's/^wall time \([0-9]*\)s.*/\1/p' "$OUT/${c}_$1.txt"; }
    comp() { sed -n 's/^wall time .*; \(compilation .*\)$/\1/p' "$OUT/${c}_$1.txt" | sed "s# from the compile cache $OUT/xla_$c##"; }
    same=$(cmp -s <($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['per_seed_raw'])" "$OUT/${c}_cold/results.json") \
                  <($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['per_seed_raw'])" "$OUT/${c}_warm/results.json") && echo yes || echo NO)
    echo "| $c | $(wall cold) | $(comp cold) | $(wall warm) | $(comp warm) | $same |"
done
