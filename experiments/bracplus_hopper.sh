#!/bin/bash
# BRAC+ (the reference's scalar alpha, and the paper's alpha(s)) vs BRAC-vp on the local Hopper medium
# and medium-replay suites (100k transitions), 3 seeds vmapped per run, one run at a time (shared
# 2-core machine: niced, one XLA thread). The budget is set by environment variables:
#   BEH  behaviour-model updates (BRAC+ CVAE ensemble; BRAC-vp's behaviour cloning)   default 1000
#   PRE  BRAC+ pretraining-to-min-KL updates                                           default 500
#   N    main-stage updates (one evaluation at the end, EPISODES episodes per seed)      default 1000
#   EPOCH BRAC+ epoch_length (eps_KL / eps_GP statistics)                              default 250
#   RUNS which of bracplus_medium bracplus_sa_medium brac_vp_medium (and _medium-replay) to run
#   OUT  output folder (a run whose results.md exists is skipped, so reruns complete a table)
# e.g.  OUT=runs/bracplus_1k PY=.venv/bin/python experiments/bracplus_hopper.sh
# Each run's table is in $OUT/<name>/results.md, its log in $OUT/<name>.log, wall times in $OUT/walls.txt.
cd "$(dirname "$0")/.."
PY=${PY:-python}; OUT=${OUT:-runs/bracplus_1k}
BEH=${BEH:-1000}; PRE=${PRE:-500}; N=${N:-1000}; EPOCH=${EPOCH:-250}; EPISODES=${EPISODES:-5}
RUNS=${RUNS:-"bracplus_medium bracplus_sa_medium brac_vp_medium bracplus_medium-replay bracplus_sa_medium-replay brac_vp_medium-replay"}
export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
mkdir -p "$OUT"
COMMON="--config.dataset_size=100000 --config.num_seeds=3 --config.num_steps=$N --config.eval_interval=$N \
 --config.eval_episodes=$EPISODES --config.checkpoint_interval=$N --config.wandb.mode=disabled"
BP="--config.agent.behavior_steps=$BEH --config.agent.pretrain_steps=$PRE --config.agent.epoch_length=$EPOCH"
for name in $RUNS; do
  [ -f "$OUT/$name/results.md" ] && { echo "$name: done, skipped"; continue; }
  task=${name#*_medium}; task=medium$task  # medium or medium-replay
  case $name in
    bracplus_sa_*) args="--config=configs/bracplus.py:hopper-$task,state_alpha $BP" ;;
    bracplus_*) args="--config=configs/bracplus.py:hopper-$task $BP" ;;
    brac_vp_*) args="--config=configs/brac_vp.py --config.dataset=offrl/hopper/$task-v0 \
 --config.agent.behavior_steps=$BEH --config.agent.warm_start=$((N / 10))" ;;
    *) echo "unknown run '$name': use bracplus_<task>, bracplus_sa_<task> or brac_vp_<task>" >&2; exit 2 ;;
  esac
  echo "$(date -u +%H:%M:%S) $name: $args"
  t0=$SECONDS
  nice -n 5 $PY experiments/launch.py $args $COMMON --workdir=$OUT/$name > "$OUT/$name.log" 2>&1
  echo "$name exit $? wall $((SECONDS - t0)) s" | tee -a "$OUT/walls.txt"
done
for name in $RUNS; do [ -f "$OUT/$name/results.md" ] && sed -n 3p "$OUT/$name/results.md"; done
