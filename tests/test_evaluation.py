"""Vectorised, seed-batched evaluation equals plain Gymnasium rollouts of the same policies."""
import types

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.preprocess import Preprocessing
from offrl.evaluation import evaluate, make_policy_fn


def _linear_algo():
    def act(state, obs, key, config, deterministic=True):
        return jnp.tanh(obs @ state["w"] + state["b"])

    return types.SimpleNamespace(act=act)


def test_vectorised_evaluation_matches_plain_rollouts():
    rng = np.random.default_rng(0)
    seeds, episodes, base = 2, 3, 123
    states = {"w": jnp.asarray(rng.normal(0, 0.3, (seeds, 11, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(0, 0.1, (seeds, 3)), jnp.float32)}
    # a non-trivial preprocessing: normalised observations and a [-1,1] -> [-0.5, 0.5] action box
    pre = Preprocessing(np.full(11, 0.1, np.float32), np.full(11, 2.0, np.float32),
                        np.full(3, -0.5, np.float32), np.full(3, 0.5, np.float32))
    algo = _linear_algo()
    res = evaluate(make_policy_fn(algo, None), states, "Hopper-v5", episodes, base, pre, ref_min=0.0, ref_max=100.0)

    expected = np.zeros((seeds, episodes))
    lengths = np.zeros((seeds, episodes), int)
    for s in range(seeds):
        w, b = np.asarray(states["w"][s], np.float64), np.asarray(states["b"][s], np.float64)
        for e in range(episodes):
            env = gym.make("Hopper-v5")
            obs, _ = env.reset(seed=base + e)
            done = False
            while not done:
                a = np.tanh(((obs - 0.1) / 2.0) @ w + b) * 0.5
                obs, r, term, trunc, _ = env.step(a)
                expected[s, e] += r
                lengths[s, e] += 1
                done = term or trunc
    np.testing.assert_array_equal(res.lengths, lengths)
    np.testing.assert_allclose(res.returns, expected, rtol=1e-4)
    np.testing.assert_allclose(res.raw, expected.mean(1), rtol=1e-4)
    np.testing.assert_allclose(res.normalized, expected.mean(1), rtol=1e-4)  # ref (0, 100): score == return
