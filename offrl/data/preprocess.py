"""Config-driven preprocessing: actions into [-1, 1], observation normalisation, reward scaling.

What is applied to the data is recorded in :class:`Preprocessing`, which evaluation
uses to map environment observations in and policy actions out the same way.
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import DatasetInfo, Transitions, discounted_returns


class Preprocessing(NamedTuple):
    obs_mean: np.ndarray
    obs_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray

    def observations(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    def env_actions(self, actions):
        """Policy actions in [-1, 1] -> the environment's box."""
        a = np.clip(np.asarray(actions), -1.0, 1.0)
        return self.action_low + (a + 1.0) * 0.5 * (self.action_high - self.action_low)

    def policy_actions(self, actions):
        """Environment-box actions -> [-1, 1]."""
        return 2.0 * (actions - self.action_low) / (self.action_high - self.action_low) - 1.0


def preprocess(data: Transitions, info: DatasetInfo, config) -> tuple[Transitions, Preprocessing]:
    low, high = info.action_low.astype(np.float32), info.action_high.astype(np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"dataset '{info.dataset_id}' has an unbounded action space; offrl needs a Box with finite bounds")
    obs = np.asarray(data.observations)
    if config.normalize_obs:
        mean = obs.mean(0).astype(np.float32)
        std = (obs.std(0) + config.obs_norm_eps).astype(np.float32)
    else:
        mean = np.zeros(obs.shape[1], np.float32)
        std = np.ones(obs.shape[1], np.float32)
    pre = Preprocessing(mean, std, low, high)

    rewards = np.asarray(data.rewards, np.float64)
    if config.reward_normalization == "traj_return":
        spread = float(info.episode_returns.max() - info.episode_returns.min())
        rewards = rewards * 1000.0 / max(spread, 1e-6)
    elif config.reward_normalization == "minmax":
        lo, hi = rewards.min(), rewards.max()
        rewards = (rewards - lo) / max(hi - lo, 1e-6)
    rewards = rewards * config.reward_scale + config.reward_bias
    ends = (np.asarray(data.terminals) + np.asarray(data.timeouts)) > 0
    rewards = rewards.astype(np.float32)

    def norm_a(a):
        return jnp.asarray(pre.policy_actions(np.asarray(a)), jnp.float32)

    same_box = np.allclose(low, -1.0) and np.allclose(high, 1.0)
    return (
        data._replace(
            observations=jnp.asarray(pre.observations(obs), jnp.float32),
            next_observations=jnp.asarray(pre.observations(np.asarray(data.next_observations)), jnp.float32),
            actions=data.actions if same_box else norm_a(data.actions),
            next_actions=data.next_actions if same_box else norm_a(data.next_actions),
            rewards=jnp.asarray(rewards),
            returns=jnp.asarray(discounted_returns(rewards, ends, config.discount)),
        ),
        pre,
    )
