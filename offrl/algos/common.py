"""Small pieces several algorithms share: optimiser construction and state helpers."""
from __future__ import annotations

import flax.linen as nn
import jax
import optax
from flax.training.train_state import TrainState

from offrl import nets


def adam(lr, grad_clip: float | None = None, weight_decay: float = 0.0, schedule=None) -> optax.GradientTransformation:
    """Adam (AdamW with ``weight_decay``) whose learning rate lives in the optimiser state
    (``optax.inject_hyperparams``), so a grid over it is vmapped like seeds.

    ``grad_clip`` clips the global gradient norm first; ``schedule(count)`` multiplies the
    step (the effective learning rate is ``lr * schedule(count)``, count = updates so far), so a
    decay never edits the optimiser state and ``lr`` stays sweepable. Read the base rate from
    ``opt_state.hyperparams["learning_rate"]`` (``learning_rate_of``)."""
    if weight_decay:
        opt = optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=weight_decay)
    else:
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
    parts = ([optax.clip_by_global_norm(grad_clip)] if grad_clip else []) + [opt]
    if schedule is not None:
        parts.append(optax.scale_by_schedule(schedule))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)


def _is_hyperparam(path) -> bool:
    return any(getattr(p, "name", None) == "hyperparams" for p in path)


def learning_rate_of(opt_state):
    """The injected base learning rate of an optimiser built by :func:`adam`."""
    found = [x for p, x in jax.tree_util.tree_flatten_with_path(opt_state)[0]
             if _is_hyperparam(p) and "learning_rate" in jax.tree_util.keystr(p)]
    return found[0]


def reset_optimizer(opt_state):
    """A fresh optimiser state (zero moments and counts) that keeps the injected hyperparameters.

    Equal to ``tx.init(params)`` for the optimisers :func:`adam` builds, but usable inside a
    swept run, where re-running ``tx.init`` would read a learning rate from another trace."""
    return jax.tree_util.tree_map_with_path(lambda p, x: x if _is_hyperparam(p) else jax.numpy.zeros_like(x), opt_state)


def make_state(key, module: nn.Module, example_inputs: tuple, tx) -> TrainState:
    params = module.init(key, *example_inputs)
    return TrainState.create(apply_fn=module.apply, params=params, tx=tx)


def _scalar_value(params):
    return params["value"]


def log_scalar(lr, init: float = 0.0) -> TrainState:
    """A learned scalar (a log temperature or log multiplier) with its own Adam: params {"value": init}."""
    return TrainState.create(apply_fn=_scalar_value, params={"value": jax.numpy.asarray(init, jax.numpy.float32)},
                             tx=adam(lr))


def entropy_temperature_update(log_temp: TrainState, entropy, act_dim: int) -> TrainState:
    """SAC's temperature step: descend log_alpha * (entropy - target) with target entropy -|A|."""
    gap = jax.lax.stop_gradient(entropy + act_dim)
    return log_temp.apply_gradients(grads=jax.grad(lambda p: p["value"] * gap)(log_temp.params))


def clipped_gaussian_act(actor: TrainState, obs, key, deterministic: bool):
    """Act with a Gaussian policy head (mean, log_std): the mean, or a sample, clipped to [-1, 1]."""
    mean, log_std = actor.apply_fn(actor.params, obs)
    a = mean if deterministic else nets.gaussian_sample(key, mean, log_std)
    return jax.numpy.clip(a, -1.0, 1.0)


def every(step, period: int):
    """True on steps 0, period, 2*period, ... (step is the count before this update)."""
    return (step % period) == 0


def select(pred, on_true, on_false):
    """tree-wise where(pred, a, b): a branch choice that stays cheap and exact under vmap.

    ``pred`` is a scalar, or has the leading axes of every leaf (e.g. one flag per seed for
    a seed-stacked state), and is broadcast over each leaf's remaining axes."""
    pred = jax.numpy.asarray(pred)

    def where(a, b):
        return jax.numpy.where(pred.reshape(pred.shape + (1,) * (jax.numpy.ndim(a) - pred.ndim)), a, b)

    return jax.tree_util.tree_map(where, on_true, on_false)
