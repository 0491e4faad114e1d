"""TD3BC++ / BEAR++ plug-ins (paper: td3bc-pp-bear-pp-contaminated-datasets.md), usable by any actor-critic.

**GP**, gradient penalty on the critic (paper Eq. 8, Listing 1), added to the critic loss every
``gp.every`` critic steps::

    L_GP = lambda_GP * mean_{s ~ D, a} sum_i relu(||grad_a Q_i(s, a)||_2 - k)^2

Actions ``a`` come from ``gp.actions``:

- ``uniform`` (default, the paper's choice): each batch state repeated ``gp.repeats`` (16) times,
  one action drawn uniformly in the action box [-1, 1]^A per copy;
- ``dataset``: each state's own dataset action (no repetition: 16 copies of the same pair would
  leave the mean unchanged);
- ``policy``: the current policy's action(s) at the state, no gradient into the policy (repeated
  ``gp.repeats`` times for a stochastic policy, once for a deterministic one).

The sum over critics and the mean over samples follow Listing 1 (``(relu(g1-k)^2 + relu(g2-k)^2).mean()``).
An algorithm calls :func:`gp_penalty` from its critic loss with its own critic apply function
``q_fn(obs, actions) -> (num_critics, N)`` and the ``step`` the runtime passes to ``update``.

**CR**, critic-weighted constraint relaxation (paper Eq. 10): per-sample weights of the
behaviour constraint::

    W(s, a) = (Q(s, a) - min_batch Q) / (max_batch Q - min_batch Q)     in [0, 1], no gradient

Reference: the authors' code, github.com/glorgao/TD3BCpp, ``TD3_BC.py`` (``train`` and
``penalize_gradient_norm``); the defaults are its values. ``cr.critic`` picks Q from the critic
ensemble: ``mean`` over the critics (default: the reference uses ``(current_Q1 + current_Q2) / 2``
of the dataset action), ``min``, or ``q1``. ``cr.weights_from``: ``before`` (default) reads the
critic values computed for the critic loss, i.e. the critic before this step's update, as the
reference does; ``after`` the updated critic. ``cr.normalize=False`` uses the raw critic value as
the paper's Listing 1 prints it; the default is the reference code's and Eq. 10's min-max
normalisation. ``cr.percentile_clip=(lo, hi)`` first clamps the values to their batch lo-th and
hi-th percentiles: the reference's clamp for walker2d-medium-expert, (5, 95), "as there exists a
long-tail Q-value distribution" (commented out in its code, applied by configs/td3bcpp_presets.py
for that task only); the default (0, 100) changes nothing. A batch whose values are all equal
gets weight 1 everywhere (no relaxation; the reference would divide by zero).

:func:`action_grad_norm` is the exploding-gradient diagnostic of the paper's Figure 3, logged as
a metric by the algorithms that use these plug-ins.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections

from offrl import nets
from offrl.checks import Checks

GP_ACTIONS = ("uniform", "dataset", "policy")
CR_CRITICS = ("mean", "min", "q1")


def gp_config(enabled: bool = False, weight: float = 1.0) -> ml_collections.ConfigDict:
    """``agent.gp``: weight = lambda_GP, k = gradient-norm threshold, every = N (penalise every N critic steps)."""
    return ml_collections.ConfigDict(dict(enabled=enabled, weight=weight, k=1.0, every=5, repeats=16, actions="uniform"))


CR_WEIGHTS_FROM = ("before", "after")


def cr_config(enabled: bool = False) -> ml_collections.ConfigDict:
    """``agent.cr``: which critic value weights the constraint (``critic``, ``weights_from``), whether
    to clamp it to batch percentiles and min-max normalise it (see the module docstring)."""
    return ml_collections.ConfigDict(
        dict(enabled=enabled, critic="mean", weights_from="before", normalize=True, percentile_clip=(0.0, 100.0))
    )


def cr_weights_before(agent_config) -> bool:
    """True when CR is on and reads the critic before its update (``cr.weights_from='before'``)."""
    return "cr" in agent_config and bool(agent_config.cr.enabled) and agent_config.cr.get("weights_from", "before") == "before"


def validate(agent_config) -> None:
    ag = Checks(agent_config, "agent", defaults={"cr.weights_from": "before", "cr.percentile_clip": (0.0, 100.0)})
    ag.one_of(GP_ACTIONS, "gp.actions")
    ag.integer(1, "gp.every", "gp.repeats")
    ag.at_least(0, "gp.k")
    ag.one_of(CR_CRITICS, "cr.critic")
    ag.one_of(CR_WEIGHTS_FROM, "cr.weights_from")
    lo, hi = tuple(ag.value("cr.percentile_clip"))
    ag.need(0.0 <= lo < hi <= 100.0, "cr.percentile_clip", "need 0 <= lo < hi <= 100, e.g. (5, 95)", value=(lo, hi))


def variant_name(base: str, agent_config, plus_plus: str) -> str:
    """'td3bc', 'td3bc+gp', 'td3bc+cr' or 'td3bc++' (``plus_plus``) from the plug-in switches, for score tables."""
    gp = "gp" in agent_config and bool(agent_config.gp.enabled)
    cr = "cr" in agent_config and bool(agent_config.cr.enabled)
    if gp and cr:
        return plus_plus
    return base + ("+gp" if gp else "") + ("+cr" if cr else "")


# ------------------------------------------------------------------------------- gradients
def safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
    """L2 norm whose gradient at 0 is 0 rather than NaN."""
    sq = jnp.sum(x**2, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def action_grads(q_fn: Callable, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """d Q_i(s_j, a_j) / d a_j for every critic i and sample j: (num_critics, N, A).

    ``q_fn(obs, actions) -> (num_critics, N)``; samples are independent, so the gradient of
    sum_j Q_i(s_j, a_j) w.r.t. the actions gives every per-sample gradient at once. Critics share
    the actions, so reverse mode would sum their gradients: for an ensemble bound by
    ``nets.bind`` / ``nets.EnsembleFn`` (it has ``per_member``), each critic reads its own copy of
    the actions and one backward pass gives every critic's gradient. Any other ``q_fn`` takes one
    backward pass per critic (each through all of ``q_fn``).
    """
    per_member = getattr(q_fn, "per_member", None)
    if per_member is not None:
        copies = jnp.broadcast_to(actions, (q_fn.num, *actions.shape))
        return jax.grad(lambda a: per_member(obs, a, in_axes=(None, 0)).sum())(copies)
    q, vjp = jax.vjp(lambda a: q_fn(obs, a), actions)
    eye = jnp.eye(q.shape[0], dtype=q.dtype)[:, :, None] * jnp.ones_like(q)[None]
    return jax.vmap(lambda ct: vjp(ct)[0])(eye)


def action_grad_norm(q_fn: Callable, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """||grad_a Q_i(s, a)||_2 per critic and sample: (num_critics, N)."""
    return safe_norm(action_grads(q_fn, obs, actions))


def grad_norm_metrics(q_fn: Callable, obs: jax.Array, policy_actions: jax.Array, dataset_actions: jax.Array) -> dict:
    """The diagnostic metrics ``grad_norm_pi`` / ``grad_norm_data``: mean ||grad_a Q|| at the policy's
    and at the dataset's actions (``q_fn(obs, actions) -> (1, N)``, usually the first critic)."""
    return {
        "grad_norm_pi": action_grad_norm(q_fn, obs, jax.lax.stop_gradient(policy_actions)).mean(),
        "grad_norm_data": action_grad_norm(q_fn, obs, dataset_actions).mean(),
    }


def gradient_penalty(q_fn: Callable, obs: jax.Array, actions: jax.Array, k: float = 1.0):
    """mean_j sum_i relu(||grad_a Q_i(s_j, a_j)|| - k)^2 (unweighted), and the gradient norms (num_critics, N)."""
    norms = action_grad_norm(q_fn, obs, actions)
    return jnp.mean(jnp.sum(jax.nn.relu(norms - k) ** 2, axis=0)), norms


def gp_inputs(key, obs, dataset_actions, gp, policy_fn: Optional[Callable] = None, deterministic_policy: bool = False):
    """(states, actions) the penalty is evaluated on; see the module docstring for ``gp.actions``.

    ``policy_fn(key, obs) -> actions`` in [-1, 1]^A (its output is not differentiated).
    """
    src, reps = gp.actions, int(gp.repeats)
    if src == "dataset":
        return obs, dataset_actions
    if src == "policy":
        if policy_fn is None:
            raise ValueError("agent.gp.actions='policy' needs the algorithm's policy function")
        if deterministic_policy:
            reps = 1
        o = jnp.repeat(obs, reps, axis=0)
        return o, jax.lax.stop_gradient(policy_fn(key, o))
    o = jnp.repeat(obs, reps, axis=0)
    return o, jax.random.uniform(key, (o.shape[0], dataset_actions.shape[-1]), minval=-1.0, maxval=1.0)


def _weighted_penalty(q_fn, key, obs, dataset_actions, gp, policy_fn, deterministic_policy):
    """lambda_GP * penalty on this step's GP inputs, and the mean gradient norm there."""
    o, a = gp_inputs(key, obs, dataset_actions, gp, policy_fn, deterministic_policy)
    pen, norms = gradient_penalty(q_fn, o, a, gp.k)
    return gp.weight * pen, jnp.mean(norms)


def _gp_step(step, gp):
    return step % int(gp.every) == 0


def gp_penalty(q_fn, key, step, obs, dataset_actions, gp, policy_fn=None, deterministic_policy=False):
    """lambda_GP * penalty on steps where ``step % gp.every == 0``, else 0; and metrics.

    The value of the term (it may be differentiated w.r.t. the critic parameters ``q_fn`` closes
    over, e.g. to check :func:`gp_penalty_grads`). An update should not differentiate through this
    ``lax.cond``: JAX then makes the branch return every residual the backward pass of the taken
    branch needs (for TD3+BC's default 16 x 256 uniform actions, 21 arrays, 25M floats), and the
    untaken branch writes them as zeros on every step, so skipping cost +59% per update. Updates
    call :func:`gp_penalty_grads`. Metrics: ``gp_penalty`` (the weighted term, 0 on skipped steps)
    and ``gp_grad_norm`` (mean gradient norm on the penalised samples; 0 on skipped steps).
    """

    def on(_):
        return _weighted_penalty(q_fn, key, obs, dataset_actions, gp, policy_fn, deterministic_policy)

    def off(_):
        z = jnp.zeros((), jnp.float32)
        return z, z

    pen, gnorm = jax.lax.cond(_gp_step(step, gp), on, off, None)
    return pen, {"gp_penalty": pen, "gp_grad_norm": gnorm}


def gp_penalty_grads(q_apply, params, key, step, obs, dataset_actions, gp, policy_fn=None, deterministic_policy=False):
    """(d gp_penalty / d params, penalty, metrics) with the gradient taken *inside* the ``lax.cond``.

    ``q_apply(params, obs, actions) -> (num_critics, N)``. Equal to differentiating
    :func:`gp_penalty` (tested), but the untaken branch only returns zeros shaped like ``params``,
    so steps without the penalty cost what an update without GP costs. ``step`` is the runtime's
    int32 update index, the same for every seed, so the cond stays a real branch under the seed vmap.
    """

    def on(_):
        def value(p):
            return _weighted_penalty(nets.bind(q_apply, p), key, obs, dataset_actions, gp, policy_fn, deterministic_policy)

        (pen, gnorm), grads = jax.value_and_grad(value, has_aux=True)(params)
        return grads, pen, gnorm

    def off(_):
        z = jnp.zeros((), jnp.float32)
        return jax.tree_util.tree_map(jnp.zeros_like, params), z, z

    grads, pen, gnorm = jax.lax.cond(_gp_step(step, gp), on, off, None)
    return grads, pen, {"gp_penalty": pen, "gp_grad_norm": gnorm}


# ------------------------------------------------------------------------------- critic weights
def reduce_critics(q: jax.Array, critic: str = "mean") -> jax.Array:
    """(num_critics, ...) -> (...) by ``critic`` in mean | min | q1."""
    if critic == "mean":
        return q.mean(0)
    if critic == "min":
        return q.min(0)
    if critic == "q1":
        return q[0]
    raise ValueError(f"unknown critic reduction {critic!r}: choose one of {CR_CRITICS}")


def minmax_weights(values: jax.Array) -> jax.Array:
    """(v - min) / (max - min) over the batch, stop-gradient; all ones when the batch is constant."""
    v = jax.lax.stop_gradient(values)
    lo, hi = v.min(), v.max()
    rng = hi - lo
    return jnp.where(rng > 0, (v - lo) / jnp.where(rng > 0, rng, 1.0), jnp.ones_like(v))


def percentile_clamp(values: jax.Array, lo: float, hi: float) -> jax.Array:
    """Clamp ``values`` to their own lo-th and hi-th percentiles (linear interpolation, as np.percentile)."""
    p_lo, p_hi = jnp.percentile(values, jnp.asarray([lo, hi], values.dtype))
    return jnp.clip(values, p_lo, p_hi)


def critic_weights(q: jax.Array, cr) -> jax.Array:
    """CR weights W (B,) from critic values ``q`` (num_critics, B) of the constrained actions."""
    v = reduce_critics(jax.lax.stop_gradient(q), cr.critic)
    lo, hi = (float(x) for x in cr.get("percentile_clip", (0.0, 100.0)))
    if (lo, hi) != (0.0, 100.0):
        v = percentile_clamp(v, lo, hi)
    return minmax_weights(v) if cr.normalize else v
