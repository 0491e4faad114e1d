"""Small Flax modules and distribution helpers shared by every algorithm.

One MLP; critics and their ensembles; deterministic, Gaussian and tanh-Gaussian
policies. Distribution maths is written out here (no extra dependency) so that
every algorithm computes log-likelihoods the same way.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array], jax.Array]

LOG_2PI = math.log(2.0 * math.pi)


def default_init(scale: float = math.sqrt(2.0)):
    return nn.initializers.orthogonal(scale)


def folding_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """``lax.dot_general`` for a Dense layer (``dimension_numbers``: the last axis of ``lhs`` against the
    first of ``rhs``). In a program lowered for the CPU, an ``lhs`` of rank > 2 (states x sampled actions
    x features, say) is folded into a matrix first and the result unfolded after: the layer's weight
    gradient is then a matmul over one contracted axis. Over two (CQL's 256 states x 10 actions), XLA's
    CPU program transposes the activations for it (9 transposes of (2, 256, 10, 256) per CQL update), and
    CQL's update ran 1.2-1.3x slower. On a GPU the fold made XLA fuse CQL's critic passes worse (+9%
    bytes per update, H200 target), so other platforms get the plain dot (``lax.platform_dependent``:
    only one branch is lowered and compiled). Equal values either way (tested). Other dimension numbers always get the
    plain dot."""

    def plain(lhs, rhs):
        return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type)

    if lhs.ndim <= 2 or dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())):
        return plain(lhs, rhs)

    def folded(lhs, rhs):
        out = jax.lax.dot_general(lhs.reshape((-1, lhs.shape[-1])), rhs, (((1,), (0,)), ((), ())), precision,
                                  preferred_element_type)
        return out.reshape(lhs.shape[:-1] + out.shape[1:])

    return jax.lax.platform_dependent(lhs, rhs, cpu=folded, default=plain)


def Dense(features: int, **kwargs) -> nn.Dense:
    """``nn.Dense`` (same parameters, same names) with :func:`folding_dot_general`: every network's layer."""
    return nn.Dense(features, dot_general=folding_dot_general, **kwargs)


class MLP(nn.Module):
    """Dense layers with an activation between them; optional LayerNorm after each hidden layer.

    ``output_dim`` adds a final linear layer. ``kernel_init=None`` keeps Flax's default
    (LeCun normal), which the TD3+BC and most reference codes use.
    """

    hidden_dims: Sequence[int]
    output_dim: Optional[int] = None
    activation: Activation = nn.relu
    layer_norm: bool = False
    activate_final: bool = False
    kernel_init: Optional[Callable] = None
    output_kernel_init: Optional[Callable] = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = {} if self.kernel_init is None else {"kernel_init": self.kernel_init}
        for i, h in enumerate(self.hidden_dims):
            x = Dense(h, **kw)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            if i + 1 < len(self.hidden_dims) or self.activate_final or self.output_dim is not None:
                x = self.activation(x)
        if self.output_dim is not None:
            okw = kw if self.output_kernel_init is None else {"kernel_init": self.output_kernel_init}
            x = Dense(self.output_dim, **okw)(x)
        return x


class Critic(nn.Module):
    """Q(s, a) (or V(s) when called without actions): an MLP with one output, squeezed."""

    hidden_dims: Sequence[int] = (256, 256)
    activation: Activation = nn.relu
    layer_norm: bool = False
    relu_output: bool = False  # a ReLU on the output (BPPO's reference code keeps V, Q >= 0 this way)
    kernel_init: Optional[Callable] = None  # every layer's kernel init (None: Flax's default)

    @nn.compact
    def __call__(self, obs: jax.Array, actions: Optional[jax.Array] = None) -> jax.Array:
        x = obs if actions is None else jnp.concatenate([obs, actions], axis=-1)
        out = MLP(self.hidden_dims, 1, self.activation, self.layer_norm, kernel_init=self.kernel_init)(x).squeeze(-1)
        return nn.relu(out) if self.relu_output else out


class Ensemble(nn.Module):
    """``num`` independent copies of a module, evaluated in one vmapped call; outputs stack on axis 0."""

    net_cls: type
    num: int = 2
    net_kwargs: Optional[dict] = None
    in_axes: Any = None  # None: every member reads the same inputs; (None, 0): member i reads args[1][i] (see EnsembleFn)

    @nn.compact
    def __call__(self, *args):
        # Every member reads its own copy of a shared input. Otherwise JAX batches a member's matmul with an
        # unbatched input by moving the member axis among the output's columns and transposing it back to
        # the front, and the GPU program then transposes every first-layer activation on every update
        # (about 7% of TD3+BC's bytes per seed and 30% of ARQ's Q stage's, measured on an H200 target).
        axes = (None,) * len(args) if self.in_axes is None else tuple(self.in_axes)
        args = tuple(a if ax == 0 or a is None else jnp.broadcast_to(a, (self.num,) + jnp.shape(a))
                     for a, ax in zip(args, axes))
        vmapped = nn.vmap(
            self.net_cls,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=tuple(None if a is None else 0 for a in args),
            out_axes=0,
            axis_size=self.num,
        )
        return vmapped(**(self.net_kwargs or {}))(*args)


def critic_ensemble(num: int = 2, hidden_dims: Sequence[int] = (256, 256), **kwargs) -> Ensemble:
    return Ensemble(Critic, num, dict(hidden_dims=tuple(hidden_dims), **kwargs))


class EnsembleFn:
    """An :class:`Ensemble`'s ``apply`` bound to its variables: ``f(*args) -> (num, ...)`` equals
    ``apply_fn(params, *args)``, every member reading the same inputs.

    ``f.per_member(*args, in_axes=(None, 0))``: the arguments whose ``in_axes`` entry is 0 carry a
    leading member axis and member i reads entry i. A gradient w.r.t. such an argument is every
    member's own gradient from one backward pass; w.r.t. a shared input, reverse mode sums the
    members' contributions, and separating them took one backward pass through the whole
    ensemble per member (``plugins.action_grads``)."""

    def __init__(self, apply_fn: Callable, params, n: Optional[int] = None):
        module = getattr(apply_fn, "__self__", None)
        if not isinstance(module, Ensemble):
            raise TypeError(f"EnsembleFn needs an Ensemble's module.apply, got {apply_fn!r}")
        self.num = module.num if n is None else int(n)
        self.module = module if n is None else module.clone(num=self.num)
        self.params = params if n is None else jax.tree_util.tree_map(lambda x: x[: self.num], params)

    def __call__(self, *args):
        return self.module.apply(self.params, *args)

    def per_member(self, *args, in_axes=(None, 0)):
        return self.module.clone(in_axes=in_axes).apply(self.params, *args)


def bind(apply_fn: Callable, params) -> Callable:
    """``apply_fn(params, ...)`` as ``f(...)``: an :class:`EnsembleFn` for an Ensemble's apply (it
    has ``per_member``), else a plain partial."""
    if isinstance(getattr(apply_fn, "__self__", None), Ensemble):
        return EnsembleFn(apply_fn, params)
    return lambda *args: apply_fn(params, *args)


def vmap_members(fn: Callable, in_axes=0) -> Callable:
    """``jax.vmap(fn, in_axes)`` over a leading member axis (``in_axes``: 0 or None, or a tuple of them,
    one per argument); with one member, ``fn`` on the mapped arguments without that axis, and the axis
    put back on every output. Values are equal.

    The squeeze is for XLA's GPU compiler. A matmul batched over an axis of size 1 and another axis
    (seeds, or an ensemble) gets its operands laid out in two ways, and every update copies weights
    and Adam moments between them: ARQ's score stage, one score model under 4 vmapped seeds, 34 copies
    (59 MB) per update on an H200 target; and every ensemble under one seed (``Train.vmapped``)."""

    def call(*args):
        each = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        if len(each) != len(args) or any(ax not in (0, None) for ax in each):
            raise ValueError(f"vmap_members maps axis 0 or nothing of each argument, got in_axes={in_axes!r}")
        mapped = [a for a, ax in zip(args, each) if ax == 0]
        if {x.shape[0] for x in jax.tree_util.tree_leaves(mapped)} != {1}:
            return jax.vmap(fn, in_axes=each)(*args)
        out = fn(*(jax.tree_util.tree_map(lambda x: x[0], a) if ax == 0 else a for a, ax in zip(args, each)))
        return jax.tree_util.tree_map(lambda x: x[None], out)

    return call


def first_members(apply_fn: Callable, params, n: int = 1) -> EnsembleFn:
    """The first ``n`` members of an :class:`Ensemble` alone: ``f(*args) -> (n, ...)``.

    ``apply_fn`` is the ensemble's ``module.apply`` (as a TrainState holds it), ``params`` its
    variables. Every parameter's leading (member) axis is sliced to ``n``, so a loss that reads
    only Q_1 (TD3+BC's actor loss) evaluates and differentiates one network, not the whole ensemble
    with all but one output thrown away. Values equal ``apply_fn(params, *args)[:n]``."""
    return EnsembleFn(apply_fn, params, n)


class DeterministicPolicy(nn.Module):
    """a = max_action * tanh(MLP(s))."""

    act_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    max_action: float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.max_action * jnp.tanh(MLP(self.hidden_dims, self.act_dim)(obs))


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian head: returns (mean, log_std) of the pre-squash distribution.

    ``state_dependent_std=False`` uses one learned log-std vector. ``log_std_min``/``max``
    bound the log-std: clipped (``log_std_mode='clip'``), or squashed smoothly as
    min + (max - min) (tanh(x) + 1) / 2 (``'tanh'``, the BRAC reference's actor). With
    ``tanh_mean`` the mean itself is squashed into (-1, 1) (a plain Gaussian whose mean lies in
    the action box, as BPPO uses).
    """

    act_dim: int
    hidden_dims: Sequence[int] = (256, 256)
    state_dependent_std: bool = True
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    tanh_mean: bool = False
    kernel_init: Optional[Callable] = None
    log_std_mode: str = "clip"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_dims, activate_final=True, kernel_init=self.kernel_init)(obs)
        kw = {} if self.kernel_init is None else {"kernel_init": self.kernel_init}
        mean = Dense(self.act_dim, **kw)(h)
        if self.tanh_mean:
            mean = jnp.tanh(mean)
        if self.state_dependent_std:
            log_std = Dense(self.act_dim, **kw)(h)
        else:
            log_std = self.param("log_std", nn.initializers.zeros, (self.act_dim,))
            log_std = jnp.broadcast_to(log_std, mean.shape)
        if self.log_std_mode == "tanh":
            return mean, self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (jnp.tanh(log_std) + 1.0)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


# ---------------------------------------------------------------- distributions
def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x; mean, diag(exp(log_std)^2)), summed over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * LOG_2PI, axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    return jnp.sum(log_std + 0.5 * (1.0 + LOG_2PI), axis=-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> jax.Array:
    """KL(N_p || N_q) for diagonal Gaussians, summed over the last axis."""
    var_p, var_q = jnp.exp(2 * log_std_p), jnp.exp(2 * log_std_q)
    return jnp.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5, axis=-1)


def gaussian_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def tanh_log_det_jacobian(pre_tanh: jax.Array) -> jax.Array:
    """sum log(1 - tanh(u)^2), computed stably as 2*(log 2 - u - softplus(-2u))."""
    return jnp.sum(2.0 * (math.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1)


def tanh_gaussian_sample(key, mean, log_std):
    """(action, log_prob, pre_tanh) for a = tanh(u), u ~ N(mean, std)."""
    u = gaussian_sample(key, mean, log_std)
    return jnp.tanh(u), gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u), u


def tanh_gaussian_log_prob(actions, mean, log_std, eps: float = 1e-6):
    """log-density of actions already in (-1, 1) under tanh(N(mean, std)); actions clipped to +-(1-eps)."""
    u = jnp.arctanh(jnp.clip(actions, -1.0 + eps, 1.0 - eps))
    return gaussian_log_prob(u, mean, log_std) - tanh_log_det_jacobian(u)


MMD_KERNELS = ("laplacian", "gaussian")


def mmd(x: jax.Array, y: jax.Array, sigma: float, kernel: str = "laplacian", squared: bool = False) -> jax.Array:
    """Sample MMD between the point sets x (..., N, d) and y (..., M, d), one value per leading index.

        k(u, v) = exp(-sum_d |u - v| / (2 sigma))      laplacian
        k(u, v) = exp(-sum_d (u - v)^2 / (2 sigma))    gaussian
        MMD = sqrt(mean k(x, x') + mean k(y, y') - 2 mean k(x, y) + 1e-6)
        MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)     (``squared=True``, no 1e-6)

    The means run over all pairs, i = j included (the biased V-statistic, as the BEAR reference
    code); the 1e-6 keeps the square root differentiable when the sets coincide. Shared by BEAR
    (pre-tanh actions) and BRAC's ``divergence='mmd'``. Gradients flow into both x and y.
    """

    def mean_kernel(a, b):
        d = a[..., :, None, :] - b[..., None, :, :]
        if kernel == "laplacian":
            dist = jnp.abs(d).sum(-1)
        elif kernel == "gaussian":
            dist = (d**2).sum(-1)
        else:
            raise ValueError(f"unknown MMD kernel {kernel!r}: choose one of {MMD_KERNELS}")
        return jnp.exp(-dist / (2.0 * sigma)).mean((-2, -1))

    sq = mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y)
    return sq if squared else jnp.sqrt(sq + 1e-6)


def polyak(target, online, tau: float):
    """target <- tau * online + (1 - tau) * target.

    ``optax.incremental_update(online, target, tau)`` is the same formula, but jitted on a CPU it rounds a
    quarter of the entries of a 256x256 layer one float32 step differently, so using it would change the
    numbers of every run (and of runs resumed from checkpoints written before); this form is kept."""
    return jax.tree_util.tree_map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


class ConditionalVAE(nn.Module):
    """Conditional VAE of actions given states (BCQ / BEAR behaviour model; reused by BRAC+).

    - ``encode(obs, act) -> (mu, log_std)`` of q(z | s, a), log_std clipped to [enc_log_std_min, max];
    - ``decode(obs, z)`` -> the decoder's raw output: an unsquashed action (``(mean, log_std)`` of a
      Gaussian over it when ``decoder_std``, log_std clipped to [dec_log_std_min, max]). Callers squash
      it (BEAR: ``tanh``) or use it as a pre-tanh action;
    - ``sample(obs, key, num)`` -> ``num`` decoded latents per state: (B, num, ...), z ~ N(0, I)
      clipped to +-``latent_clip`` (BCQ/BEAR clip at 0.5; ``None``: no clipping);
    - ``__call__(obs, act, key) -> (decoded, mu, log_std)``: reparameterised reconstruction.

    Encoder and decoder are :class:`MLP` s of ``hidden_dims``; ``latent_dim`` is the size of z
    (BEAR and BRAC+ use 2 * action dim).
    """

    act_dim: int
    latent_dim: int
    hidden_dims: Sequence[int] = (750, 750)
    decoder_std: bool = False
    enc_log_std_min: float = -4.0
    enc_log_std_max: float = 15.0
    dec_log_std_min: float = -5.0
    dec_log_std_max: float = 2.0
    latent_clip: Optional[float] = 0.5
    activation: Activation = nn.relu

    def setup(self):
        self.encoder = MLP(tuple(self.hidden_dims), 2 * self.latent_dim, self.activation)
        out = 2 * self.act_dim if self.decoder_std else self.act_dim
        self.decoder = MLP(tuple(self.hidden_dims), out, self.activation)

    def encode(self, obs: jax.Array, act: jax.Array) -> tuple[jax.Array, jax.Array]:
        mu, log_std = jnp.split(self.encoder(jnp.concatenate([obs, act], -1)), 2, axis=-1)
        return mu, jnp.clip(log_std, self.enc_log_std_min, self.enc_log_std_max)

    def decode(self, obs: jax.Array, z: jax.Array):
        out = self.decoder(jnp.concatenate([obs, z], -1))
        if not self.decoder_std:
            return out
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.dec_log_std_min, self.dec_log_std_max)

    def sample(self, obs: jax.Array, key: jax.Array, num: int = 1):
        o = jnp.repeat(obs[..., None, :], num, axis=-2)
        z = jax.random.normal(key, o.shape[:-1] + (self.latent_dim,), o.dtype)
        if self.latent_clip is not None:
            z = jnp.clip(z, -self.latent_clip, self.latent_clip)
        return self.decode(o, z)

    def __call__(self, obs: jax.Array, act: jax.Array, key: jax.Array):
        mu, log_std = self.encode(obs, act)
        z = gaussian_sample(key, mu, log_std)
        return self.decode(obs, z), mu, log_std


def standard_normal_kl(mu: jax.Array, log_std: jax.Array) -> jax.Array:
    """KL(N(mu, exp(log_std)^2) || N(0, I)), summed over the last axis."""
    return jnp.sum(0.5 * (mu**2 + jnp.exp(2 * log_std)) - log_std - 0.5, axis=-1)
