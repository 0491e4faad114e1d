#!/bin/bash
# The baselines of issue 5 on the local Hopper medium dataset (100k transitions), 3 seeds vmapped
# per algorithm, all under the same budget of N updates (pre-stages N/2, warm-ups N/10).
#   N=10000 OUT=runs/baselines_medium experiments/baselines_medium.sh   (PY=.venv/bin/python to pick the interpreter)
# Each run's table is in $OUT/<name>/results.md; lines below show each run's last progress line and wall time.
cd "$(dirname "$0")/.."
PY=${PY:-python}; OUT=${OUT:-runs/baselines_medium}
N=${N:-10000}
COMMON="--config.dataset=offrl/hopper/medium-v0 --config.dataset_size=100000 --config.num_seeds=3 --config.num_steps=$N --config.eval_interval=$N --config.eval_episodes=10 --config.checkpoint_interval=$N --config.wandb.mode=disabled"
run() { name=$1; shift; t0=$SECONDS; echo "=== $name $(date +%T)"; $PY experiments/launch.py "$@" $COMMON --workdir=$OUT/$name 2>&1 | grep -v "^I[0-9]\{4\} " | tail -4; echo "$name wall $((SECONDS - t0)) s"; }
run bc --config=configs/bc.py
run percent_bc --config=configs/percent_bc.py
run td3bc --config=configs/td3bc.py
run iql --config=configs/iql.py
run onestep --config=configs/onestep.py --config.agent.behavior_steps=$((N/2)) --config.agent.q_steps=$((N/2))
run brac_vp --config=configs/brac_vp.py --config.agent.behavior_steps=$((N/2)) --config.agent.warm_start=$((N/10))
run brac_pr --config=configs/brac_pr.py --config.agent.behavior_steps=$((N/2)) --config.agent.warm_start=$((N/10))
run bear --config=configs/bear.py --config.agent.warmup_steps=$((N/10))
run cql --config=configs/cql.py
echo "=== done $(date +%T)"
