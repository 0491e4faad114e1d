"""Collect episodes from a Gymnasium environment with a given policy (numpy in, numpy out)."""
from __future__ import annotations

import time
from typing import Callable, Optional

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def uniform_policy(action_space: gym.spaces.Box) -> Policy:
    low, high = action_space.low, action_space.high

    def act(obs, rng):
        return rng.uniform(low, high).astype(np.float32)

    return act


def collect_episodes(
    env_id: str,
    policy: Policy,
    num_transitions: int,
    seed: int = 0,
    progress: Optional[str] = None,
) -> list[dict]:
    """Roll ``policy`` until ``num_transitions`` transitions are gathered.

    Episode i is reset with seed ``seed + i`` and the policy draws from one
    generator seeded with ``seed``, so a collection is deterministic for a seed.
    The final episode is cut at the budget (its last step then counts as a timeout).
    """
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    episodes, total, start = [], 0, time.time()
    next_report = 0.0
    while total < num_transitions:
        ep_seed = seed + len(episodes)
        obs, _ = env.reset(seed=ep_seed)
        o, a, r, te, tr = [obs], [], [], [], []
        done = False
        while not done and total < num_transitions:
            action = np.asarray(policy(obs, rng), np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(obs)
            a.append(action)
            r.append(reward)
            te.append(terminated)
            tr.append(truncated)
            total += 1
            done = terminated or truncated
        episodes.append(
            dict(
                observations=np.asarray(o, np.float32),
                actions=np.asarray(a, np.float32),
                rewards=np.asarray(r, np.float64),
                terminations=np.asarray(te, bool),
                truncations=np.asarray(tr, bool),
                seed=ep_seed,
            )
        )
        if progress and time.time() - start >= next_report:
            rate = total / max(time.time() - start, 1e-9)
            eta = (num_transitions - total) / max(rate, 1e-9)
            print(f"[{progress}] {total}/{num_transitions} transitions, {rate:.0f} steps/s, ETA {eta:.0f}s", flush=True)
            next_report += 10.0
    env.close()
    return episodes
