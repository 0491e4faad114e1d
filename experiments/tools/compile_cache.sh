#!/bin/bash
# What config.compile_cache saves: each config's short run (every stage 200 updates, one evaluation
# episode per seed, its default 5 seeds and networks) twice against one new cache directory, cold then warm,
# from each run's results.json timing (the warm run's per-seed returns are checked equal to the cold one's).
#   bash experiments/tools/compile_cache.sh                      # td3bc iql cql bracplus itrpo onestep
#   bash experiments/tools/compile_cache.sh bracplus itrpo
# Needs the local offrl/hopper/medium-v0 dataset at DATASET_SIZE transitions (built on first use).
set -o pipefail
cd "$(dirname "$0")/../.."
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
    $PY - "$c" "$OUT/${c}_cold/results.json" "$OUT/${c}_warm/results.json" <<'PYEOF'
import json, sys
name, cold, warm = sys.argv[1], *(json.load(open(p)) for p in sys.argv[2:])
def comp(t):  # the runner's summary["timing"]
    saved = f", {t['compile_seconds_saved']:.0f}s of compiling saved" if t["programs_from_cache"] else ""
    return f"compilation {t['compilation_s']:.0f}s ({t['programs_from_cache']} of {t['programs']} programs loaded{saved})"
same = "yes" if cold["per_seed_raw"] == warm["per_seed_raw"] else "NO"
print(f"| {name} | {cold['timing']['wall_s']:.0f} | {comp(cold['timing'])} | {warm['timing']['wall_s']:.0f} | {comp(warm['timing'])} | {same} |")
PYEOF
done
