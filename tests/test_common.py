"""offrl/algos/common.py, the pieces every algorithm's updates share, against hand computations: the optimiser
(Adam, AdamW, clipping, a step schedule, a learning rate kept in the state, a reset), the temperature step, the
clipped Gaussian act, and the branch-free helpers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import common

GRADS = [np.array([3.0, 4.0]), np.array([0.3, -0.4]), np.array([1.0, 2.0])]


def numpy_adam(grads, lr, p, weight_decay=0.0, clip=None, schedule=lambda count: 1.0):
    """optax's Adam(W) (b1 0.9, b2 0.999, eps 1e-8), written out: the parameters after each step."""
    m = v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads, 1):
        if clip is not None:
            g = g * min(1.0, clip / np.linalg.norm(g))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8) + weight_decay * p
        p = p - lr * schedule(t - 1) * step
        out.append(p)
    return out


def run(tx, p, grads):
    params, out = jnp.asarray(p, jnp.float32), []
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return out, state


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.1), dict(grad_clip=1.0),
                                dict(schedule=lambda count: 0.5 ** count)])
def test_adam_variants_step_by_hand(kw):
    p0 = np.array([1.0, -2.0])
    got, _ = run(common.adam(0.01, **kw), p0, GRADS)
    want = numpy_adam(GRADS, 0.01, p0, kw.get("weight_decay", 0.0), kw.get("grad_clip"),
                      kw.get("schedule", lambda count: 1.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_learning_rate_lives_in_the_state_and_a_reset_keeps_it():
    tx = common.adam(0.01, grad_clip=1.0, schedule=lambda count: 0.5 ** count)
    p0 = np.array([1.0, -2.0])
    params, state = run(tx, p0, GRADS[:2])
    assert float(common.learning_rate_of(state)) == pytest.approx(0.01)
    fresh = common.reset_optimizer(state)
    init = tx.init(jnp.asarray(params[-1]))
    for a, b in zip(jax.tree_util.tree_leaves(fresh), jax.tree_util.tree_leaves(init)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # after the reset the next step is a first step again (bias correction and schedule from count 0)
    updates, _ = tx.update(jnp.asarray(GRADS[2], jnp.float32), fresh, jnp.asarray(params[-1]))
    np.testing.assert_allclose(np.asarray(updates), numpy_adam(GRADS[2:], 0.01, params[-1], clip=1.0)[0] - params[-1],
                               rtol=1e-5)
    # a learning rate set in the state (a swept member's) is the one the step uses
    swept = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.asarray(0.03, x.dtype) if common._is_hyperparam(path) and "learning_rate" in
        jax.tree_util.keystr(path) else x, common.reset_optimizer(state))
    assert float(common.learning_rate_of(swept)) == pytest.approx(0.03)
    updates, _ = tx.update(jnp.asarray(GRADS[0], jnp.float32), swept, jnp.asarray(p0))
    np.testing.assert_allclose(np.asarray(updates), numpy_adam(GRADS[:1], 0.03, p0, clip=1.0)[0] - p0, rtol=1e-5)


@pytest.mark.parametrize("entropy, direction", [(-1.0, -1.0), (-5.0, 1.0)])
def test_temperature_step_moves_toward_the_target_entropy(entropy, direction):
    """SAC's rule with target -|A| (|A| = 3): entropy above the target lowers log alpha, below raises it; Adam's
    first step is lr times the gradient's sign."""
    temp = common.log_scalar(0.1, init=0.5)
    assert float(temp.apply_fn(temp.params)) == 0.5
    new = common.entropy_temperature_update(temp, jnp.asarray(entropy), 3)
    assert float(new.params["value"]) == pytest.approx(0.5 + direction * 0.1, abs=1e-6)
    # the gradient is the gap itself (entropy + |A|), not only its sign: a second step tells them apart
    after = common.entropy_temperature_update(new, jnp.asarray(entropy + direction * 1.5), 3)
    gaps = [np.array([entropy + 3.0]), np.array([entropy + direction * 1.5 + 3.0])]
    assert float(after.params["value"]) == pytest.approx(numpy_adam(gaps, 0.1, np.array([0.5]))[1][0], abs=1e-6)


def test_clipped_gaussian_act():
    mean, log_std = jnp.array([[2.0, -0.3, -1.7]]), jnp.log(jnp.array([[0.5, 0.5, 0.1]]))
    actor = TrainState.create(apply_fn=lambda params, obs: (mean + params["b"], log_std), params={"b": jnp.zeros(3)},
                              tx=optax.sgd(0.0))
    obs, key = jnp.zeros((1, 4)), jax.random.PRNGKey(3)
    np.testing.assert_allclose(np.asarray(common.clipped_gaussian_act(actor, obs, key, True)), [[1.0, -0.3, -1.0]])
    sampled = np.asarray(common.clipped_gaussian_act(actor, obs, key, False))
    np.testing.assert_allclose(sampled, np.clip(np.asarray(nets.gaussian_sample(key, mean, log_std)), -1, 1))
    assert sampled[0, 2] == -1.0 and sampled[0, 1] != -0.3


def test_make_state_initialises_the_module_with_its_optimiser():
    module = nets.MLP((4,), output_dim=2)
    state = common.make_state(jax.random.PRNGKey(0), module, (jnp.zeros((1, 3)),), optax.sgd(1.0))
    direct = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(direct)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert state.apply_fn(state.params, jnp.ones((5, 3))).shape == (5, 2) and int(state.step) == 0


def test_every_and_select():
    assert [bool(common.every(s, 3)) for s in range(7)] == [True, False, False, True, False, False, True]
    a = {"w": jnp.ones((2, 3)), "b": jnp.ones(2)}
    b = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(2)}
    per_seed = common.select(jnp.array([True, False]), a, b)  # one flag per seed, broadcast over each leaf
    np.testing.assert_array_equal(np.asarray(per_seed["w"]), [[1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(per_seed["b"]), [1, 0])
    np.testing.assert_array_equal(np.asarray(common.select(False, a, b)["w"]), np.zeros((2, 3)))
