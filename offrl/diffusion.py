"""Score-based generative modelling of a conditional distribution p(x | c) (Song et al., 2021).

What ARQ's behaviour model needs, written for JAX (x: an action, c: a state):

- :class:`VPSDE`, the variance-preserving SDE ``dx = -0.5 beta(t) x dt + sqrt(beta(t)) dw`` with
  ``beta(t) = b0 + t (b1 - b0)``; its marginal ``p_0t(x_t | x_0) = N(m(t) x_0, s(t)^2 I)`` with
  ``c(t) = 0.5 t^2 (b1 - b0) + t b0``, ``m(t) = exp(-c(t) / 2)``, ``s(t) = sqrt(1 - exp(-c(t)))``;
- :class:`ScoreNet`, the residual network with Gaussian Fourier time features whose output divided
  by ``s(t)`` is the score (:func:`make_score_fn`, which also averages an ensemble);
- :func:`dsm_loss`, denoising score matching with the marginal-std weighting;
- :func:`pc_sample`, the predictor-corrector sampler (one Langevin corrector step, then a reverse
  Euler-Maruyama predictor, per time step), one ``lax.scan``, batched over its rows;
- :func:`log_likelihood`, ``log p_0(x)`` through the probability-flow ODE and the instantaneous
  change of variables, solved by diffrax's adaptive Dopri5, with a Hutchinson (Rademacher) or the
  exact trace of the drift's Jacobian.

The reference is the ARQ authors' TensorFlow code, hiwonjoon/ARQ-public,
``arq/algo/sde_conditional.py`` (``VPSDE``, ``ScoreNet``, ``GaussianFourierProjection``,
``prepare_update``, ``build_pc_sampler``, ``build_log_likelihood``); differences are noted where
they occur. Everything here is pure and jit-able; nothing depends on offrl's algorithms.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import diffrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from offrl import nets
from offrl.nets import LOG_2PI

TRACE_ESTIMATORS = ("hutchinson", "exact")


class VPSDE(NamedTuple):
    """The variance-preserving SDE on [0, 1] (hashable, so it can be a static argument)."""

    beta_min: float = 0.1
    beta_max: float = 20.0

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral_beta(self, t):
        """c(t) = int_0^t beta(u) du."""
        return 0.5 * t**2 * (self.beta_max - self.beta_min) + t * self.beta_min

    def marginal(self, t):
        """(mean coefficient m(t), std s(t)) of p_0t(x_t | x_0) = N(m(t) x_0, s(t)^2 I)."""
        c = self.integral_beta(t)
        return jnp.exp(-0.5 * c), jnp.sqrt(1.0 - jnp.exp(-c))

    def sde(self, x, t):
        """(drift f(x, t), diffusion g(t)) for x (..., D) and t (...,)."""
        beta = self.beta(t)
        return -0.5 * beta[..., None] * x, jnp.sqrt(beta)


class GaussianFourierFeatures(nn.Module):
    """t (...,) -> [sin(2 pi t W), cos(2 pi t W)] (..., dim) with fixed W ~ N(0, scale^2) (dim/2 of them).

    W is a parameter so it is saved with the model, but it never moves: its gradient is stopped
    (Adam then leaves it exactly where it is, and its EMA equals it)."""

    dim: int
    scale: float = 30.0

    @nn.compact
    def __call__(self, t):
        w = jax.lax.stop_gradient(self.param("W", nn.initializers.normal(self.scale), (self.dim // 2,)))
        proj = 2.0 * math.pi * t[..., None] * w
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class ScoreNet(nn.Module):
    """The conditional score network of the ARQ reference (before division by s(t)).

        o  = Dense(concat(x, c));  te = Dense(GFF(t))
        per block: o0 = o; o = l1(swish(o + te)); o = l2(swish(o + te)); o = o0 + o
        out = Dense(out_dim)(o)

    ``hidden_dims`` lists one width per residual block (all equal: the blocks are residual).
    Dense layers use Glorot-uniform kernels and zero biases, Keras' defaults, as the reference.
    """

    out_dim: int
    hidden_dims: Sequence[int] = (256, 256, 256)
    fourier_scale: float = 30.0
    activation: Callable = nn.swish

    @nn.compact
    def __call__(self, x, c, t):
        width = self.hidden_dims[0]
        dense = lambda n: nets.Dense(n, kernel_init=nn.initializers.xavier_uniform())  # noqa: E731
        o = dense(width)(jnp.concatenate([x, c], axis=-1))
        te = dense(width)(GaussianFourierFeatures(width, self.fourier_scale)(t))
        for _ in self.hidden_dims:
            o0 = o
            o = dense(width)(self.activation(o + te))
            o = dense(width)(self.activation(o + te))
            o = o0 + o
        return dense(self.out_dim)(o)


def make_score_fn(apply_fn: Callable, sde: VPSDE) -> Callable:
    """score(params, x (B, D), c (B, C), t (B,)) -> (B, D): the ensemble-mean output / s(t).

    ``params`` carry a leading ensemble axis (one member: size 1); the members' outputs are
    averaged, which averages their scores (the reference's ``SDE_Ensemble.score``)."""

    def score(params, x, c, t):
        out = jax.vmap(lambda p: apply_fn(p, x, c, t))(params).mean(0)
        return out / sde.marginal(t)[1][..., None]

    return score


def dsm_loss(apply_fn: Callable, params, x0, c, key, sde: VPSDE, t_min: float = 1e-5):
    """Denoising score matching with marginal-std weighting, for one network:

        t ~ U(t_min, 1), z ~ N(0, I), x_t = m(t) x0 + s(t) z,  loss = mean_B sum_D (net(x_t, c, t) + z)^2

    (``net = s(t) * score``, so this is ``s(t)^2 |score - grad log p_0t(x_t | x0)|^2``)."""
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, x0.shape[:-1], x0.dtype, t_min, 1.0)
    z = jax.random.normal(k_z, x0.shape, x0.dtype)
    mean, std = sde.marginal(t)
    out = apply_fn(params, mean[..., None] * x0 + std[..., None] * z, c, t)
    return jnp.mean(jnp.sum((out + z) ** 2, axis=-1))


def pc_sample(score_fn: Callable, c, key, sde: VPSDE, out_dim: int, num_steps: int = 500,
              snr: float = 0.16, t_end: float = 1e-3, per_row_step: bool = True):
    """One sample of x per row of c (B, C) by the predictor-corrector sampler; returns (B, out_dim).

    x_1 ~ N(0, I); for t in linspace(1, t_end, num_steps), with dt = (1 - t_end) / (num_steps - 1):
      corrector (Langevin): z ~ N(0, I), eps = 2 (snr |z| / |score(x, t)|)^2 per row,
                            x <- x + eps score(x, t) + sqrt(2 eps) z
      predictor (reverse Euler-Maruyama): x_mean = x - [f(x, t) - g(t)^2 score(x, t)] dt,
                            x <- x_mean + g(t) sqrt(dt) z'
    and the last x_mean is returned (no noise on the final step). ``per_row_step=True`` takes |z|
    and |score| per row, as the reference's sampling configs (``batch_independent_step_size=True``);
    ``False`` takes their means over the batch, as Song et al. and the reference function's
    default. In few dimensions the per-row step size is heavy-tailed (|score| of a row can be
    near 0) and widens the samples (tests/test_arq.py measures it on a Gaussian); the batch-mean
    one samples a Gaussian correctly. ``snr=0`` leaves only the predictor.
    ``score_fn(x, c, t)`` is the score with the model's parameters already bound."""
    if num_steps < 2:
        raise ValueError(f"pc_sample needs num_steps >= 2, got {num_steps}")
    b = c.shape[0]
    k_init, k_steps = jax.random.split(key)
    x = jax.random.normal(k_init, (b, out_dim), c.dtype)
    times = jnp.linspace(1.0, t_end, num_steps, dtype=c.dtype)
    dt = times[0] - times[1]

    def step(carry, inp):
        x, _ = carry
        t, k = inp
        k_c, k_p = jax.random.split(k)
        tb = jnp.full((b,), t, c.dtype)
        z = jax.random.normal(k_c, x.shape, x.dtype)
        s = score_fn(x, c, tb)
        z_norm, s_norm = jnp.linalg.norm(z, axis=-1, keepdims=True), jnp.linalg.norm(s, axis=-1, keepdims=True)
        if not per_row_step:
            z_norm, s_norm = z_norm.mean(), s_norm.mean()
        eps = 2.0 * (snr * z_norm / s_norm) ** 2
        x = x + eps * s + jnp.sqrt(2.0 * eps) * z
        drift, g = sde.sde(x, tb)
        x_mean = x - (drift - (g**2)[:, None] * score_fn(x, c, tb)) * dt
        x = x_mean + jnp.sqrt(dt) * g[:, None] * jax.random.normal(k_p, x.shape, x.dtype)
        return (x, x_mean), None

    (_, x_mean), _ = jax.lax.scan(step, (x, x), (times, jax.random.split(k_steps, num_steps)))
    return x_mean


def log_likelihood(score_fn: Callable, x0, c, key, sde: VPSDE, num_probes: int = 10, estimator: str = "hutchinson",
                   t0: float = 1e-5, rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096,
                   with_steps: bool = False):
    """log p_0(x0 | c) for every row of x0 (B, D), c (B, C), by the probability-flow ODE.

        dx/dt = h(x, t) = f(x, t) - 0.5 g(t)^2 score(x, t),   integrated from t0 to 1,
        log p_0(x0) = log N(x(1); 0, I) + int_t0^1 div h(x(t), t) dt

    All rows form one ODE system, as in the reference (scipy's RK45 over the concatenated batch at
    rtol = atol = 1e-5), here solved by diffrax's Dopri5 with a PID step-size controller: the step
    size is shared and its error norm is the RMS over every row (one system is ~6x faster on CPU
    than a vmapped solve per row, whose while loop steps every row anyway). ``div h`` is estimated
    with ``num_probes`` Rademacher probes v per row, mean of v^T (dh/dx) v, fixed along the solve
    (``estimator='hutchinson'``, the reference's, which uses 10 probes shared by all rows), or
    computed exactly from D Jacobian-vector products (``'exact'``; cheaper when D < num_probes).
    If the solve fails (more than ``max_steps`` steps) every row gets NaN. ``with_steps`` also
    returns the number of accepted and rejected solver steps."""
    if estimator not in TRACE_ESTIMATORS:
        raise ValueError(f"unknown trace estimator {estimator!r}: choose one of {TRACE_ESTIMATORS}")
    b, d = x0.shape
    if estimator == "exact":
        probes = jnp.broadcast_to(jnp.eye(d, dtype=x0.dtype), (b, d, d))
    else:
        probes = jax.random.rademacher(key, (b, num_probes, d), x0.dtype)

    def h(x, t):
        tb = jnp.full((b,), t, x.dtype)
        drift, g = sde.sde(x, tb)
        return drift - 0.5 * (g**2)[:, None] * score_fn(x, c, tb)

    def field(t, y, args):
        x, _ = y
        hx, jvp = jax.linearize(lambda u: h(u, t), x)
        jv = jax.vmap(jvp, in_axes=1, out_axes=1)(probes)  # (B, P, D): J v for every probe of every row
        div = jnp.sum(probes * jv, axis=-1)
        return hx, (div.sum(-1) if estimator == "exact" else div.mean(-1))

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Dopri5(), t0=t0, t1=1.0, dt0=None, y0=(x0, jnp.zeros((b,), x0.dtype)),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps, throw=False,
    )
    x1, integral = sol.ys[0][-1], sol.ys[1][-1]
    logp = -0.5 * jnp.sum(x1**2, axis=-1) - 0.5 * d * LOG_2PI + integral
    logp = jnp.where(sol.result == diffrax.RESULTS.successful, logp, jnp.nan)
    return (logp, sol.stats["num_steps"]) if with_steps else logp
