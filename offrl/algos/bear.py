"""BEAR-QL (Kumar et al., 2019) and BEAR++ (through ``offrl.plugins``).

Reference: the authors' code, github.com/aviralkumar2907/BEAR, ``algos.py`` (class ``BEAR``),
run as its README's commands ("hyperparameters that generally work well": ``--mode=auto
--num_samples_match=5 --lamda=0.0 --version=0 --lagrange_thresh=10.0 --eval_freq=1000``). Every
default below is that code's value; where it differs from the paper or from the later rlkit
implementation (rail-berkeley/d4rl_evaluations), the config names the switch.

One update, in the reference code's order:

1. behaviour VAE (750-750, latent 2A):  L_vae = mse(tanh(dec(s, z)), a) + 0.5 * KL(q(z|s,a) || N(0,I))
   (both means over elements, as the reference code).
2. critics (two, 400-300, one ``nn.vmap`` ensemble): 10 actions a'_j ~ pi_targ(s') per next state
   (unclipped noise, the reference ``actor_target.forward``; ``target_noise_clip`` clips it),
       y = r + gamma (1 - d) max_j [0.75 min_i Q'_i(s', a'_j) + 0.25 max_i Q'_i(s', a'_j)]
       L_Q = sum_i mean (Q_i(s, a) - y)^2           (+ BEAR++'s gradient penalty, ``agent.gp``)
3. actor (tanh-Gaussian, 400-300, log-std unbounded as the reference ``RegularActor``):
   n = ``num_samples`` actions from the VAE and from pi at each s, pi's Gaussian noise clipped to
   +-``actor_noise_clip`` = 0.5 (the reference ``sample_multiple``), MMD between them on the
   pre-tanh actions (``nets.mmd``: Laplacian kernel, sigma ``mmd_sigma``), with the updated critic:
       L_pi = mean_s [ -min_i mean_j Q_i(s, a_j) + exp(log_alpha) * MMD(s) ]
   during the first ``warmup_steps`` only the constraint term: exp(log_alpha) * mean MMD.
4. Lagrange multiplier: log_alpha += lr * exp(log_alpha) * (mean MMD - epsilon), clipped to
   [``log_alpha_min``, ``log_alpha_max``] = [-5, 10] (Adam on -that objective, lr 1e-3; the reference
   draws its initial log_alpha from N(0, 1): ``log_alpha_init`` + ``log_alpha_init_std`` * N(0, 1)).
5. Polyak (tau 0.005) for the actor and critic targets.

Acting: 10 actions sampled from pi (unclipped noise), the one with the highest Q_1 (the reference
``select_action``; ``deterministic`` changes nothing, as in the reference evaluation).

Defaults (reference): Adam lr 1e-3 for VAE, actor, critics and multiplier (torch's default; the
rlkit BEAR uses 1e-4 / 3e-4); batch 100 (configs/bear.py); epsilon 0.05; Laplacian kernel, sigma
10, 5 samples (README, first recommended setting; ``--kernel_type=gaussian --mmd_sigma=20`` is
the second, used for Adroit as in the TD3BC++ paper: ``MMD_PRESETS`` / configs/bear.py words);
warm-up 20 "epochs" of ``eval_freq`` = 1000 updates = 20k updates (``agent.warmup_steps``; the
reference main.py's default eval_freq 5000 would make it 100k). The reference's ensemble-variance
penalty (``lamda=0``, off in its published settings) is not implemented.

BEAR++ (configs/bearpp.py): ``agent.gp.enabled`` adds the gradient penalty to L_Q (uniform
actions, 16 per state, every 5 steps); ``agent.cr.enabled`` weights each state's MMD by
W(s, beta(s)), the batch-min-max-normalised critic value (mean of the critics, no gradient) of the
behaviour model's actions at s (averaged over the same VAE samples used in the MMD), in the actor
loss and in the multiplier's update; the critic is the one before this step's critic update
(``cr.weights_from='before'``, as the TD3BC++ reference) or after it. Both off is plain BEAR.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets, plugins
from offrl.algos import Algorithm, Spec, Stage, single_stage
from offrl.algos.common import adam, log_scalar, make_state
from offrl.checks import Checks

KERNELS = nets.MMD_KERNELS

# (kernel, sigma) per environment: the reference code's comment "sigma is set to 10.0 for hopper,
# cheetah and 20 for walker/ant", its README commands (Hopper: laplacian 10, Walker2d: gaussian
# 20), and the Gaussian kernel for the four Adroit tasks (TD3BC++ paper, Appendix C.1, README's
# second setting). configs/bear.py applies the row of the task a run names.
MMD_PRESETS = dict(
    hopper=("laplacian", 10.0), halfcheetah=("laplacian", 10.0), walker2d=("gaussian", 20.0), ant=("laplacian", 20.0),
    door=("gaussian", 20.0), hammer=("gaussian", 20.0), pen=("gaussian", 20.0), relocate=("gaussian", 20.0),
)


def default_agent_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            actor_lr=1e-3,
            critic_lr=1e-3,
            vae_lr=1e-3,
            alpha_lr=1e-3,
            actor_hidden_dims=(400, 300),
            critic_hidden_dims=(400, 300),
            vae_hidden_dims=(750, 750),
            latent_dim=0,  # 0: 2 * action dim
            tau=0.005,
            num_target_samples=10,  # actions at s' for the target
            target_lambda=0.75,  # y uses lambda * min + (1 - lambda) * max over the critics
            num_samples=5,  # actions per state on each side of the MMD
            kernel="laplacian",
            mmd_sigma=10.0,
            actor_noise_clip=0.5,  # pi's N(0,1) noise clipped to +-this in the actor loss (0: no clip)
            target_noise_clip=0.0,  # the same for the target's a' ~ pi_targ(s') (0: no clip, as the reference)
            actor_log_std_min=-float("inf"),  # the reference RegularActor does not bound its log-std
            actor_log_std_max=float("inf"),
            epsilon=0.05,  # MMD threshold
            log_alpha_init=0.0,
            log_alpha_init_std=1.0,  # initial log_alpha = log_alpha_init + this * N(0, 1) (reference: torch.randn)
            log_alpha_min=-5.0,
            log_alpha_max=10.0,
            warmup_steps=20_000,  # updates that optimise only the MMD constraint
            num_act_samples=10,  # acting: argmax Q_1 over this many policy samples
            gp=plugins.gp_config(),  # BEAR++ gradient penalty (off: plain BEAR)
            cr=plugins.cr_config(),  # BEAR++ critic-weighted MMD (off: plain BEAR)
            log_grad_norm=True,  # diagnostics ||grad_a Q_1|| at policy samples and dataset actions, once per chunk
        )
    )


# ------------------------------------------------------------------------------- state
class BEARState(struct.PyTreeNode):
    vae: TrainState
    actor: TrainState
    critic: TrainState
    log_alpha: TrainState  # params: {"value": log alpha}
    actor_target: dict
    critic_target: dict


def latent_dim(spec: Spec, config) -> int:
    return int(config.agent.latent_dim) or 2 * spec.act_dim


def networks(spec: Spec, config):
    ag = config.agent
    vae = nets.ConditionalVAE(spec.act_dim, latent_dim(spec, config), tuple(ag.vae_hidden_dims))
    actor = nets.GaussianPolicy(spec.act_dim, tuple(ag.actor_hidden_dims), log_std_min=float(ag.actor_log_std_min),
                                log_std_max=float(ag.actor_log_std_max))
    critic = nets.critic_ensemble(2, tuple(ag.critic_hidden_dims))
    return vae, actor, critic


def init(key, spec: Spec, config) -> BEARState:
    ag = config.agent
    vae_net, actor_net, critic_net = networks(spec, config)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    obs, act = jnp.zeros((1, spec.obs_dim)), jnp.zeros((1, spec.act_dim))
    vae = make_state(k1, vae_net, (obs, act, jax.random.PRNGKey(0)), adam(ag.vae_lr))
    actor = make_state(k2, actor_net, (obs,), adam(ag.actor_lr))
    critic = make_state(k3, critic_net, (obs, act), adam(ag.critic_lr))
    log_alpha = log_scalar(ag.alpha_lr, ag.log_alpha_init + ag.log_alpha_init_std * jax.random.normal(k4))
    return BEARState(vae, actor, critic, log_alpha, actor.params, critic.params)


def policy_samples(actor: TrainState, params, obs, key, num: int, noise_clip: float = 0.0):
    """(actions (B, num, A), pre-tanh actions (B, num, A)) from the tanh-Gaussian policy:
    u = mean + std * eps, eps ~ N(0, I) clipped to +-``noise_clip`` when it is > 0."""
    mean, log_std = actor.apply_fn(params, obs)
    eps = jax.random.normal(key, (mean.shape[0], num, mean.shape[-1]), mean.dtype)
    if noise_clip > 0:
        eps = jnp.clip(eps, -noise_clip, noise_clip)
    u = mean[:, None] + jnp.exp(log_std)[:, None] * eps
    return jnp.tanh(u), u


def vae_samples(vae: TrainState, obs, key, num: int):
    """(actions (B, num, A), pre-tanh actions) decoded from clipped N(0, I) latents."""
    u = vae.apply_fn(vae.params, obs, key, num, method="sample")
    return jnp.tanh(u), u


def _q(state: BEARState, params, obs, actions, first_only: bool = False):
    """Critic values of per-state action sets: obs (B, d), actions (B, n, A) -> (2, B, n); (1, B, n)
    with ``first_only`` (Q_1 alone: the second critic is not evaluated)."""
    b, n, a = actions.shape
    o = jnp.repeat(obs, n, axis=0)
    apply = nets.first_members(state.critic.apply_fn, params) if first_only else nets.bind(state.critic.apply_fn, params)
    return apply(o, actions.reshape(b * n, a)).reshape(-1, b, n)


# ------------------------------------------------------------------------------- losses
def vae_loss(vae_params, state: BEARState, batch, key):
    recon, mu, log_std = state.vae.apply_fn(vae_params, batch.observations, batch.actions, key)
    rec = ((jnp.tanh(recon) - batch.actions) ** 2).mean()
    kl = (nets.standard_normal_kl(mu, log_std) / mu.shape[-1]).mean()  # mean over latent elements
    loss = rec + 0.5 * kl
    return loss, {"vae_loss": loss, "vae_recon": rec, "vae_kl": kl}


def critic_loss(critic_params, state: BEARState, batch, key, config):
    ag = config.agent
    next_a, _ = policy_samples(state.actor, state.actor_target, batch.next_observations, key, ag.num_target_samples,
                               ag.target_noise_clip)
    qs = _q(state, state.critic_target, batch.next_observations, next_a)  # (2, B, n)
    lam = ag.target_lambda
    next_q = (lam * qs.min(0) + (1.0 - lam) * qs.max(0)).max(-1)
    target = batch.rewards + config.discount * (1.0 - batch.terminals) * next_q
    q = state.critic.apply_fn(critic_params, batch.observations, batch.actions)
    loss = ((q - jax.lax.stop_gradient(target)) ** 2).mean(-1).sum()
    return loss, {"critic_loss": loss, "td_loss": loss, "q": q[0].mean()}


def critic_objective(critic_params, state: BEARState, batch, key, step, config):
    """``critic_loss`` plus, when ``agent.gp.enabled``, BEAR++'s gradient penalty (on its own key)."""
    loss, info = critic_loss(critic_params, state, batch, key, config)
    ag = config.agent
    if ag.gp.enabled:
        q_fn = nets.bind(state.critic.apply_fn, critic_params)
        policy_fn = lambda k, o: policy_samples(state.actor, state.actor.params, o, k, 1)[0][:, 0]  # noqa: E731
        pen, ginfo = plugins.gp_penalty(
            q_fn, jax.random.fold_in(key, 1), step, batch.observations, batch.actions, ag.gp, policy_fn, False
        )
        info = {**info, **ginfo, "critic_loss": loss + pen}
        loss = loss + pen
    return loss, info


def critic_grads(critic_params, state: BEARState, batch, key, step, config):
    """``jax.grad(critic_objective)`` and its metrics, as ``update`` computes them: BEAR++'s penalty
    gradient is taken inside its ``lax.cond`` (``plugins.gp_penalty_grads``), so steps without it
    cost what a plain BEAR step costs."""
    grads, info = jax.grad(critic_loss, has_aux=True)(critic_params, state, batch, key, config)
    ag = config.agent
    if ag.gp.enabled:
        policy_fn = lambda k, o: policy_samples(state.actor, state.actor.params, o, k, 1)[0][:, 0]  # noqa: E731
        gp_grads, pen, ginfo = plugins.gp_penalty_grads(
            state.critic.apply_fn, critic_params, jax.random.fold_in(key, 1), step, batch.observations, batch.actions,
            ag.gp, policy_fn, False,
        )
        grads = jax.tree_util.tree_map(jnp.add, grads, gp_grads)
        info = {**info, **ginfo, "critic_loss": info["critic_loss"] + pen}
    return grads, info


def actor_loss(actor_params, state: BEARState, batch, key, step, config, cr_critic_params=None):
    """BEAR's actor loss; aux carries the (weighted) per-batch MMD the multiplier update uses.

    ``cr_critic_params``: the critic BEAR++'s weights W(s, beta(s)) are read from (default: the
    current one; ``update`` passes the pre-update critic when ``cr.weights_from='before'``)."""
    ag = config.agent
    k_vae, k_pi = jax.random.split(key)
    beta_a, beta_u = vae_samples(state.vae, batch.observations, k_vae, ag.num_samples)
    pi_a, pi_u = policy_samples(state.actor, actor_params, batch.observations, k_pi, ag.num_samples, ag.actor_noise_clip)
    m = nets.mmd(jax.lax.stop_gradient(beta_u), pi_u, ag.mmd_sigma, ag.kernel)  # (B,)
    info = {"mmd": m.mean()}
    if ag.cr.enabled:
        cp = state.critic.params if cr_critic_params is None else cr_critic_params
        w = plugins.critic_weights(_q(state, cp, batch.observations, beta_a).mean(-1), ag.cr)
        m = m * w
        info["cr_weight_mean"] = w.mean()
    constraint = m.mean()
    q = _q(state, state.critic.params, batch.observations, pi_a).mean(-1).min(0)  # (B,)
    alpha = jnp.exp(state.log_alpha.params["value"])
    full = -q.mean() + alpha * constraint
    loss = jnp.where(step < ag.warmup_steps, alpha * constraint, full)
    return loss, {**info, "actor_loss": loss, "actor_q": q.mean(), "constraint": constraint, "alpha": alpha,
                  "_constraint": jax.lax.stop_gradient(constraint)}


def alpha_loss(params, constraint, config):
    """-(exp(log_alpha) * (constraint - epsilon)): descending it raises alpha while the constraint is violated."""
    return -jnp.exp(params["value"]) * (constraint - config.agent.epsilon)


def update(state: BEARState, batch, key, step, config):
    ag = config.agent
    k_vae, k_critic, k_actor = jax.random.split(key, 3)
    g, vinfo = jax.grad(vae_loss, has_aux=True)(state.vae.params, state, batch, k_vae)
    state = state.replace(vae=state.vae.apply_gradients(grads=g))

    critic_before = state.critic.params
    g, cinfo = critic_grads(state.critic.params, state, batch, k_critic, step, config)
    state = state.replace(critic=state.critic.apply_gradients(grads=g))

    cr_params = critic_before if plugins.cr_weights_before(ag) else None
    g, ainfo = jax.grad(actor_loss, has_aux=True)(state.actor.params, state, batch, k_actor, step, config, cr_params)
    actor = state.actor.apply_gradients(grads=g)
    constraint = ainfo.pop("_constraint")

    g = jax.grad(alpha_loss)(state.log_alpha.params, constraint, config)
    la = state.log_alpha.apply_gradients(grads=g)
    la = la.replace(params={"value": jnp.clip(la.params["value"], ag.log_alpha_min, ag.log_alpha_max)})

    state = state.replace(
        actor=actor,
        log_alpha=la,
        actor_target=nets.polyak(state.actor_target, actor.params, ag.tau),
        critic_target=nets.polyak(state.critic_target, state.critic.params, ag.tau),
    )
    return state, {**vinfo, **cinfo, **ainfo}


def diagnostics(state: BEARState, batch, key, config) -> dict:
    """``grad_norm_pi`` (at one policy sample per state) / ``grad_norm_data`` of ``state`` on ``batch``
    when ``agent.log_grad_norm`` (the runtime calls this once per chunk, outside the scanned updates)."""
    if not config.agent.log_grad_norm:
        return {}
    q1 = nets.first_members(state.critic.apply_fn, state.critic.params)
    pi, _ = policy_samples(state.actor, state.actor.params, batch.observations, key, 1)
    return plugins.grad_norm_metrics(q1, batch.observations, pi[:, 0], batch.actions)


def variant(config) -> str:
    """The name score tables show: bear, bear+gp, bear+cr or bear++."""
    return plugins.variant_name("bear", config.agent, "bear++")


def stages(config) -> list[Stage]:
    return single_stage(update, config)


def act(state: BEARState, obs, key, config, deterministic: bool = True):
    """argmax_j Q_1(s, a_j) over ``num_act_samples`` actions a_j ~ pi(s) (BEAR's select_action)."""
    squeeze = obs.ndim == 1
    o = obs[None] if squeeze else obs
    a, _ = policy_samples(state.actor, state.actor.params, o, key, config.agent.num_act_samples)
    q1 = _q(state, state.critic.params, o, a, first_only=True)[0]  # (B, n)
    best = jnp.take_along_axis(a, q1.argmax(-1)[:, None, None], axis=1)[:, 0]
    return best[0] if squeeze else best


def validate(config):
    check = Checks(config.agent, "agent")
    check.one_of(KERNELS, "kernel")
    check.integer(1, "num_samples", "num_target_samples", "num_act_samples")
    check.within("(0, 1]", "tau")
    check.at_least(0, "actor_noise_clip", "target_noise_clip", "log_alpha_init_std", why="0 switches it off")
    check.ordered("actor_log_std_min", "actor_log_std_max")
    check.above(0, "mmd_sigma")
    check.ordered("log_alpha_min", "log_alpha_max", strict=False)
    check.within("[0, 1]", "target_lambda")
    plugins.validate(config.agent)


ALGORITHM = Algorithm(
    name="bear",
    init=init,
    stages=stages,
    act=act,
    default_config=default_agent_config,
    sweepable=("actor_lr", "critic_lr", "vae_lr", "alpha_lr", "tau", "target_lambda", "mmd_sigma", "epsilon",
               "log_alpha_min", "log_alpha_max", "gp.weight", "gp.k"),
    validate=validate,
    variant=variant,
    diagnostics=diagnostics,
)
