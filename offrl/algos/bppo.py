"""BPPO — Behavior Proximal Policy Optimization (Zhuang et al., ICLR 2023), with its Onestep
and iterative variants, as one four-stage pipeline.

Reference code: github.com/Dragon-Zhuang/BPPO (``main.py`` for the defaults and the loop,
``bppo.py``/``ppo.py`` for the improvement loss, ``critic.py`` for V and Q, ``net.py`` and
``utils.py`` for the networks and their initialisation, ``buffer.py`` for the data). Defaults equal
that code's; where the paper and the code disagree the config follows the code and exposes the
paper (``clip_decay_first``, ``bootstrap_timeouts``); the per-dataset settings of the paper's
Table 6 (and, as a switch, the code comments' tips) live in ``configs/bppo_presets.py``.

    1. value   V(s) <- MC return-to-go G (MSE), MLP 3x512 with a ReLU on its output
    2. q       Q(s,a) by SARSA: y = r + gamma (1-d) Q_targ(s', a'_data), MLP 2x1024 with a ReLU on
               its output, Polyak tau every ``q_target_every`` updates. d = terminal OR timeout: as
               the reference's ``not_done = 1 - (terminal | timeout)``, a transition that ends in a
               time limit is not bootstrapped (``bootstrap_timeouts=True``: d = terminal only)
    3. bc      pi_b: Gaussian, mu = tanh(out[:A]), log_std = -5 + 2.5 (tanh(out[A:]) + 1),
               NLL of dataset actions, MLP 2x1024; pi_b is the BC iterate with the best online
               score (``select_episodes`` deterministic episodes after updates 1, 2001, 4001, ...
               with ``bc_select_every`` = 2000, kept only above a normalised score of 0, as the
               reference keeps ``bc_best.pt``; ``bc_select_every=0``: the last iterate)
    4. improve pi initialised from pi_b, pi_k <- pi_b, then per step i:
               a ~ pi_k(.|s) (rsample);  A = Q(s,a) - V(s), normalised over the batch,
               A *= omega where A > 0 else (1 - omega)
               ratio = pi(a|s) / pi_k(a|s)
               L = -mean(min(ratio A, clip(ratio, 1-eps_i, 1+eps_i) A) + ent_w H(pi))
               eps_i = eps_0 sigma^(min(i, 200) + 1)  (the code decays the clip before using
                       it; ``clip_decay_first=False`` gives the paper's eps_0 sigma^min(i, 200))
               lr_i = lr_0 0.98^(min(i, 200) // 2);  global grad-norm clip 0.5.
               "if J(pi) > J(pi_k): pi_k <- pi", where J is
                 selection='online'  : the score of ``select_episodes`` deterministic episodes,
                                        evaluated between compiled chunks (``after_chunk``),
                                        compared per seed with the best score so far (the
                                        reference code's rule; it starts from pi_b's score);
                                        each training seed plays its own episodes, the same at
                                        every check (``select_score``)
                 selection='offline' : E_{s~batch} Q(s, mean pi(s)) against the same for pi_k,
                                        in-graph, every ``select_interval`` steps;
                 selection='none'    : Onestep BPPO, pi_k = pi_b throughout.
               ``bppo_off = N > 0``: iterative BPPO — after each policy step (and the offline
               selection), N off-policy Q updates y = r + gamma (1-d) Q_targ(s', a'), a' clipped
               to the box, instead of advantage replacement. a' ~ pi(s'), the policy just
               stepped, as the reference (``Q_pi.update(replay_buffer, bppo)`` samples
               ``bppo.select_action``, i.e. pi, not the old policy); ``off_policy_actor='pi_k'``
               gives the paper's Q_{pi_k}.

Initialisation (``torch_init=True``): the reference's PyTorch defaults — V's and Q's kernels and
biases, and the policy's biases, ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the policy's kernels
orthogonal with gain 1 (``orthogonal_initWeights``). ``torch_init=False``: Flax's defaults (LeCun
normal kernels, zero biases) for V and Q, zero biases for the policy. ``value_relu_output=False``
drops the ReLU at the end of V and Q.

The whole pipeline is pure and vmapped over seeds by the runtime; only online selection leaves
the graph (it needs environment rollouts), and it keeps every seed's choice separate.
With online selection pi_k is the best policy seen, the one the reference saves as
``bppo_best.pt``; ``report_best_pik=True`` evaluates it at the end of the run on the final
evaluation's episodes and prints its score beside the last iterate's (``best_pik_raw``); results.json
carries it as the extra score ``best_pik`` (``extra_scores``), next to the last iterate's score.
"""
from __future__ import annotations

from typing import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, Spec, Stage
from offrl.algos.common import adam, learning_rate_of, make_state, reset_optimizer, select
from offrl.checks import Checks

SELECTIONS = ("online", "offline", "none")


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            # stage 1: V by Monte-Carlo regression
            v_hidden_dims=(512, 512, 512),
            v_lr=1e-4,
            v_steps=2_000_000,
            # stage 2: Q by SARSA
            q_hidden_dims=(1024, 1024),
            q_lr=1e-4,
            q_steps=2_000_000,
            tau=0.005,
            q_target_every=2,
            value_relu_output=True,  # the reference's ReLU after V's and Q's last layer (V, Q >= 0); False: linear outputs
            torch_init=True,  # PyTorch's default Linear init for V and Q (kernels and biases) and the policy's biases; False: Flax's
            bootstrap_timeouts=False,  # reference: not_done = 1 - (terminal | timeout); True: only terminals stop Q's backup
            # stage 3: behaviour cloning
            pi_hidden_dims=(1024, 1024),
            bc_lr=1e-4,
            bc_steps=500_000,
            bc_select_every=2000,  # pi_b = the best BC iterate scored online after updates 1, N+1, 2N+1, ... (reference: log_freq 2000); 0: the last iterate
            # stage 4: policy improvement
            pi_lr=1e-4,
            pi_steps=1000,
            clip_eps=0.25,
            clip_decay=0.96,  # sigma; 1.0 switches the clip decay off
            clip_decay_first=True,  # reference code: step i uses eps_0 sigma^(i+1); False: the paper's eps_0 sigma^i
            lr_decay=0.98,  # 1.0 switches the learning-rate decay off
            lr_decay_every=2,
            decay_until=200,  # both decays freeze after this many improvement steps
            omega=0.9,
            entropy_weight=0.0,
            grad_clip=0.5,
            adv_std_ddof=1,  # the reference normalises with torch's unbiased std
            selection="online",  # online | offline | none (= Onestep BPPO)
            select_interval=1,  # improvement steps between J(pi) > J(pi_k) checks (reference: 1)
            select_episodes=10,  # episodes per online check (reference: 10)
            select_seed=500_000,  # online checks reset from eval_seed + select_seed + (per seed: seed x select_episodes) + e
            select_per_seed=True,  # each training seed has its own selection episodes (reference: env.seed(seed)); False: one set for all
            bppo_off=0,  # N > 0: iterative BPPO, N off-policy Q steps per policy step, after it
            off_policy_actor="pi",  # bppo_off: a' ~ the just-stepped pi (reference main.py/critic.py) or "pi_k" (the paper's Q_{pi_k})
            report_best_pik=False,  # online selection: also evaluate the best pi_k (reference's bppo_best.pt) at the end
        )
    )


# ----------------------------------------------------------------------------- networks
class BPPOPolicy(nn.Module):
    """The reference GaussPolicyMLP: one MLP to 2A outputs, tanh, then mean in (-1, 1) and
    log_std = -5 + 2.5 (out + 1) in (-5, 0); orthogonal init with gain 1; a plain Normal."""

    act_dim: int
    hidden_dims: Sequence[int] = (1024, 1024)

    @nn.compact
    def __call__(self, obs):
        out = jnp.tanh(nets.MLP(tuple(self.hidden_dims), 2 * self.act_dim, kernel_init=nn.initializers.orthogonal(1.0))(obs))
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, -5.0 + 2.5 * (raw + 1.0)


class BPPOState(struct.PyTreeNode):
    value: TrainState
    q: TrainState
    q_target: dict
    bc: TrainState  # pi_b after stage 3
    pi: TrainState  # the improved policy (initialised from pi_b at improvement step 0)
    pi_k: dict  # parameters of pi_k
    improving: jax.Array  # bool: stage 4 has started (``act`` then uses pi, before it pi_b)
    best_score: jax.Array  # online selection: best J(pi_k) seen so far (starts at pi_b's score)
    replacements: jax.Array  # int32: how many times pi_k was replaced
    best_pik_raw: jax.Array  # report_best_pik: pi_k's return on the final evaluation's episodes (-inf before)
    bc_best: dict  # bc_select_every > 0: the best-scoring BC iterate so far (becomes pi_b at the end of BC)
    bc_best_score: jax.Array  # its online score (starts at 0, the reference's best_bc_score)


def _pi_tx(config):
    """Global-norm clip, then Adam at ``pi_lr`` times the decay factor of ``lr_at`` (an optax schedule)."""
    ag = config.agent
    decay, until, every = float(ag.lr_decay), int(ag.decay_until), int(ag.lr_decay_every)
    return adam(ag.pi_lr, grad_clip=float(ag.grad_clip), schedule=lambda i: lr_factor(i, decay, until, every))


def torch_linear_init(key, params, kernels: bool = True):
    """PyTorch's default ``nn.Linear`` initialisation applied to every Dense layer of ``params``:
    bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and, with ``kernels``, the kernel too (kaiming_uniform
    with a = sqrt(5) is that same uniform). ``kernels=False`` keeps the kernels (the reference's
    policy: orthogonal kernels, PyTorch-default biases)."""
    flat = flax.traverse_util.flatten_dict(params)
    layers = sorted(k[:-1] for k in flat if k[-1] == "kernel")
    for layer, k in zip(layers, jax.random.split(key, len(layers))):
        kernel = flat[layer + ("kernel",)]
        bound = 1.0 / np.sqrt(kernel.shape[0])
        kk, kb = jax.random.split(k)
        if kernels:
            flat[layer + ("kernel",)] = jax.random.uniform(kk, kernel.shape, kernel.dtype, -bound, bound)
        bias = flat[layer + ("bias",)]
        flat[layer + ("bias",)] = jax.random.uniform(kb, bias.shape, bias.dtype, -bound, bound)
    return flax.traverse_util.unflatten_dict(flat)


def init(key, spec: Spec, config) -> BPPOState:
    ag = config.agent
    kv, kq, kp = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    value = make_state(kv, nets.Critic(tuple(ag.v_hidden_dims), relu_output=ag.value_relu_output), (obs,), adam(ag.v_lr))
    q = make_state(kq, nets.Critic(tuple(ag.q_hidden_dims), relu_output=ag.value_relu_output), (obs, act), adam(ag.q_lr))
    policy = BPPOPolicy(spec.act_dim, tuple(ag.pi_hidden_dims))
    bc = make_state(kp, policy, (obs,), adam(ag.bc_lr))
    if ag.torch_init:  # the reference's networks: PyTorch defaults for V and Q, orthogonal kernels + PyTorch biases for pi
        kv, kq, kp = jax.random.split(jax.random.fold_in(key, 1), 3)
        value = TrainState.create(apply_fn=value.apply_fn, params=torch_linear_init(kv, value.params), tx=value.tx)
        q = TrainState.create(apply_fn=q.apply_fn, params=torch_linear_init(kq, q.params), tx=q.tx)
        bc = TrainState.create(apply_fn=bc.apply_fn, params=torch_linear_init(kp, bc.params, kernels=False), tx=bc.tx)
    pi = TrainState.create(apply_fn=policy.apply, params=bc.params, tx=_pi_tx(config))
    return BPPOState(
        value, q, q.params, bc, pi, bc.params, jnp.asarray(False), jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(0, jnp.int32),
        jnp.asarray(-jnp.inf, jnp.float32), bc.params, jnp.asarray(0.0, jnp.float32),
    )


# ----------------------------------------------------------------------------- schedules and losses
def clip_at(step, config):
    """eps_i = eps_0 sigma^(min(i, decay_until) + 1): the reference multiplies the clip by sigma
    before each of the first decay_until + 1 steps uses it (``clip_decay_first``); without it,
    the paper's Eq. 16, eps_0 sigma^min(i, decay_until)."""
    ag = config.agent
    return ag.clip_eps * ag.clip_decay ** (jnp.minimum(step, ag.decay_until) + int(bool(ag.clip_decay_first)))


def lr_factor(step, decay: float, until: int, every: int):
    """lr_decay^(floor(min(i, decay_until) / lr_decay_every)): x0.98 every 2 steps, then frozen."""
    return decay ** (jnp.minimum(step, until) // every)


def lr_at(step, config):
    """lr_i = lr_0 * lr_factor(i): the improvement stage's learning rate at its step i."""
    ag = config.agent
    return ag.pi_lr * lr_factor(step, ag.lr_decay, ag.decay_until, ag.lr_decay_every)


def normalize_advantage(adv, ddof: int = 1):
    return (adv - adv.mean()) / (adv.std(ddof=ddof) + 1e-10)


def asymmetric_weight(adv, omega):
    """omega * A where A > 0, (1 - omega) * A elsewhere (omega = 0.5 halves every advantage's scale only)."""
    return jnp.where(adv > 0, omega, 1.0 - omega) * adv


def clipped_surrogate(logp, logp_old, adv, eps):
    """Per-sample PPO objective min(r A, clip(r, 1-eps, 1+eps) A), r = exp(logp - logp_old)."""
    ratio = jnp.exp(logp - logp_old)
    return jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)


# ----------------------------------------------------------------------------- stages 1-3
def value_update(state: BPPOState, batch, key, step, config):
    def loss_fn(p):
        v = state.value.apply_fn(p, batch.observations)
        return ((v - batch.returns) ** 2).mean(), v

    (loss, v), g = jax.value_and_grad(loss_fn, has_aux=True)(state.value.params)
    return state.replace(value=state.value.apply_gradients(grads=g)), {"v_loss": loss, "v": v.mean()}


def _q_step(state: BPPOState, batch, next_actions, config):
    """One TD step of Q towards r + gamma (1-d) Q_targ(s', next_actions); Polyak every q_target_every.

    d is terminal OR timeout (the reference's not_done), or the terminal alone with ``bootstrap_timeouts``."""
    ag = config.agent
    next_q = state.q.apply_fn(state.q_target, batch.next_observations, next_actions)
    done = batch.terminals if ag.bootstrap_timeouts else jnp.maximum(batch.terminals, batch.timeouts)
    target = jax.lax.stop_gradient(batch.rewards + config.discount * (1.0 - done) * next_q)

    def loss_fn(p):
        q = state.q.apply_fn(p, batch.observations, batch.actions)
        return ((q - target) ** 2).mean(), q

    (loss, q), g = jax.value_and_grad(loss_fn, has_aux=True)(state.q.params)
    new_q = state.q.apply_gradients(grads=g)
    # the reference updates the target after every ``q_target_every``-th optimiser step
    tgt = jax.tree_util.tree_map(
        lambda t, o: jnp.where(new_q.step % ag.q_target_every == 0, (1 - ag.tau) * t + ag.tau * o, t), state.q_target, new_q.params
    )
    return state.replace(q=new_q, q_target=tgt), {"q_loss": loss, "q": q.mean()}


def q_update(state: BPPOState, batch, key, step, config):
    return _q_step(state, batch, batch.next_actions, config)


def bc_update(state: BPPOState, batch, key, step, config):
    def loss_fn(p):
        mean, log_std = state.bc.apply_fn(p, batch.observations)
        return -nets.gaussian_log_prob(batch.actions, mean, log_std).mean(), log_std

    (loss, log_std), g = jax.value_and_grad(loss_fn, has_aux=True)(state.bc.params)
    return state.replace(bc=state.bc.apply_gradients(grads=g)), {"bc_loss": loss, "bc_std": jnp.exp(log_std).mean()}


# ----------------------------------------------------------------------------- stage 4
def _start_improvement(state: BPPOState) -> BPPOState:
    """pi <- pi_b with a fresh optimiser; pi_k <- pi_b."""
    pi = state.pi.replace(step=jnp.zeros_like(state.pi.step), params=state.bc.params, opt_state=reset_optimizer(state.pi.opt_state))
    return state.replace(pi=pi, pi_k=state.bc.params, improving=jnp.asarray(True))


def policy_loss(params, state: BPPOState, obs, key, eps, config):
    ag = config.agent
    apply = state.pi.apply_fn
    mean_k, log_std_k = apply(state.pi_k, obs)
    a = jax.lax.stop_gradient(nets.gaussian_sample(key, mean_k, log_std_k))  # rsample, not clipped
    logp_old = nets.gaussian_log_prob(a, mean_k, log_std_k)
    adv = state.q.apply_fn(state.q.params, obs, a) - state.value.apply_fn(state.value.params, obs)
    adv = asymmetric_weight(normalize_advantage(adv, ag.adv_std_ddof), ag.omega)
    mean, log_std = apply(params, obs)
    logp = nets.gaussian_log_prob(a, mean, log_std)
    surr = clipped_surrogate(logp, logp_old, adv, eps)
    entropy = nets.gaussian_entropy(log_std)
    loss = -(surr + ag.entropy_weight * entropy).mean()
    ratio = jnp.exp(logp - logp_old)
    return loss, {
        "pi_loss": loss,
        "ratio_pi_pik": ratio.mean(),
        "clip_fraction": (jnp.abs(ratio - 1.0) > eps).mean(),
        "entropy": entropy.mean(),
    }


def offline_score(state: BPPOState, params, obs):
    """J(pi) estimated as E_s Q(s, mean pi(s))."""
    mean, _ = state.pi.apply_fn(params, obs)
    return state.q.apply_fn(state.q.params, obs, mean).mean()


def improve_update(state: BPPOState, batch, key, step, config):
    ag = config.agent
    n_off = int(ag.bppo_off)
    b = batch.observations.shape[0] // (n_off + 1)
    pi_batch = jax.tree_util.tree_map(lambda x: x[:b], batch)
    k_pi, k_q = jax.random.split(key)
    metrics = {}

    # eps_i and lr_i follow the stage-local step: the optimiser's schedule counts from the reset at step 0
    eps = clip_at(step, config)
    lr = learning_rate_of(state.pi.opt_state) * lr_factor(step, ag.lr_decay, ag.decay_until, ag.lr_decay_every)
    pi = state.pi
    grads, info = jax.grad(policy_loss, has_aux=True)(pi.params, state, pi_batch.observations, k_pi, eps, config)
    pi = pi.apply_gradients(grads=grads)
    state = state.replace(pi=pi)
    metrics.update(info)

    if ag.selection == "offline":  # both scores on every step (they are logged); pi_k replaced every select_interval
        j_new = offline_score(state, state.pi.params, pi_batch.observations)
        j_k = offline_score(state, state.pi_k, pi_batch.observations)
        better = ((step + 1) % ag.select_interval == 0) & (j_new > j_k)
        state = state.replace(pi_k=select(better, state.pi.params, state.pi_k),
                              replacements=state.replacements + better.astype(jnp.int32))
        metrics.update({"j_offline_pi": j_new, "j_offline_pik": j_k})

    if n_off:  # iterative BPPO: after the policy step, N off-policy Q steps on N fresh batches
        q_batches = jax.tree_util.tree_map(lambda x: x[b : b * (n_off + 1)].reshape((n_off, b) + x.shape[1:]), batch)

        def q_body(s, inp):
            qb, k = inp
            # a' ~ pi (the reference's Q_pi.update(replay, bppo): the policy just stepped) or pi_k (the paper's Q_{pi_k})
            params = s.pi.params if ag.off_policy_actor == "pi" else s.pi_k
            mean, log_std = s.pi.apply_fn(params, qb.next_observations)
            a_next = jnp.clip(nets.gaussian_sample(k, mean, log_std), -1.0, 1.0)
            return _q_step(s, qb, a_next, config)

        state, qm = jax.lax.scan(q_body, state, (q_batches, jax.random.split(k_q, n_off)))
        metrics.update({k: v.mean() for k, v in qm.items()})

    # how far pi_k has moved from pi_b (paper Figures 1, 7): ratio on dataset actions
    mk, lk = state.pi.apply_fn(state.pi_k, pi_batch.observations)
    mb, lb = state.pi.apply_fn(state.bc.params, pi_batch.observations)
    log_kb = nets.gaussian_log_prob(pi_batch.actions, mk, lk) - nets.gaussian_log_prob(pi_batch.actions, mb, lb)
    metrics.update(
        {
            "clip_eps": eps,
            "pi_lr": lr,
            "ratio_pik_pib": jnp.exp(log_kb).mean(),
            "log_ratio_pik_pib": log_kb.mean(),
            "replacements": state.replacements.astype(jnp.float32),
        }
    )
    return state, metrics


# ----------------------------------------------------------------------------- the contract
def stages(config) -> list[Stage]:
    ag, bs = config.agent, config.batch_size

    def bind(fn):
        return lambda s, b, k, t: fn(s, b, k, t, config)

    return [
        Stage("value", bind(value_update), ag.v_steps, bs, evaluate=False),
        Stage("q", bind(q_update), ag.q_steps, bs, evaluate=False),
        # BC's first update is a stage of its own, so that the checkpoint choice can score pi_b after
        # updates 1, N+1, 2N+1, ... as the reference does (the runner cuts a stage at multiples of N)
        Stage("bc_first", bind(bc_update), min(int(ag.bc_steps), 1), bs, evaluate=False),
        Stage("bc", bind(bc_update), max(int(ag.bc_steps) - 1, 0), bs),
        Stage("improve", bind(improve_update), ag.pi_steps, bs * (1 + int(ag.bppo_off)), begin=_start_improvement),
    ]


def _policy_params(state: BPPOState):
    return select(state.improving, state.pi.params, state.bc.params)


def act(state: BPPOState, obs, key, config, deterministic: bool = True):
    mean, log_std = state.pi.apply_fn(_policy_params(state), obs)
    if deterministic:
        return mean
    return jnp.clip(nets.gaussian_sample(key, mean, log_std), -1.0, 1.0)


def variant(config) -> str:
    """What produced a result: 'BPPO (online selection)', 'Onestep BPPO', 'BPPO_off=5 (offline selection)', ..."""
    ag = config.agent
    if ag.selection == "none":
        name = "Onestep BPPO"
    else:
        name = f"BPPO_off={ag.bppo_off}" if ag.bppo_off else "BPPO"
        name += f" ({ag.selection} selection every {ag.select_interval} step(s))"
    return name + (" + iterative Q" if ag.selection == "none" and ag.bppo_off else "")


def chunk_every(config) -> dict:
    """Online selection needs the runner to stop the improvement stage every ``select_interval``
    updates, and the BC checkpoint choice the BC stage every ``bc_select_every`` updates (after
    BC's first update, which is a stage of its own: checks follow updates 1, N+1, 2N+1, ...)."""
    cuts = {}
    if config.agent.bc_select_every:
        cuts["bc"] = int(config.agent.bc_select_every)
    if config.agent.selection == "online":
        cuts["improve"] = int(config.agent.select_interval)
    return cuts


def final_eval_seed(config) -> int:
    """The base seed of the runner's last evaluation (its k-th evaluation resets from
    eval_seed + 1000 k; BPPO evaluates in the bc and improve stages, at every eval_interval and
    at each stage's end), so pi_k can be scored on the same episodes as the last iterate."""
    ag, every = config.agent, config.eval_interval
    n_evals = sum(-(-n // every) for n in (max(ag.bc_steps - 1, 0), ag.pi_steps))
    return config.eval_seed + 1000 * max(n_evals - 1, 0)


def act_with_pik(states: BPPOState) -> BPPOState:
    """The same states acting with pi_k (the reference's saved ``bppo_best.pt`` under online selection)."""
    return states.replace(pi=states.pi.replace(params=states.pi_k), improving=jnp.ones_like(states.improving))


def _score(res) -> np.ndarray:
    """The per-seed number selection compares: the normalised score (the reference compares D4RL
    scores), or the raw return where the dataset has no reference scores."""
    norm = np.asarray(getattr(res, "normalized", np.nan), np.float64)
    return norm if np.isfinite(norm).all() and norm.shape == np.shape(res.raw) else np.asarray(res.raw, np.float64)


def select_score(states: BPPOState, ctx) -> jax.Array:
    """(members,) selection scores of ``states`` on ``select_episodes`` deterministic episodes.

    As the reference (each run seeds its evaluation environment with the run's seed and resets it
    ``select_episodes`` times, every check alike), each training seed has its own block of episodes,
    reset from ``eval_seed + select_seed + seed * select_episodes + e``, the same at every check: the
    comparisons are paired within a seed. ``select_per_seed=False``: every seed plays the episodes
    ``eval_seed + select_seed + e`` (one vectorised evaluation instead of one per member)."""
    config = ctx.exp.config
    ag = config.agent
    n_ep, base = int(ag.select_episodes), int(config.eval_seed + ag.select_seed)
    if not ag.select_per_seed:
        return jnp.asarray(_score(ctx.evaluate(states, num_episodes=n_ep, base_seed=base)), jnp.float32)
    members = jax.tree_util.tree_leaves(states)[0].shape[0]
    scores = []
    for m in range(members):  # members are grid points x seeds, seed-minor
        seed = int(config.seed) + m % int(config.num_seeds)
        one = jax.tree_util.tree_map(lambda x: x[m : m + 1], states)
        scores.append(_score(ctx.evaluate(one, num_episodes=n_ep, base_seed=base + seed * n_ep)))
    return jnp.asarray(np.concatenate(scores), jnp.float32)


def select_bc(states: BPPOState, score: jax.Array, at_end: bool) -> BPPOState:
    """The reference's BC checkpoint choice: a checked iterate is kept where its score beats that
    seed's best so far, which starts at a normalised score of 0 (``bc_best_score``); at the end of BC
    the kept iterate becomes pi_b (the reference saves it as ``bc_best.pt`` and loads it for the
    improvement stage). A seed whose checks never beat 0 keeps its last iterate (the reference would
    have no ``bc_best.pt`` to load)."""
    if score is not None:
        better = score > states.bc_best_score
        states = states.replace(bc_best=select(better, states.bc.params, states.bc_best),
                                bc_best_score=jnp.where(better, score, states.bc_best_score))
    if at_end:
        kept = states.bc_best_score > 0.0
        states = states.replace(bc=states.bc.replace(params=select(kept, states.bc_best, states.bc.params)))
    return states


def after_chunk(states: BPPOState, ctx, stage: str, stage_step: int) -> BPPOState:
    """The online choices (host side, between compiled chunks; every seed decides for itself).

    BC (``bc_select_every`` = N > 0): the BC iterate is scored after updates 1, N+1, 2N+1, ... (the
    reference checks after the update of every step with step % N == 0, so never after the last of
    its 5e5 updates) and pi_b is the best of them (``select_bc``).
    Online selection: at the end of BC, pi_b's score becomes each seed's best; in the improvement
    stage, every ``select_interval`` steps pi is evaluated and replaces pi_k where it beats that
    seed's best. Each seed's checks reset from the same episodes (``select_score``), so they are
    paired comparisons. With ``report_best_pik``, the final pi_k is then evaluated on the final
    evaluation's episodes.
    """
    config = ctx.exp.config
    ag = config.agent
    n_bc, n_pi = ag.bc_steps, ag.pi_steps
    if stage in ("bc_first", "bc"):
        updates = stage_step + (stage == "bc")  # BC updates so far (the first one is the bc_first stage)
        at_end = updates == n_bc
        score = None
        if ag.bc_select_every and (updates - 1) % ag.bc_select_every == 0:
            score = select_score(states, ctx)
        if ag.bc_select_every and (score is not None or at_end):
            states = select_bc(states, score, at_end)
        if ag.selection == "online" and at_end:
            # pi_b's score on the selection episodes (the reference re-evaluates the loaded
            # bc_best.pt on the same episodes: the score it was kept for)
            kept = states.bc_best_score > 0.0 if ag.bc_select_every else jnp.zeros_like(states.bc_best_score, bool)
            best = states.bc_best_score if bool(kept.all()) else jnp.where(kept, states.bc_best_score, select_score(states, ctx))
            states = states.replace(best_score=best)
        return states
    if ag.selection != "online":
        return states
    if stage != "improve" or not (stage_step % ag.select_interval == 0 or stage_step == n_pi):
        return states
    score = select_score(states, ctx)
    better = score > states.best_score
    states = states.replace(
        pi_k=select(better, states.pi.params, states.pi_k),
        best_score=jnp.where(better, score, states.best_score),
        replacements=states.replacements + better.astype(jnp.int32),
    )
    if ag.report_best_pik and stage_step == n_pi:
        res = ctx.evaluate(act_with_pik(states), base_seed=final_eval_seed(config))
        norm = float(np.mean(res.normalized))
        score = f"score {norm:.1f}" if np.isfinite(norm) else f"return {float(np.mean(res.raw)):.1f}"
        print(f"[bppo] best pi_k (online-selected, the reference's bppo_best.pt) on the final evaluation's episodes: "
              f"{score} (per seed {[round(float(x), 1) for x in res.raw]}); the score reported below is the last iterate's",
              flush=True)
        states = states.replace(best_pik_raw=jnp.asarray(res.raw, jnp.float32))
    return states


def extra_scores(states: BPPOState, config) -> dict:
    """``best_pik``: the online-selected pi_k's return on the final evaluation's episodes, next to
    the last iterate's score in results.json / results.md (``report_best_pik``; none otherwise)."""
    return {"best_pik": states.best_pik_raw} if config.agent.report_best_pik else {}


def validate(config):
    ag = config.agent
    check = Checks(ag, "agent")
    check.one_of(("pi", "pi_k"), "off_policy_actor")
    check.one_of(SELECTIONS, "selection")
    check.integer(0, "v_steps", "q_steps", "bc_steps", "pi_steps", "bppo_off", "decay_until", "bc_select_every")
    check.integer(1, "select_interval", "select_episodes", "q_target_every", "lr_decay_every")
    check.within("[0, 1]", "omega")
    check.above(0, "clip_eps")
    check.within("(0, 1]", "clip_decay", "lr_decay", "tau")
    check.need(not ag.report_best_pik or ag.selection == "online", "report_best_pik",
               f"needs agent.selection='online' (got {ag.selection!r}): only online selection keeps the best-scoring pi_k")
    check.above(0, "grad_clip")


ALGORITHM = Algorithm(
    name="bppo",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    # read in-graph only; grad_clip, lr_decay, decay_until and lr_decay_every shape the optimiser
    sweepable=("v_lr", "q_lr", "bc_lr", "pi_lr", "tau", "clip_eps", "clip_decay", "omega", "entropy_weight"),
    validate=validate,
    variant=variant,
    chunk_every=chunk_every,
    after_chunk=after_chunk,
    extra_scores=extra_scores,
)
