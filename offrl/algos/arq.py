"""ARQ — Action-Restricted Q-learning with a score-based behaviour model (Goo & Niekum, "Know your
boundaries: the advantage of explicit behavioral cloning in offline RL").

Reference code: hiwonjoon/ARQ-public (TensorFlow; the authors'), followed file by file:
``arq/algo/sde_conditional.py`` (score model, PC sampler, ODE likelihood; see offrl/diffusion.py),
``arq/modules/data_preprocessor.py`` (standardisation), ``arq/scripts/sampling.py``
(pre-generation), ``arq/scripts/train_arq.py`` (K-th Q-learning), ``arq/scripts/bc.py`` +
``arq/modules/policy.py`` (AWR policy), ``arq/algo/sde_conditional.build_pi`` +
``arq/algo/penalty.py`` (implicit policy), with the constants of ``experiments/*.gin``.

Stages, by name:

- ``standardize`` (1 update, no evaluation): mean and std (ddof 0) of states and actions over the
  whole dataset, as the reference's ``Preprocessor.prepare`` (the stage's batch is
  ``WHOLE_DATASET``); stds in (0, ``std_floor``) become ``std_floor`` (0.05), zero stds map to 0.
  ``stats_batch_size`` > 0 takes them from that many transitions drawn with replacement instead.
- ``score`` (``score_steps``, no evaluation): ``num_score_models`` (1; Adroit 3) ScoreNets,
  vmapped, each on its own ``score_batch_size`` (512) slice, trained by denoising score matching
  (offrl.diffusion.dsm_loss) in the standardised space, Adam ``score_lr`` 1e-4, EMA ``ema``
  0.999 of the weights (the EMA is what samples and likelihoods use). Ensemble scores are averaged.
- pre-generation (host, not a gradient stage): at the end of ``score``, ``after_chunk`` draws
  ``num_candidates`` (30) actions at every distinct dataset state with the PC sampler
  (``sampler_steps`` 500, snr 0.16, t from 1 to 1e-3) and their log-likelihoods (probability-flow
  ODE, Dopri5 rtol = atol = 1e-5, 10 Rademacher probes), in ``support_chunk``-state device calls
  vmapped over seeds, with progress lines, cached on disk under ``cache_dir`` by a hash of
  (dataset, every seed's EMA weights and statistics, settings), chunk by chunk so a killed run
  resumes; the result rides in the state (``ARQState.support``), and the Q and policy updates look
  their batch rows up in it by ``batch.index`` (the dataset rows the runtime's sampler drew).
  With ``support='online'`` (or when ``Train.train`` runs without the host loop, as the shared
  harness does) the Q and policy updates draw their candidates in-graph instead; the metric
  ``online_support`` says which path ran.
- ``q`` (``q_steps``): twin Q (2x256 ReLU), Adam ``critic_lr`` 3e-4, Polyak ``tau`` 0.005,

      cand  = [a'_data, 30 candidates at s'],  pen = 0 for a'_data, +inf where log-lik <= threshold (-5)
      q     = min_i Qtarg_i(s', cand) - pen
      next  = max(K-th largest of q, Qtarg(s', a'_data)),  K = ``kth`` (9; AntMaze 3)
      y     = r + gamma (1 - d) next,   L_Q = sum_i mean_{kept rows} 0.5 (Q_i(s, a) - y)^2

  The backup reads the dataset's next action a'. The last transition of an episode cut by a time limit
  (``timeouts``) has none recorded (the dataset holds a placeholder there), and the reference's SARSA
  epoch (``Dataset.epoch(sarsa=True)`` in ``arq/modules/offline_dataset.py``) leaves it out of the
  Q-learning data: here it gets zero weight in L_Q, which is averaged over the other rows of the batch.
  Transitions ending in a terminal keep their (masked) backup, as there.

  Evaluated when ``policy='implicit'`` (ARQ+s): 30 fresh candidates at the evaluation state,
  clipped to the action box, their likelihoods, and a draw from softmax(alpha (Q - mean Q))
  over the candidates in support (Q: the first target network, as the reference's one
  ``Q_chkpt``). The reference evaluates this policy stochastically, so ``act`` samples whatever
  ``deterministic`` says. If no candidate is in support, all compete.
- ``policy`` (``policy='explicit'``, ARQ+pi; ``policy_steps``): AWR on the dataset actions,
  weight min(exp(alpha A(s, a)), 100), A = Q(s, a) - mean of the in-support Q over
  [a, 30 candidates at s] (the first target network), Gaussian with tanh mean and a
  state-independent log-std (nets.GaussianPolicy), Adam ``actor_lr`` 3e-4.

Rewards are shaped by the shared config (configs/arq.py: locomotion x 1000/(max-min trajectory
return); AntMaze r - 1). ``alpha`` and ``threshold`` live in the state, so a grid over them
reaches ``act`` too.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, clipped_gaussian_act, make_state
from offrl.algos.iql import awr_weights
from offrl.checks import Checks
from offrl.data.dataset import WHOLE_DATASET, Transitions
from offrl.diffusion import TRACE_ESTIMATORS, VPSDE, ScoreNet, dsm_loss, log_likelihood, make_score_fn, pc_sample

POLICIES = ("implicit", "explicit")
SUPPORTS = ("pregenerated", "online")
CORRECTOR_STEPS = ("per_row", "batch")


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            policy="explicit",  # 'explicit' (ARQ+pi, AWR policy) or 'implicit' (ARQ+s)
            # behaviour model (arq/algo/sde_conditional.py, experiments/sde.gin)
            score_hidden_dims=(256, 256, 256),  # one width per residual block
            fourier_scale=30.0,
            num_score_models=1,  # Adroit: 3
            score_steps=1_000_000,  # kitchen, Adroit: 300k
            score_batch_size=512,  # per ensemble member
            score_lr=1e-4,
            ema=0.999,
            beta_min=0.1,
            beta_max=20.0,
            dsm_t_min=1e-5,
            stats_batch_size=WHOLE_DATASET,  # 0: the whole dataset (the reference); > 0: a batch of that many
            std_floor=0.05,
            # support (experiments/sde_sampling.gin, arq/scripts/sampling.py)
            num_candidates=30,
            sampler_steps=500,
            snr=0.16,
            sampler_t_end=1e-3,
            corrector_step="per_row",  # 'per_row' (reference) or 'batch' (Song et al.)
            num_probes=10,
            trace="hutchinson",  # or 'exact'
            ode_t0=1e-5,
            ode_rtol=1e-5,
            ode_atol=1e-5,
            ode_step_limit=4096,
            support="pregenerated",  # or 'online'
            support_chunk=1024,  # states per pre-generation device call
            cache_dir="~/.cache/offrl/arq",
            act_likelihood=True,  # the implicit policy filters its candidates by likelihood
            # Q-learning (experiments/arq.gin)
            threshold=-5.0,
            kth=9,  # AntMaze: 3
            critic_hidden_dims=(256, 256),
            critic_lr=3e-4,  # kitchen, Adroit: 1e-4
            tau=0.005,
            q_steps=1_000_000,
            # policies (experiments/pi.gin, experiments/sde_policy.gin)
            alpha=1.0,  # Adroit, AntMaze: 10
            weight_clip=100.0,
            actor_hidden_dims=(256, 256),
            actor_lr=3e-4,
            policy_steps=1_000_000,
            log_std_min=-5.0,
            log_std_max=2.0,
        )
    )


class Standardizer(struct.PyTreeNode):
    s_mean: jax.Array
    s_std: jax.Array
    a_mean: jax.Array
    a_std: jax.Array

    @staticmethod
    def _apply(x, mean, std):
        return jnp.where(std > 0, (x - mean) / jnp.where(std > 0, std, 1.0), 0.0)  # zero std -> 0

    def states(self, s):
        return self._apply(s, self.s_mean, self.s_std)

    def actions(self, a):
        return self._apply(a, self.a_mean, self.a_std)

    def to_actions(self, x):
        return x * self.a_std + self.a_mean


class Support(struct.PyTreeNode):
    """The pre-generated table. Row i < N holds the candidates at dataset row i's state; a batch row
    drawn at dataset row ``index`` finds its state's candidates at ``index`` and its next state's at
    ``at_next[index]`` (the following row's, or one of the rows after N for episode ends)."""

    at_next: jax.Array  # (N,) int32
    actions: jax.Array  # (M, C, A) candidates at the M distinct dataset states, in the dataset's action box
    log_lik: jax.Array  # (M, C) their log-likelihoods in the standardised action space (-inf: failed solve)


class ARQState(struct.PyTreeNode):
    score: TrainState  # params stacked over ensemble members
    score_ema: dict
    std: Standardizer
    critic: TrainState
    critic_target: dict
    actor: TrainState
    support: Support  # empty (0 rows) until pre-generation fills it
    gen_key: jax.Array
    alpha: jax.Array
    threshold: jax.Array


def _sde(config) -> VPSDE:
    return VPSDE(float(config.agent.beta_min), float(config.agent.beta_max))


def _empty_support(spec: Spec, num_candidates: int) -> Support:
    z = lambda *s: jnp.zeros(s, jnp.float32)  # noqa: E731
    return Support(jnp.zeros(0, jnp.int32), z(0, num_candidates, spec.act_dim), z(0, num_candidates))


def init(key, spec: Spec, config) -> ARQState:
    ag = config.agent
    k_score, k_critic, k_actor, k_gen = jax.random.split(key, 4)
    obs, act, t = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim)), jnp.zeros((1,))
    net = ScoreNet(spec.act_dim, tuple(ag.score_hidden_dims), ag.fourier_scale)
    params = jax.vmap(lambda k: net.init(k, act, obs, t))(jax.random.split(k_score, ag.num_score_models))
    score = TrainState.create(apply_fn=net.apply, params=params, tx=adam(ag.score_lr))
    critic = make_state(k_critic, nets.critic_ensemble(2, tuple(ag.critic_hidden_dims)), (obs, act), adam(ag.critic_lr))
    actor_net = nets.GaussianPolicy(spec.act_dim, tuple(ag.actor_hidden_dims), state_dependent_std=False, tanh_mean=True,
                                    log_std_min=ag.log_std_min, log_std_max=ag.log_std_max)
    actor = make_state(k_actor, actor_net, (obs,), adam(ag.actor_lr))
    std = Standardizer(jnp.zeros(spec.obs_dim), jnp.ones(spec.obs_dim), jnp.zeros(spec.act_dim), jnp.ones(spec.act_dim))
    return ARQState(score, params, std, critic, critic.params, actor, _empty_support(spec, ag.num_candidates), k_gen,
                    jnp.asarray(ag.alpha, jnp.float32), jnp.asarray(ag.threshold, jnp.float32))


# ---------------------------------------------------------------- behaviour model
def floored_stats(x, floor: float):
    """(mean, std) over axis 0; stds in (0, floor) become floor (the reference's ``clip_std``)."""
    mean, std = x.mean(0), x.std(0)
    return mean, jnp.where((std > 0) & (std < floor), floor, std)


def standardize_update(state: ARQState, batch, key, step, config):
    floor = config.agent.std_floor
    s_mean, s_std = floored_stats(batch.observations, floor)
    a_mean, a_std = floored_stats(batch.actions, floor)
    std = Standardizer(s_mean, s_std, a_mean, a_std)
    return state.replace(std=std), {"s_std": s_std.mean(), "a_std": a_std.mean()}


def score_update(state: ARQState, batch, key, step, config):
    ag = config.agent
    m = ag.num_score_models
    x0 = state.std.actions(batch.actions).reshape(m, -1, batch.actions.shape[-1])
    c = state.std.states(batch.observations).reshape(m, -1, batch.observations.shape[-1])
    keys = jax.random.split(key, m)
    sde = _sde(config)

    def loss(params):
        member_loss = lambda p, x, cc, k: dsm_loss(state.score.apply_fn, p, x, cc, k, sde, ag.dsm_t_min)  # noqa: E731
        per_member = nets.vmap_members(member_loss)(params, x0, c, keys)
        return per_member.sum(), per_member.mean()

    grads, value = jax.grad(loss, has_aux=True)(state.score.params)
    score = state.score.apply_gradients(grads=grads)
    return state.replace(score=score, score_ema=nets.polyak(state.score_ema, score.params, 1.0 - ag.ema)), {"score_loss": value}


def sample_candidates(state: ARQState, obs, key, config):
    """``num_candidates`` actions per row of obs (B, obs_dim) from the EMA model: (B, C, A), unclipped."""
    ag = config.agent
    c = jnp.repeat(state.std.states(obs), ag.num_candidates, axis=0)
    score = make_score_fn(state.score.apply_fn, _sde(config))
    x = pc_sample(lambda x, cc, t: score(state.score_ema, x, cc, t), c, key, _sde(config), state.std.a_mean.shape[-1],
                  ag.sampler_steps, ag.snr, ag.sampler_t_end, ag.corrector_step == "per_row")
    return state.std.to_actions(x).reshape(obs.shape[0], ag.num_candidates, -1)


def candidate_log_lik(state: ARQState, obs, actions, key, config, with_steps: bool = False):
    """log beta(a | s) in the standardised action space for actions (B, C, A) at obs (B, obs_dim): (B, C).
    A failed ODE solve counts as out of support (-inf). ``with_steps`` also returns the solver's step count."""
    ag = config.agent
    b, n, a = actions.shape
    c = jnp.repeat(state.std.states(obs), n, axis=0)
    score = make_score_fn(state.score.apply_fn, _sde(config))
    ll = log_likelihood(lambda x, cc, t: score(state.score_ema, x, cc, t), state.std.actions(actions.reshape(b * n, a)),
                        c, key, _sde(config), ag.num_probes, ag.trace, ag.ode_t0, ag.ode_rtol, ag.ode_atol,
                        ag.ode_step_limit, with_steps=with_steps)
    ll, steps = ll if with_steps else (ll, None)
    ll = jnp.where(jnp.isnan(ll), -jnp.inf, ll).reshape(b, n)
    return (ll, steps) if with_steps else ll


def candidates(state: ARQState, obs, key, config):
    """(actions (B, C, A), log-likelihoods (B, C)) at obs: what pre-generation stores per state."""
    k_s, k_l = jax.random.split(key)
    actions = sample_candidates(state, obs, k_s, config)
    return actions, candidate_log_lik(state, obs, actions, k_l, config)


# ---------------------------------------------------------------- support-restricted values
def penalty(log_lik, threshold):
    """0 where log-lik > threshold (in support), +inf elsewhere (the reference's ideal penalty)."""
    return jnp.where(log_lik > threshold, 0.0, jnp.inf)


def kth_next_value(q, pen, k: int):
    """max(K-th largest of q - pen, q[..., 0]) over the last axis; column 0 is the dataset's action."""
    kth = jax.lax.top_k(q - pen, k)[0][..., -1]
    return jnp.maximum(kth, q[..., 0])


def support_mean(values):
    """Mean of the finite entries over the last axis (0 where none is finite), keepdims."""
    finite = jnp.isfinite(values)
    total = jnp.where(finite, values, 0.0).sum(-1, keepdims=True)
    count = finite.sum(-1, keepdims=True)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def implicit_choice(key, q, pen, alpha):
    """Index of the chosen candidate per row: a draw from softmax(alpha q - pen - mean) over the last
    axis (the reference's ``build_pi`` with ``advantage=True``); rows with no candidate in support
    draw from softmax(alpha q)."""
    logits = alpha * q - pen
    none = ~jnp.isfinite(logits).any(-1, keepdims=True)
    logits = jnp.where(none, alpha * q, logits)
    return jax.random.categorical(key, logits - support_mean(logits), axis=-1)


def _support_batch(state: ARQState, batch, key, config, at: str):
    """(candidate actions (B, C, A), log-liks (B, C), online flag) at the batch's observations
    (``at='obs'``) or next observations (``at='next'``). From the pre-generated table, at the dataset
    rows the one sampler drew the batch from (``batch.index``), when it is filled, else in-graph."""
    if state.support.actions.shape[0] == 0:  # static: no table -> candidates drawn online
        obs = batch.observations if at == "obs" else batch.next_observations
        actions, ll = candidates(state, obs, key, config)
        return actions, ll, 1.0
    if batch.index is None:
        raise ValueError("ARQ's pre-generated support needs the batch's dataset rows (Transitions.index): draw the "
                         "batch with offrl.data.dataset.sample from the dataset the table was built from")
    idx = batch.index if at == "obs" else state.support.at_next[batch.index]
    return state.support.actions[idx], state.support.log_lik[idx], 0.0


def _q_of(critic: TrainState, params, obs, actions, first_only: bool = False):
    """Q_i(s, a_j) for actions (B, J, A) at obs (B, obs_dim): (2, B, J); ``first_only``: Q_1 alone,
    (1, B, J), evaluating one network rather than both with one output thrown away."""
    rep = jnp.broadcast_to(obs[:, None, :], actions.shape[:2] + obs.shape[-1:])
    f = nets.first_members(critic.apply_fn, params) if first_only else nets.bind(critic.apply_fn, params)
    return f(rep, actions)


def q_update(state: ARQState, batch, key, step, config):
    ag = config.agent
    b = batch
    cand, ll, online = _support_batch(state, batch, key, config, "next")
    acts = jnp.concatenate([b.next_actions[:, None, :], cand], axis=1)
    pen = jnp.concatenate([jnp.zeros_like(ll[:, :1]), penalty(ll, state.threshold)], axis=1)
    q_next = _q_of(state.critic, state.critic_target, b.next_observations, acts).min(0)
    target = jax.lax.stop_gradient(b.rewards + config.discount * (1.0 - b.terminals) * kth_next_value(q_next, pen, ag.kth))

    keep = 1.0 - b.timeouts  # a truncated episode's last transition has no recorded a': dropped, as the reference

    def loss_fn(params):
        q = state.critic.apply_fn(params, b.observations, b.actions)
        return (0.5 * keep * (q - target) ** 2).sum(-1).sum() / jnp.maximum(keep.sum(), 1.0), q.mean()

    (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    state = state.replace(critic=critic, critic_target=nets.polyak(state.critic_target, critic.params, ag.tau))
    return state, {"critic_loss": loss, "q": q_mean, "target": target.mean(),
                   "in_support": (pen[:, 1:] == 0).mean(), "online_support": jnp.asarray(online)}


def awr_advantage(q, pen):
    """A(s, a) = q[..., 0] - mean of the in-support q - pen over the last axis (column 0: the data action)."""
    return q[..., 0] - support_mean(q - pen)[..., 0]


def policy_update(state: ARQState, batch, key, step, config):
    ag = config.agent
    b = batch
    cand, ll, online = _support_batch(state, batch, key, config, "obs")
    acts = jnp.concatenate([b.actions[:, None, :], cand], axis=1)
    pen = jnp.concatenate([jnp.zeros_like(ll[:, :1]), penalty(ll, state.threshold)], axis=1)
    adv = awr_advantage(_q_of(state.critic, state.critic_target, b.observations, acts, first_only=True)[0], pen)
    w = jax.lax.stop_gradient(awr_weights(adv, state.alpha, ag.weight_clip))

    def loss_fn(params):
        mean, log_std = state.actor.apply_fn(params, b.observations)
        return -(w * nets.gaussian_log_prob(b.actions, mean, log_std)).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), {"actor_loss": loss, "adv_weight": w.mean(),
                                                                          "online_support": jnp.asarray(online)}


def stages(config) -> list[Stage]:
    ag = config.agent
    implicit = ag.policy == "implicit"
    out = [
        Stage("standardize", lambda s, b, k, t: standardize_update(s, b, k, t, config), 1, ag.stats_batch_size, evaluate=False),
        Stage("score", lambda s, b, k, t: score_update(s, b, k, t, config), ag.score_steps,
              ag.score_batch_size * ag.num_score_models, evaluate=False),
        Stage("q", lambda s, b, k, t: q_update(s, b, k, t, config), ag.q_steps, config.batch_size, evaluate=implicit),
    ]
    if not implicit:
        out.append(Stage("policy", lambda s, b, k, t: policy_update(s, b, k, t, config), ag.policy_steps, config.batch_size))
    return out


def act(state: ARQState, obs, key, config, deterministic: bool = True):
    if config.agent.policy == "explicit":
        return clipped_gaussian_act(state.actor, obs, key, deterministic)
    k_s, k_l, k_pick = jax.random.split(key, 3)
    cand = jnp.clip(sample_candidates(state, obs, k_s, config), -1.0, 1.0)
    if config.agent.act_likelihood:
        pen = penalty(candidate_log_lik(state, obs, cand, k_l, config), state.threshold)
    else:
        pen = jnp.zeros(cand.shape[:2])
    q = _q_of(state.critic, state.critic_target, obs, cand, first_only=True)[0]
    idx = implicit_choice(k_pick, q, pen, state.alpha)
    return jnp.take_along_axis(cand, idx[:, None, None], axis=1)[:, 0]


# ---------------------------------------------------------------- pre-generation (host)
def support_rows(data: Transitions):
    """(distinct states (M, obs_dim), at_next (N,)): the table's first N rows are the dataset's states
    (row i at i), then the next states that are not the following row's state (episode ends); at_next[i]
    is where row i's next state is. Rows i and i+1 share a state when they are in the same episode
    and next_observations[i] == observations[i + 1]."""
    obs, nxt = np.asarray(data.observations), np.asarray(data.next_observations)
    ep = np.asarray(data.episode_ids)
    n = len(obs)
    follows = np.zeros(n, bool)
    follows[:-1] = (ep[1:] == ep[:-1]) & np.all(nxt[:-1] == obs[1:], axis=1)
    ends = np.flatnonzero(~follows)
    at_next = np.arange(1, n + 1)
    at_next[ends] = n + np.arange(len(ends))
    return np.concatenate([obs, nxt[ends]]), at_next.astype(np.int32)


SUPPORT_SETTINGS = ("num_candidates", "sampler_steps", "snr", "sampler_t_end", "corrector_step", "num_probes", "trace",
                    "ode_t0", "ode_rtol", "ode_atol", "ode_step_limit", "beta_min", "beta_max", "score_hidden_dims",
                    "fourier_scale", "num_score_models", "support_chunk")


def support_cache_key(states: ARQState, table: np.ndarray, config) -> str:
    h = hashlib.sha256(b"offrl-arq-support-v1")
    h.update(str(config.dataset).encode())
    h.update(np.ascontiguousarray(table).tobytes())
    for leaf in jax.tree_util.tree_leaves((states.score_ema, states.std, states.gen_key)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    settings = {k: config.agent[k] for k in SUPPORT_SETTINGS}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def pregenerate(states: ARQState, data: Transitions, config, out=None) -> ARQState:
    """Fill every seed's support table (states carry a leading seed axis): candidates and their
    log-likelihoods at every distinct dataset state, ``support_chunk`` states per device call,
    each chunk cached on disk as it is done (a rerun of the same run reads them back)."""
    ag = config.agent
    out = sys.stdout if out is None else out
    table, at_next = support_rows(data)
    m, chunk = len(table), int(ag.support_chunk)
    num_chunks = math.ceil(m / chunk)
    num_seeds = int(states.alpha.shape[0])
    cache = os.path.join(os.path.expanduser(ag.cache_dir), support_cache_key(states, table, config))
    os.makedirs(cache, exist_ok=True)
    gen = jax.jit(jax.vmap(lambda st, obs, i: candidates(st, obs, jax.random.fold_in(st.gen_key, i), config),
                           in_axes=(0, None, None)))
    per_chunk = chunk * ag.num_candidates * num_seeds
    print(f"[arq] support: {m} states x {ag.num_candidates} candidates x {num_seeds} seeds in {num_chunks} chunks "
          f"of {chunk} states ({ag.sampler_steps} sampler steps, ODE likelihoods); cache {cache}", file=out, flush=True)
    acts, lls = [], []
    t0, computed, last = time.time(), 0, 0.0
    for i in range(num_chunks):
        path = os.path.join(cache, f"chunk_{i:06d}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                a, ll = f["actions"], f["log_lik"]
        else:
            rows = table[i * chunk:(i + 1) * chunk]
            n = len(rows)
            padded = np.concatenate([rows, np.repeat(rows[-1:], chunk - n, axis=0)]) if n < chunk else rows
            a, ll = jax.device_get(gen(states, jnp.asarray(padded), i))
            a, ll = np.asarray(a)[:, :n], np.asarray(ll)[:, :n]
            tmp = path + ".tmp.npz"
            np.savez(tmp, actions=a, log_lik=ll)
            os.replace(tmp, path)
            computed += 1
        acts.append(a)
        lls.append(ll)
        now = time.time()
        if now - last >= 10.0 or i + 1 == num_chunks:
            last = now
            rate = computed * per_chunk / max(now - t0, 1e-9)
            eta = (num_chunks - i - 1) * per_chunk / max(rate, 1e-9) if computed else 0.0
            print(f"[arq] support {i + 1}/{num_chunks} chunks | {rate:.0f} candidates/s (with likelihoods) | "
                  f"elapsed {now - t0:.0f}s | ETA {eta:.0f}s", file=out, flush=True)
    actions = jnp.asarray(np.concatenate(acts, axis=1))
    log_lik = jnp.asarray(np.concatenate(lls, axis=1))
    in_support = float(np.mean(np.asarray(log_lik) > float(ag.threshold)))
    print(f"[arq] support ready: {100 * in_support:.1f}% of candidates above the log-likelihood threshold "
          f"{ag.threshold}", file=out, flush=True)
    return with_support(states, at_next, actions, log_lik)


def with_support(states: ARQState, at_next, actions, log_lik) -> ARQState:
    """``states`` holding the table in pre-generation's layout: ``at_next`` (N,) from
    :func:`support_rows`, candidates ``actions`` (..., M, C, A) and ``log_lik`` (..., M, C) at its M
    distinct states, with any leading (seed) axes of ``states``; ``at_next`` is shared by them
    (broadcast, not copied per seed on the host)."""
    lead = tuple(np.shape(log_lik)[:-2])
    if tuple(np.shape(states.alpha)) != lead:
        raise ValueError(f"support table's leading axes {lead} do not match the states' seed axes {np.shape(states.alpha)}")
    if np.shape(actions)[:-1] != np.shape(log_lik) or np.shape(log_lik)[-2] <= int(np.max(at_next)):
        raise ValueError(f"support table: actions {np.shape(actions)} and log_lik {np.shape(log_lik)} must be (..., M, C, A) "
                         f"and (..., M, C) with M > max(at_next) = {int(np.max(at_next))}")
    at_next = jnp.broadcast_to(jnp.asarray(at_next, jnp.int32), lead + np.shape(at_next))
    return states.replace(support=Support(at_next, jnp.asarray(actions), jnp.asarray(log_lik)))


def after_chunk(states: ARQState, ctx, stage: str, stage_step: int) -> ARQState:
    """Pre-generation at the end of the score stage (``support='pregenerated'``)."""
    config = ctx.exp.config
    ag = config.agent
    if stage == "score" and stage_step == ag.score_steps and ag.support == "pregenerated":
        return pregenerate(states, ctx.exp.data, config)
    return states


def variant(config) -> str:
    return "ARQ+s" if config.agent.policy == "implicit" else "ARQ+π"


def validate(config):
    ag = config.agent
    check = Checks(ag, "agent")
    check.one_of(POLICIES, "policy")
    check.one_of(SUPPORTS, "support")
    check.one_of(CORRECTOR_STEPS, "corrector_step")
    check.one_of(TRACE_ESTIMATORS, "trace")
    check.integer(1, "num_candidates", "num_score_models", "score_steps", "score_batch_size", "support_chunk",
                  "num_probes", "ode_step_limit")
    check.integer(0, "q_steps", "policy_steps")
    check.integer(0, "stats_batch_size", why="0: the whole dataset")
    check.integer(2, "sampler_steps", why="the PC sampler's step count")
    check.need(isinstance(ag.kth, int) and 1 <= ag.kth <= ag.num_candidates + 1, "kth",
               f"must be an integer in [1, num_candidates + 1 = {ag.num_candidates + 1}]")
    dims = tuple(ag.score_hidden_dims)
    check.need(dims and len(set(dims)) == 1, "score_hidden_dims",
               "one equal width per residual block, e.g. (256, 256, 256)", value=dims)
    check.within("[0, 1)", "ema")
    check.within("(0, 1]", "tau")
    check.at_least(0, "alpha", "std_floor", "snr")
    check.above(0, "beta_min")
    check.ordered("beta_min", "beta_max")
    Checks(config, "config").at_least(1, "batch_size")


ALGORITHM = Algorithm(
    name="arq",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("alpha", "threshold", "tau", "ema", "weight_clip", "critic_lr", "actor_lr", "score_lr"),
    validate=validate,
    variant=variant,
    after_chunk=after_chunk,
)
