#!/bin/bash
# ARQ+s and ARQ+pi vs IQL on the local Hopper medium dataset at a CPU budget (docs/arq.md, "Hopper at a
# CPU budget"), 3 seeds vmapped per run. Reductions from the paper's settings (configs/arq.py:cpu plus
# the overrides below): a 20k-transition build of offrl/hopper/medium-v0 (in $DATA, built on first use;
# the suite's own copy has 100k), ScoreNet 2 residual blocks of 64 (paper 3 x 256), $SCORE score updates
# (1M), 5 candidates with K = 2 (30, K = 9: the same quantile), 50 PC sampler steps (500), ODE
# rtol = atol = 1e-3 (1e-5) with the exact trace, $Q Q and $Q policy updates (1M each), batch 256 (512).
# IQL gets $Q updates on the same data. One evaluation per seed at the end of each run: 10 episodes
# (ARQ+s: $S_EPISODES; each of its steps samples 5 candidates and solves their likelihood ODE).
#   OUT=runs/arq_cpu XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
#     nice -n 5 experiments/arq_hopper_cpu.sh       (PY=.venv/bin/python; DATA=dir for the 20k build)
# ARQ+pi runs first and pre-generates the candidates; ARQ+s (same score stage, same seeds, same chunks:
# eval_interval = $SCORE) reads them back from the cache. Tables: $OUT/<name>/results.md.
cd "$(dirname "$0")/.."
PY=${PY:-python}; OUT=${OUT:-runs/arq_cpu}; SCORE=${SCORE:-20000}; Q=${Q:-5000}; S_EPISODES=${S_EPISODES:-5}
export MINARI_DATASETS_PATH=${DATA:-$OUT/minari}
COMMON="--config.dataset=offrl/hopper/medium-v0 --config.dataset_size=20000 --config.num_seeds=3 --config.eval_episodes=10
 --config.checkpoint_interval=0 --config.wandb.mode=disabled"
ARQ="--config.agent.score_hidden_dims=(64,64) --config.agent.score_steps=$SCORE --config.agent.q_steps=$Q
 --config.agent.policy_steps=$Q --config.agent.ode_rtol=1e-3 --config.agent.ode_atol=1e-3
 --config.agent.cache_dir=$OUT/cache --config.eval_interval=$SCORE"
run() { name=$1; shift; t0=$SECONDS; echo "=== $name $(date +%T)"; $PY -m offrl "$@" $COMMON --workdir=$OUT/$name 2>&1 | grep --line-buffered -v "^I[0-9]\{4\} "; echo "$name wall $((SECONDS - t0)) s"; }
run arq_pi --config=configs/arq.py:cpu $ARQ
# IQL without XLA_FLAGS: with the single-thread flags of the shared machine (--xla_cpu_multi_thread_eigen=false,
# with or without intra_op_parallelism_threads=1) its 3-seed 5000-update chunk stopped computing twice here
# (0% CPU, every thread in a futex wait, the main thread in BlockUntilReady); without them it ran in 165 s.
XLA_FLAGS= run iql --config=configs/iql.py --config.num_steps=$Q --config.eval_interval=$Q
COMMON="$COMMON --config.eval_episodes=$S_EPISODES" run arq_s --config=configs/arq_s.py:cpu $ARQ  # after COMMON's 10
echo "=== done $(date +%T)"
