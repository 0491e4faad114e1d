#!/bin/bash
# iTRPO vs BRAC-vp on the local Hopper medium and medium-replay suites (100k transitions),
# 3 seeds vmapped per run, the same budget for both: B behaviour-cloning updates, then N agent updates
# (BRAC's Q-free warm start scaled to N/25, as 20k of 500k). The four runs go in parallel at nice 19.
#   B=2000 N=300 OUT=runs/itrpo_hopper PY=.venv/bin/python experiments/itrpo_hopper.sh
# Each run's table is in $OUT/<name>/results.md; the last lines of $OUT/<name>.log show its progress.
cd "$(dirname "$0")/.."
PY=${PY:-python}; OUT=${OUT:-runs/itrpo_hopper}
N=${N:-300}; B=${B:-$N}
mkdir -p "$OUT"
# build the two datasets first, one at a time (parallel runs would each build them and race)
nice -n 19 $PY -m offrl.data.build --env=Hopper-v5 --levels=medium,medium-replay --size=100000 --resume
COMMON="--config.dataset_size=100000 --config.num_seeds=3 --config.num_steps=$N --config.eval_interval=$N --config.eval_episodes=10 --config.checkpoint_interval=$N --config.agent.behavior_steps=$B --config.wandb.mode=disabled"
run() { name=$1; shift; t0=$SECONDS; nice -n 19 $PY experiments/launch.py "$@" $COMMON --workdir=$OUT/$name > $OUT/$name.log 2>&1; echo "$name exit $? wall $((SECONDS - t0)) s" >> $OUT/walls.txt; }
for level in medium medium-replay; do
  run brac_vp_$level --config=configs/brac_vp.py --config.dataset=offrl/hopper/$level-v0 --config.agent.warm_start=$((N/25>0 ? N/25 : 1)) &
  run itrpo_$level --config=configs/itrpo.py --config.dataset=offrl/hopper/$level-v0 &
done
wait
for f in "$OUT"/*/results.md; do echo "== $f"; cat "$f"; done
cat "$OUT/walls.txt"
