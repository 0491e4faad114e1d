#!/bin/bash
# Mutation testing of the equation code (docs/testing.md): mutmut 2.5.1 on copies of the committed tree.
#
#   bash experiments/tools/mutation/run.sh [TARGET[:FUNC,FUNC...] ...]
#        TARGET in: nets plugins bear cql td3bc bppo bppo_hooks onestep iql bc brac itrpo bracplus arq diffusion
#                   dataset preprocess scores d4rl mixtures collect (the data pipeline),
#                   evaluation runner logger (evaluation, the score row, results.md), common (algos/common.py), sweep
#        (default: the first five, in parallel);
#        ':FUNC,...' mutates only those functions of the target's file (e.g. onestep:exp_weight_loss,stable_action)
#
# Each target gets its own copy in $OUT/<target> (git archive of HEAD), where pragma.py marks every line outside
# the named equation functions (and their docstrings, raises, metric dictionaries) '# pragma: no mutate'.
# driver.py enumerates mutmut's mutants of the file (mutmut's own operators and pragma handling, through its
# library API: list_mutations / mutate) and checks each one against a warm test process (server.py: reloads
# the mutated module, runs the target's fast tests in-process with -x), instead of starting Python + JAX per
# mutant as `mutmut run` does (and `mutmut run`'s result cache broke on these files: "assert line").
# Tests are run in the order given (fast, pointed tests first: a killed mutant stops at its first failure);
# with fixtures, server.py runs pytest.main per mutant.
# Results: $OUT/<target>/mutants.jsonl (one line per mutant: line, mutant, killed|survived) and driver.log.
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
P=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-/tmp/offrl_mutation}
T=$ROOT/experiments/tools/mutation
declare -A FILE=([nets]=offrl/nets.py [plugins]=offrl/plugins.py [bear]=offrl/algos/bear.py [cql]=offrl/algos/cql.py [td3bc]=offrl/algos/td3bc.py
 [bppo]=offrl/algos/bppo.py [bppo_hooks]=offrl/algos/bppo.py [onestep]=offrl/algos/onestep.py [iql]=offrl/algos/iql.py [bc]=offrl/algos/bc.py
 [brac]=offrl/algos/brac.py [itrpo]=offrl/algos/itrpo.py [bracplus]=offrl/algos/bracplus.py [arq]=offrl/algos/arq.py [diffusion]=offrl/diffusion.py
 [dataset]=offrl/data/dataset.py [preprocess]=offrl/data/preprocess.py [scores]=offrl/data/scores.py [d4rl]=offrl/data/d4rl.py [mixtures]=offrl/data/mixtures.py [collect]=offrl/data/collect.py
 [evaluation]=offrl/evaluation.py [runner]=offrl/runner.py [common]=offrl/algos/common.py [sweep]=offrl/sweep.py [logger]=offrl/logger.py)
declare -A MOD=([nets]=offrl.nets [plugins]=offrl.plugins [bear]=offrl.algos.bear [cql]=offrl.algos.cql [td3bc]=offrl.algos.td3bc
 [bppo]=offrl.algos.bppo [bppo_hooks]=offrl.algos.bppo [onestep]=offrl.algos.onestep [iql]=offrl.algos.iql [bc]=offrl.algos.bc
 [brac]=offrl.algos.brac,offrl.algos.itrpo [itrpo]=offrl.algos.itrpo [bracplus]=offrl.algos.bracplus [arq]=offrl.algos.arq
 [diffusion]=offrl.diffusion,offrl.algos.arq
 [dataset]=offrl.data.dataset,offrl.data.preprocess,offrl.data.minari_io,offrl.data.d4rl,offrl.data,offrl.algos.bc [preprocess]=offrl.data.preprocess,offrl.data
 [scores]=offrl.data.scores,offrl.data.minari_io,offrl.data.d4rl,offrl.data [d4rl]=offrl.data.d4rl [mixtures]=offrl.data.mixtures [collect]=offrl.data.collect [evaluation]=offrl.evaluation [runner]=offrl.runner [common]=offrl.algos.common [sweep]=offrl.sweep [logger]=offrl.logger)  # after the first: modules reloaded after it (server.py)
declare -A FUNCS=(
 [nets]=gaussian_log_prob,gaussian_entropy,gaussian_kl,gaussian_sample,tanh_log_det_jacobian,tanh_gaussian_sample,tanh_gaussian_log_prob,mmd,mean_kernel,polyak,standard_normal_kl,vmap_members,folding_dot_general
 [plugins]=safe_norm,action_grads,gradient_penalty,gp_inputs,gp_penalty,gp_penalty_grads,_weighted_penalty,_gp_step,reduce_critics,minmax_weights,percentile_clamp,critic_weights,cr_weights_before
 [bear]=policy_samples,vae_samples,_q,vae_loss,critic_loss,critic_objective,critic_grads,actor_loss,alpha_loss,update,act,init
 [cql]=cql_logsumexp,_sample_pi,_q_many,critic_loss,actor_loss,update
 [td3bc]=critic_loss,actor_loss,critic_objective,critic_grads,bc_weights,update
 [bppo]=clip_at,lr_factor,normalize_advantage,asymmetric_weight,clipped_surrogate,value_update,_q_step,bc_update,policy_loss,offline_score,_policy_params,final_eval_seed,act_with_pik
 [bppo_hooks]=_start_improvement,improve_update,chunk_every,select_bc,after_chunk,extra_scores
 [onestep]=sarsa_target,advantage_weights,nll,behavior_update,q_loss,q_update,reverse_kl_loss,stable_action,exp_weight_loss,start_improvement,improve_update
 [iql]=expectile_loss,awr_weights,init,value_loss,actor_loss,critic_loss,update
 [bc]=loss_fn,top_episodes,prepare_data
 [brac]=behavior_schedule,sample_actions,sampled_kl,sampled_mmd,_divergence,behavior_loss,behavior_update,entropy_weight,policy_estimates,critic_target,action_grad_penalty,critic_loss,actor_loss,update,act
 [itrpo]=init,kl_weight,shaping_log_ratio,shaped_rewards,update
 [bracplus]=softplus_std,encode,decode,__call__,inverse_softplus,clip_keep_grad,step_decay,clip_atanh,elbo_loss,behavior_loss,behavior_step,kl_upper_bound,_policy_kl,pretrain_loss,beta_step,accumulate,end_epoch,behavior_update,pretrain_update,gradient_penalty,target_q,critic_loss,actor_loss,alpha_step,start_main,update,act
 [arq]=floored_stats,standardize_update,score_update,penalty,kth_next_value,support_mean,implicit_choice,_support_batch,_q_of,q_update,awr_advantage,policy_update,act,support_rows,with_support
 [diffusion]=marginal,sde,__call__,make_score_fn,dsm_loss,pc_sample,log_likelihood
 [dataset]=discounted_returns,episodes_to_transitions,sample,select_episodes
 [preprocess]=observations,env_actions,policy_actions,preprocess
 [scores]=d4rl_task_name,reference_scores,normalized_score,normalized_spread
 [d4rl]=task_from_path,read_d4rl,d4rl_episodes,load_d4rl
 [mixtures]=num_transitions,_cut,take_transitions,last_transitions,replaced_count,part_taken,contaminate,concatenate
 [collect]=uniform_policy,collect_episodes
 [evaluation]=evaluate,_next_keys
 [runner]=_plan,scored_evals,_nonfinite,_stats,_summary
 [sweep]=size,hparams,seed_list,parse_grid,members,label
 [logger]=finite_mean,_fmt,score_table,diverged_note
 [common]=adam,_is_hyperparam,learning_rate_of,reset_optimizer,make_state,_scalar_value,log_scalar,entropy_temperature_update,clipped_gaussian_act,every,select
)
declare -A TESTS=(
 [nets]='tests/test_equations.py -k gaussian_or_tanh_or_mmd_or_polyak_or_vae_or_kl_or_vmap_members_or_dense_layers_fold'
 [plugins]='tests/test_equations.py tests/test_plugins.py -k critic_weights_or_cr__or_gp__or_td3bcpp_or_bearpp_or_action_grads_or_gradient_penalty_or_penalty_is_zero_or_minmax_or_critic_objective'
 [bear]='tests/test_equations.py -k bear'
 [cql]='tests/test_equations.py -k cql'
 [td3bc]='tests/test_equations.py tests/test_td3bc.py -k td3bc'
 [bppo]='tests/test_references.py tests/test_bppo.py::test_clipped_surrogate_matches_hand_computation tests/test_bppo.py::test_asymmetric_weight_and_advantage_normalisation tests/test_bppo.py::test_decay_schedules -k bppo'
 [bppo_hooks]='tests/test_references.py tests/test_bppo.py::test_validate_rejects_bad_values -k bppo_and_(improvement_or_iterative_or_after_chunk_or_best_pik_or_acts_with_or_final_eval_or_validate_or_strictly_better)'
 [onestep]='tests/test_references.py tests/test_baselines.py -k onestep'
 [iql]='tests/test_references.py tests/test_baselines.py -k iql'
 [bc]='tests/test_references.py tests/test_baselines.py -k bc_losses_or_percent_bc'
 [brac]='tests/test_equations.py tests/test_baselines.py tests/test_itrpo.py -k (brac_or_itrpo)_and_not_paper_tables'
 [itrpo]='tests/test_equations.py::test_brac_and_itrpo_actor_step_reads_the_stepped_online_critic_and_polyak_moves_the_target tests/test_itrpo.py -k not_paper_tables'
 [bracplus]='tests/test_bracplus.py -k not_paper_table'
 [arq]='tests/test_truncated_ends.py::test_arq_q_step_drops_the_truncated_last_transition tests/test_arq.py::test_awr_step_reads_the_first_target_critic_and_clips_its_weights tests/test_arq.py::test_kth_next_value_by_hand tests/test_arq.py::test_support_mean_averages_the_finite_entries_only tests/test_arq.py::test_awr_advantage_and_implicit_choice_by_hand tests/test_arq.py::test_implicit_act_clips_candidates_and_picks_among_the_supported tests/test_arq.py::test_explicit_act_is_the_clipped_gaussian_actor tests/test_arq.py::test_score_update_keeps_an_ema_of_the_weights tests/test_arq.py::test_score_loss_is_each_members_dsm_loss_on_its_own_slice_and_key tests/test_arq.py::test_q_update_target_and_loss_from_pregenerated_support_by_hand tests/test_arq.py::test_policy_update_weights_from_candidates_at_each_rows_own_state_by_hand tests/test_arq.py::test_standardize_stage_takes_the_whole_datasets_statistics_as_the_reference tests/test_arq.py::test_support_rows_map_states_and_episode_ends tests/test_arq.py::test_with_support_is_pregenerates_layout_for_any_values tests/test_arq.py::test_implicit_policy_acts_with_in_support_candidates tests/test_arq.py::test_score_training_on_two_mode_mixture_puts_samples_in_both_modes'
 [dataset]='tests/test_data.py tests/test_d4rl.py tests/test_baselines.py::test_percent_bc_keeps_exactly_the_top_episodes'
 [preprocess]='tests/test_data.py tests/test_evaluation.py::test_vectorised_evaluation_matches_plain_rollouts'
 [scores]='tests/test_data.py tests/test_d4rl.py'
 [d4rl]='tests/test_d4rl.py'
 [mixtures]='tests/test_mixtures.py'
 [collect]='tests/test_build.py::test_collected_episodes_replay_step_for_step_in_the_environment'
 [evaluation]='tests/test_evaluation.py'
 [runner]='tests/test_contract.py'
 [common]='tests/test_common.py'
 [sweep]='tests/test_sweep.py'
 [logger]='tests/test_contract.py'
 [diffusion]='tests/test_arq.py::test_pc_sampler_steps_by_hand tests/test_arq.py::test_dsm_loss_and_fourier_features_by_hand tests/test_arq.py::test_ode_solve_past_its_step_limit_gives_nan_rows_not_an_error_and_steps_are_counted tests/test_arq.py::test_ode_log_likelihood_matches_closed_form tests/test_arq.py::test_pc_sampler_with_exact_score_matches_gaussian tests/test_arq.py::test_per_row_corrector_widens_low_dimensional_samples tests/test_arq.py::test_score_training_on_two_mode_mixture_puts_samples_in_both_modes tests/test_arq.py::test_implicit_policy_acts_with_in_support_candidates'
)
run_target() {
  local name=${1%%:*} funcs d=$OUT/${1%%:*}
  funcs=${FUNCS[$name]}; [[ $1 == *:* ]] && funcs=${1#*:}
  rm -rf "$d" && mkdir -p "$d"
  (cd "$ROOT" && git archive HEAD offrl tests configs setup.py | tar -x -C "$d")
  cd "$d" && $P "$T/pragma.py" "${FILE[$name]}" "$funcs"
  read -r -a args <<< "${TESTS[$name]}"
  local i; for i in "${!args[@]}"; do  # the -k expression: _or_ / _and_ / not_ stand for spaced operators
    if [[ $i -gt 0 && ${args[$((i - 1))]} == -k ]]; then args[$i]=${args[$i]//_or_/ or }; args[$i]=${args[$i]//_and_/ and }
    args[$i]=${args[$i]//not_/not }; fi
  done
  export PYTHONPATH=$d PYTHONDONTWRITEBYTECODE=1 JAX_PLATFORMS=cpu
  nice -n "${NICE:-19}" $P "$T/server.py" "$d/sock" "${MOD[$name]}" -- "${args[@]}" > "$d/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 900); do grep -q "^ready" "$d/server.log" 2>/dev/null && break; sleep 1; done
  nice -n "${NICE:-19}" $P "$T/driver.py" "${FILE[$name]}" "$d/sock" "$d/mutants.jsonl" > "$d/driver.log" 2>&1
  kill $server
  echo "$name: $(grep -c '"killed"' "$d/mutants.jsonl") killed, $(grep -c '"timeout"' "$d/mutants.jsonl") timed out (killed)," \
       "$(grep -c '"survived"' "$d/mutants.jsonl") survived ($d/mutants.jsonl)"
}
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(nets plugins bear cql td3bc)
for t in "${targets[@]}"; do run_target "$t" & done
wait
