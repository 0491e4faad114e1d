#!/bin/bash
# Mutation testing of the equation code (docs/testing.md): mutmut 2.5.1 on copies of the committed tree.
#
#   bash experiments/mutation/run.sh [TARGET ...]     TARGET in: nets plugins bear cql td3bc (default: all, in parallel)
#
# Each target gets its own copy in $OUT/<target> (git archive of HEAD), where pragma.py marks every line outside
# the named equation functions (and their docstrings, raises, metric dictionaries) '# pragma: no mutate'.
# driver.py enumerates mutmut's mutants of the file (mutmut's own operators and pragma handling, through its
# library API: list_mutations / mutate) and checks each one against a warm test process (server.py: reloads
# the mutated module, runs the target's fast tests in-process with -x), instead of starting Python + JAX per
# mutant as `mutmut run` does (and `mutmut run`'s result cache broke on these files: "assert line").
# Tests must not use fixtures (server.py calls them directly; parametrize is fine).
# Results: $OUT/<target>/mutants.jsonl (one line per mutant: line, mutant, killed|survived) and driver.log.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
P=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-/tmp/offrl_mutation}
T=$ROOT/experiments/mutation
declare -A FILE=([nets]=offrl/nets.py [plugins]=offrl/plugins.py [bear]=offrl/algos/bear.py [cql]=offrl/algos/cql.py [td3bc]=offrl/algos/td3bc.py)
declare -A MOD=([nets]=offrl.nets [plugins]=offrl.plugins [bear]=offrl.algos.bear [cql]=offrl.algos.cql [td3bc]=offrl.algos.td3bc)
declare -A FUNCS=(
 [nets]=gaussian_log_prob,gaussian_entropy,gaussian_kl,gaussian_sample,tanh_log_det_jacobian,tanh_gaussian_sample,tanh_gaussian_log_prob,mmd,mean_kernel,polyak,standard_normal_kl
 [plugins]=safe_norm,action_grads,gradient_penalty,gp_inputs,gp_penalty,gp_penalty_grads,_weighted_penalty,_gp_step,reduce_critics,minmax_weights,percentile_clamp,critic_weights,cr_weights_before
 [bear]=policy_samples,vae_samples,_q,vae_loss,critic_loss,critic_objective,critic_grads,actor_loss,alpha_loss,update,act,init
 [cql]=cql_logsumexp,_sample_pi,_q_many,critic_loss,actor_loss,update
 [td3bc]=critic_loss,actor_loss,critic_objective,critic_grads,bc_weights,update
)
declare -A TESTS=(
 [nets]='tests/test_equations.py -k gaussian_or_tanh_or_mmd_or_polyak_or_vae_or_kl'
 [plugins]='tests/test_equations.py tests/test_plugins.py -k critic_weights_or_cr__or_gp__or_td3bcpp_or_bearpp_or_action_grads_or_gradient_penalty_or_penalty_is_zero_or_minmax_or_critic_objective'
 [bear]='tests/test_equations.py -k bear'
 [cql]='tests/test_equations.py -k cql'
 [td3bc]='tests/test_equations.py -k td3bc'
)
run_target() {
  local name=$1 d=$OUT/$1
  rm -rf "$d" && mkdir -p "$d"
  (cd "$ROOT" && git archive HEAD offrl tests configs setup.py | tar -x -C "$d")
  cd "$d" && $P "$T/pragma.py" "${FILE[$name]}" "${FUNCS[$name]}"
  read -r -a args <<< "${TESTS[$name]}"
  args=("${args[@]//_or_/ or }")
  export PYTHONPATH=$d PYTHONDONTWRITEBYTECODE=1 JAX_PLATFORMS=cpu
  nice -n 19 $P "$T/server.py" "$d/sock" "${MOD[$name]}" -- "${args[@]}" > "$d/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 900); do grep -q ready "$d/server.log" 2>/dev/null && break; sleep 1; done
  nice -n 19 $P "$T/driver.py" "${FILE[$name]}" "$d/sock" "$d/mutants.jsonl" > "$d/driver.log" 2>&1
  kill $server
  echo "$name: $(grep -c killed "$d/mutants.jsonl") killed, $(grep -c survived "$d/mutants.jsonl") survived ($d/mutants.jsonl)"
}
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(nets plugins bear cql td3bc)
for t in "${targets[@]}"; do run_target "$t" & done
wait
