"""Vectorised, seed-batched evaluation equals plain Gymnasium rollouts of the same policies, in this
process and over worker processes, and steps no environment after its episode ended."""
import types

import pytest

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.preprocess import Preprocessing
from offrl.evaluation import evaluate, make_policy_fn


IDENTITY = Preprocessing(np.zeros(11, np.float32), np.ones(11, np.float32), -np.ones(3, np.float32), np.ones(3, np.float32))


def plain_rollouts(states, episodes, base, mean=0.0, std=1.0, scale=1.0, max_steps=None):
    """(returns, lengths) of each seed's linear policy ``tanh(((obs - mean) / std) @ w + b) * scale``, written out
    with plain Gymnasium rollouts, episode e reset with seed ``base + e``, at most ``max_steps`` steps."""
    seeds = states["w"].shape[0]
    returns, lengths = np.zeros((seeds, episodes)), np.zeros((seeds, episodes), int)
    for s in range(seeds):
        w, b = np.asarray(states["w"][s], np.float64), np.asarray(states["b"][s], np.float64)
        for e in range(episodes):
            env = gym.make("Hopper-v5")
            obs, _ = env.reset(seed=base + e)
            done = False
            while not done and (max_steps is None or lengths[s, e] < max_steps):
                obs, r, term, trunc, _ = env.step(np.tanh(((obs - mean) / std) @ w + b) * scale)
                returns[s, e] += r
                lengths[s, e] += 1
                done = term or trunc
    return returns, lengths


def _linear_algo():
    def act(state, obs, key, config, deterministic=True):
        return jnp.tanh(obs @ state["w"] + state["b"])

    return types.SimpleNamespace(act=act)


@pytest.mark.parametrize("workers", [1, 2])  # in this process; over 2 spawned worker processes
def test_vectorised_evaluation_matches_plain_rollouts(workers):
    rng = np.random.default_rng(0)
    seeds, episodes, base = 2, 3, 123
    states = {"w": jnp.asarray(rng.normal(0, 0.3, (seeds, 11, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(0, 0.1, (seeds, 3)), jnp.float32)}
    # a non-trivial preprocessing: normalised observations and a [-1,1] -> [-0.5, 0.5] action box
    pre = Preprocessing(np.full(11, 0.1, np.float32), np.full(11, 2.0, np.float32),
                        np.full(3, -0.5, np.float32), np.full(3, 0.5, np.float32))
    algo = _linear_algo()
    res = evaluate(make_policy_fn(algo, None), states, "Hopper-v5", episodes, base, pre, ref_min=0.0, ref_max=100.0,
                   workers=workers)
    expected, lengths = plain_rollouts(states, episodes, base, mean=0.1, std=2.0, scale=0.5)
    np.testing.assert_array_equal(res.lengths, lengths)
    np.testing.assert_allclose(res.returns, expected, rtol=1e-4)
    np.testing.assert_allclose(res.raw, expected.mean(1), rtol=1e-4)
    np.testing.assert_allclose(res.normalized, expected.mean(1), rtol=1e-4)  # ref (0, 100): score == return


def test_finished_episodes_are_not_stepped_again(monkeypatch):
    steps = []

    class Counting(gym.Wrapper):
        def step(self, action):
            steps.append(1)
            return self.env.step(action)

    make = gym.make
    monkeypatch.setattr(gym, "make", lambda env: Counting(make(env)))
    rng = np.random.default_rng(1)
    states = {"w": jnp.asarray(rng.normal(0, 1.0, (3, 11, 3)), jnp.float32), "b": jnp.zeros((3, 3), jnp.float32)}
    res = evaluate(make_policy_fn(_linear_algo(), None), states, "Hopper-v5", 2, 7, IDENTITY, workers=1)
    assert len(set(res.lengths.ravel().tolist())) > 1  # episodes of different lengths: some envs wait for others
    assert len(steps) == res.lengths.sum()


def test_max_steps_stops_every_episode_after_that_many_steps():
    rng = np.random.default_rng(3)
    states = {"w": jnp.asarray(rng.normal(0, 0.3, (2, 11, 3)), jnp.float32), "b": jnp.zeros((2, 3), jnp.float32)}
    full = evaluate(make_policy_fn(_linear_algo(), None), states, "Hopper-v5", 2, 11, IDENTITY, workers=1)
    short = evaluate(make_policy_fn(_linear_algo(), None), states, "Hopper-v5", 2, 11, IDENTITY, workers=1, max_steps=4)
    assert (full.lengths > 4).all() and (short.lengths == 4).all()
    np.testing.assert_allclose(short.returns, plain_rollouts(states, 2, 11, max_steps=4)[0], rtol=1e-4)  # first 4 rewards


def test_a_failing_worker_names_its_error():
    from offrl.envpool import make_envs

    envs = make_envs("Hopper-v5", 4, workers=2)
    try:
        envs.reset(range(4))
        with pytest.raises(RuntimeError, match="evaluation worker failed"):
            envs.step(np.zeros((4, 5)), np.ones(4, bool))  # Hopper takes 3-d actions
    finally:
        envs.close()


@pytest.mark.parametrize("cores, n, workers", [(2, 50, 1), (16, 50, 12), (16, 4, 1), (4, 50, 3), (16, 9, 2)])
def test_auto_workers_leave_a_core_and_small_evaluations_in_process(monkeypatch, cores, n, workers):
    import offrl.envpool as envpool

    monkeypatch.setattr(envpool, "available_cores", lambda: cores)
    assert envpool.auto_workers(n) == workers


@pytest.mark.parametrize("workers", [1, 2])
def test_a_member_with_non_finite_actions_scores_nan_and_leaves_the_others_alone(workers):
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, (2, 11, 3))
    states = {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray([[0.0] * 3, [np.nan] * 3], jnp.float32)}
    res = evaluate(make_policy_fn(_linear_algo(), None), states, "Hopper-v5", 2, 5, IDENTITY, workers=workers)
    alone = evaluate(make_policy_fn(_linear_algo(), None), jax.tree_util.tree_map(lambda x: x[:1], states),
                     "Hopper-v5", 2, 5, IDENTITY, workers=1)
    np.testing.assert_array_equal(res.returns[0], alone.returns[0])  # the finite member is unaffected
    assert np.isnan(res.returns[1]).all() and np.isnan(res.raw[1]) and (res.lengths[1] == 0).all()  # never stepped
    # every member non-finite at the first step: the loop ends at once, and still nothing scores 0
    none = evaluate(make_policy_fn(_linear_algo(), None), jax.tree_util.tree_map(lambda x: x[1:], states),
                    "Hopper-v5", 2, 5, IDENTITY, workers=workers)
    assert np.isnan(none.returns).all() and np.isnan(none.raw).all() and (none.lengths == 0).all()
