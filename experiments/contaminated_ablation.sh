#!/bin/bash
# TD3BC++ ablation (paper Figure 8) on the local Hopper suite: TD3+BC, +GP, +CR and TD3BC++ on expert (E),
# expert-random-30 (ER3) and expert-random-50 (ER5), 100k transitions, 3 seeds vmapped, N updates each.
#   N=10000 OUT=runs/contaminated JOBS="ER5:td3bc ER5:td3bcpp" experiments/contaminated_ablation.sh
# JOBS lists <setting>:<variant> with variant td3bc | gp | cr | td3bcpp (default: all twelve, most telling first).
cd "$(dirname "$0")/.."
PY=${PY:-python}; OUT=${OUT:-runs/contaminated}
N=${N:-10000}
COMMON="--config.dataset_size=100000 --config.num_seeds=3 --config.num_steps=$N --config.eval_interval=$((N/4)) --config.eval_episodes=5 --config.checkpoint_interval=$N --config.wandb.mode=disabled"
run() { name=$1; shift; t0=$SECONDS; echo "=== $name $(date +%T)"; $PY experiments/launch.py "$@" $COMMON --workdir=$OUT/$name 2>&1 | grep -v "^I[0-9]\{4\} " | tail -7; echo "$name wall $((SECONDS - t0)) s"; }
for job in ${JOBS:-ER5:td3bc ER5:td3bcpp ER5:cr ER5:gp ER3:td3bc ER3:td3bcpp E:td3bc E:td3bcpp ER3:cr E:cr ER3:gp E:gp}; do
  ds=hopper-${job%%:*}; v=${job##*:}
  case $v in td3bc) w=",nogp,nocr";; cr) w=",nogp";; gp) w=",nocr";; *) w="";; esac
  run ${ds}_$v "--config=configs/td3bcpp.py:$ds$w"
done
echo "=== done $(date +%T)"
