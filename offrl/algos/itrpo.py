"""iTRPO — an implicit trust region for behaviour-regularised offline RL (Zhang & Tan, AAAI 2023),
built on BRAC's value-penalty framework (``offrl/algos/brac.py``): the same behaviour model,
critics, Polyak targets, KL estimates, value-penalised target and policy loss, with one change,
every offline reward shaped by the log-ratio of pi_k to pi_b:

    r~ = r + bonus + tau alpha max(log pi_k(a|s) - log pi_b(a|s), clip)          (paper Eq. 5)
    y  = r~ + gamma (1 - d) [min_i mean_j Q'_i(s', a'_j) - w KL(s')],  a'_j ~ pi(.|s'), j = 1..10
    KL(s) = mean_j [log pi(a_j|s) - log pi_b(a_j|s)]  on the same 10 samples that average Q
    L_Q  = sum_i mean (Q_i(s, a) - y)^2 + f_reg sum_i mean |grad_a Q_i(s, a~pi)|^2
    L_pi = mean [w KL(s) - min_i mean_j Q_i(s, a_j)]

By the paper's Theorem 1 this is BRAC with KL(pi || pi_k) weighted tau alpha and KL(pi || pi_b)
weighted w - tau alpha: the policy step's optimum is pi ∝ pi_k^rho pi_b^(1-rho) exp(Q'/w) with
rho = tau alpha / w. With the paper's w = alpha, rho = tau (pi_k^0.9 pi_b^0.1); with the code's
w = tau, rho = alpha (pi_k^0.03 pi_b^0.97 exp(Q'/0.9)). ``tests/test_itrpo.py`` checks both on these losses.

Reference code followed (the ONE reference): JackZhangY/offorRL, ``d4rl/rlkit/torch/sac/ikl_trainer.py``
(the 'IKL' trainer, by the paper's first author) with ``d4rl/configs/trainer/ikl.yaml``; the
behaviour model is its ``bc_trainer.py`` with ``configs/trainer/bc.yaml``. Defaults are that code's:
alpha 0.03, tau 0.9, bonus 5.0, clip -1 (below only), 10 action samples, f_reg 0.1, Q and policy
3 x 256, lr 3e-4 both, Polyak 0.005, batch 256, 1M updates; pi_b a tanh-Gaussian 2 x 256 trained
1M updates by NLL of the dataset actions (clipped to +-(1 - 1e-6)) plus an entropy bonus tuned to
target entropy -|A|, lr 1e-3 x0.1 at 80% and 90% (``behavior_lr_milestones``); log-std clipped
to [-5, 2]; no entropy term and no warm start in the agent.

Where the paper and the code disagree, the default is the code's (it produced the paper's tables)
and the paper's choice is a switch:
- the KL weight w in the target and the policy loss: the paper's Eq. 5 uses alpha, the code
  (``ikl_trainer.py``: ``next_target_q - self.tau * next_state_kl`` and ``self.tau * state_kl`` in
  the policy loss) multiplies both KLs by tau, so with alpha 0.03, tau 0.9 the code's KL weight is
  0.9, the paper's 0.03. Default: the code's (``agent.kl_factor='tau'``); ``'alpha'`` is the paper's.
- pi_k: the code uses the current policy (no gradient) when it builds the target, which is the
  paper's Eq. 5 with pi_{k+1} the newest iterate; followed: that (``agent.pi_k='current'``).
  ``'lagged'`` uses a copy of pi refreshed every ``agent.pi_k_interval`` updates (the previous
  iterate of Theorem 1 for a longer iteration; neither the paper nor the code gives an interval,
  5000 is ours). A lagged copy refreshed every update equals 'current' exactly (tested).
Shared with BRAC and otherwise as the reference: entropy temperatures learned in log space,
Flax's default initialisation (rlkit initialises the last layers in +-1e-3), pre-tanh KL densities.
``agent.shaping=False`` removes the shaping term: the update is then BRAC-vp's with the same
hyperparameters and BRAC's alpha set to the KL weight w, bit for bit (tested).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage, brac
from offrl.algos.common import every, select
from offrl.checks import Checks

KL_FACTORS = ("alpha", "tau")
PI_K_CHOICES = ("current", "lagged")


def default_agent_config() -> ml_collections.ConfigDict:
    c = brac.default_agent_config()
    c.update(
        dict(
            variant="vp",  # iTRPO is defined on the value-penalty variant only
            alpha=0.03,  # ikl.yaml alpha
            shaping=True,
            shaping_tau=0.9,  # ikl.yaml tau: the paper's tau (not the Polyak rate agent.tau)
            shaping_clip=-1.0,  # ikl.yaml l_clip: log-ratio clipped below (no upper clip: u_clip=None)
            shaping_eps=1e-6,  # dataset actions clipped to +-(1 - eps) for the log-densities (rlkit TanhNormal)
            kl_factor="tau",  # ikl_trainer.py: both KLs weighted by tau; 'alpha': the paper's Eq. 5
            pi_k="current",
            pi_k_interval=5_000,
            reward_bonus=5.0,  # ikl.yaml reward_bonus
            grad_penalty=0.1,  # ikl.yaml f_reg
            num_div_samples=10,  # ikl.yaml num_qs
            num_target_samples=10,
            shared_target_samples=True,
            warm_start=0,  # bc_warm_start=0 (unused by the trainer): Q from the first update
            alpha_entropy=0.0,
            train_alpha_entropy=False,
            behavior_steps=1_000_000,  # bc.yaml total_training_steps
            behavior_lr=1e-3,  # bc.yaml policy_lr
            behavior_lr_milestones=(0.8, 0.9),  # MultiStepLR milestones [800000, 900000], gamma 0.1
            behavior_entropy=True,  # with_entropy_target=True
            behavior_clip_eps=1e-6,
            behavior_hidden_dims=(256, 256),
            actor_hidden_dims=(256, 256, 256),
            critic_hidden_dims=(256, 256, 256),
            num_critics=2,
            actor_lr=3e-4,
            critic_lr=3e-4,
            tau=0.005,  # soft_target_tau
            log_std_min=-5.0,  # rlkit LOG_SIG_MIN / LOG_SIG_MAX, clamped
            log_std_max=2.0,
            log_std_mode="clip",
        )
    )
    return c


class ITRPOState(brac.BRACState):
    pi_k: dict  # the lagged pi_k's parameters (agent.pi_k='lagged'); a copy of pi's otherwise unused


def init(key, spec: Spec, config) -> ITRPOState:
    s = brac.init(key, spec, config)
    return ITRPOState(s.behavior, s.behavior_ent, s.actor, s.critic, s.log_ent, s.critic_target, s.actor.params)


def kl_weight(config):
    """w, the weight of KL(pi || pi_b) in the target and the policy loss: alpha (paper) or tau (code)."""
    ag = config.agent
    return ag.alpha if ag.kl_factor == "alpha" else ag.shaping_tau


def shaping_log_ratio(state: ITRPOState, obs, actions, config):
    """max(log pi_k(a|s) - log pi_b(a|s), shaping_clip) for dataset (s, a), no gradient."""
    ag = config.agent
    pk_params = state.actor.params if ag.pi_k == "current" else state.pi_k
    mean_k, log_std_k = state.actor.apply_fn(pk_params, obs)
    mean_b, log_std_b = state.behavior.apply_fn(state.behavior.params, obs)
    ratio = (nets.tanh_gaussian_log_prob(actions, mean_k, log_std_k, ag.shaping_eps)
             - nets.tanh_gaussian_log_prob(actions, mean_b, log_std_b, ag.shaping_eps))
    return jax.lax.stop_gradient(jnp.maximum(ratio, ag.shaping_clip))


def shaped_rewards(state: ITRPOState, batch, config):
    """(r + tau alpha max(log pi_k/pi_b, clip), the clipped log-ratio); BRAC's target adds the bonus."""
    ag = config.agent
    ratio = shaping_log_ratio(state, batch.observations, batch.actions, config)
    return batch.rewards + ag.shaping_tau * ag.alpha * ratio, ratio


def update(state: ITRPOState, batch, key, step, config):
    ag = config.agent
    if ag.pi_k == "lagged":
        state = state.replace(pi_k=select(every(step, ag.pi_k_interval), state.actor.params, state.pi_k))
    if not ag.shaping:
        return brac.update(state, batch, key, step, config, weight=kl_weight(config))
    rewards, ratio = shaped_rewards(state, batch, config)
    state, info = brac.update(state, batch, key, step, config, rewards=rewards, weight=kl_weight(config))
    return state, {**info, "shaping_log_ratio": ratio.mean()}


def stages(config) -> list[Stage]:
    return [
        Stage("behavior", lambda s, b, k, t: brac.behavior_update(s, b, k, t, config), config.agent.behavior_steps,
              config.batch_size, evaluate=False),
        Stage("train", lambda s, b, k, t: update(s, b, k, t, config), config.num_steps, config.batch_size),
    ]


def variant(config) -> str:
    return "itrpo" if config.agent.shaping else "itrpo_noshaping"


def validate(config):
    check = Checks(config.agent, "agent")
    check.one_of(("vp",), "variant", why="iTRPO shapes BRAC's value-penalty target")
    brac.validate(config)
    check.one_of(KL_FACTORS, "kl_factor", why="paper: alpha, reference code: tau")
    check.one_of(PI_K_CHOICES, "pi_k")
    check.integer(1, "pi_k_interval")
    check.within("[0, 1]", "shaping_tau", why="the paper's tau")
    check.within("(0, 1)", "shaping_eps")


ALGORITHM = Algorithm(
    name="itrpo",
    init=init,
    stages=stages,
    act=brac.act,
    default_config=default_agent_config,
    sweepable=("alpha", "shaping_tau", "shaping_clip", "reward_bonus", "tau", "actor_lr",
               "critic_lr", "behavior_lr"),
    validate=validate,
    variant=variant,
)
