"""Use a trained policy: ``offrl.load_policy(workdir, seed=...)`` maps raw observations to environment actions.

    import gymnasium as gym, offrl
    policy = offrl.load_policy("runs/td3bc_hopper", seed=0)
    env = gym.make(policy.env_id)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, r, term, trunc, _ = env.step(policy(obs))
        done = term or trunc

The run's own preprocessing is applied: observations are normalised with the training
dataset's statistics (when the run used ``normalize_obs``) and the policy's [-1, 1] actions
are mapped into the environment's action box.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import jax
import ml_collections
import numpy as np



class Policy:
    """A callable: a batch ``(B, obs_dim)`` (or one ``(obs_dim,)``) of raw observations -> env actions."""

    def __init__(self, algo, state, config, pre, env_id: Optional[str], seed: int, deterministic: bool):
        self.algo, self.state, self.config, self.pre = algo, state, config, pre
        self.env_id, self.seed, self.deterministic = env_id, seed, deterministic
        self._key = jax.random.PRNGKey(seed)
        self._act = jax.jit(lambda obs, key: algo.act(state, obs, key, config, deterministic))

    def __call__(self, obs) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == 1
        batch = self.pre.observations(obs[None] if single else obs).astype(np.float32)
        self._key, sub = jax.random.split(self._key)
        actions = self.pre.env_actions(np.asarray(self._act(batch, sub)))
        return actions[0] if single else actions

    def __repr__(self) -> str:
        return f"Policy({self.config.algo}, seed {self.seed}, env {self.env_id})"


def load_policy(workdir: str, seed: Optional[int] = None, point: int = 0, deterministic: bool = True) -> Policy:
    """The policy of ``seed`` (default: the run's first) of the run in ``workdir``, from its checkpoint.

    ``point``: the grid point, for a run with ``config.grid`` (default: the first).
    ``deterministic=False`` samples from a stochastic policy.
    """
    from offrl import checkpoint
    from offrl.algos import Spec, get_algorithm
    from offrl.data.preprocess import Preprocessing
    from offrl.runner import CHECKPOINT, POLICY_FILE
    from offrl.sweep import members as make_members
    from offrl.train import make_train, seed_keys

    for name in ("config.json", CHECKPOINT):
        if not os.path.exists(os.path.join(workdir, name)):
            raise FileNotFoundError(f"{workdir} has no {name}: give the --workdir of an offrl run that has checkpointed")
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    algo = get_algorithm(config.algo)
    members = make_members(config, algo.sweepable)
    seed = config.seed if seed is None else int(seed)
    if seed not in members.seeds:
        raise ValueError(f"seed {seed} is not a seed of this run: choose one of {members.seeds}")
    if not 0 <= point < len(members.points):
        raise ValueError(f"point {point} is not a grid point of this run: choose 0..{len(members.points) - 1}")
    member = point * len(members.seeds) + members.seeds.index(seed)

    path = os.path.join(workdir, POLICY_FILE)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        pre = Preprocessing(*(np.asarray(saved[k], np.float32) for k in Preprocessing._fields))
        env_id = saved.get("env_id")
        spec = Spec(len(pre.obs_mean), len(pre.action_low))
    else:  # a run from before policy.json: rebuild the preprocessing from its dataset
        from offrl.runner import prepare

        cfg = config.copy_and_resolve_references()
        cfg.wandb.mode = "disabled"
        exp = prepare(cfg)
        pre, env_id = exp.pre, exp.info.env_id
        spec = Spec(exp.info.obs_dim, exp.info.act_dim)
    template = _template(algo, config, spec, members, make_train, seed_keys)
    carry, _ = checkpoint.restore(os.path.join(workdir, CHECKPOINT), template)
    state = jax.tree_util.tree_map(lambda x: x[member], carry.state)
    return Policy(algo, state, config, pre, env_id, seed, deterministic)


def _template(algo, config, spec, members, make_train, seed_keys):
    """A carry shaped like the checkpoint's (all members), built without any data."""
    import jax.numpy as jnp

    from offrl.data.dataset import Transitions

    fake = Transitions(*[None] * len(Transitions._fields))
    fake = fake._replace(observations=jnp.zeros((1, spec.obs_dim)), actions=jnp.zeros((1, spec.act_dim)))
    init, _ = make_train(algo, config, fake).vmapped()
    keys = jnp.stack([seed_keys(s, 1)[0] for s in members.seed_list()])
    return jax.eval_shape(init, keys, members.hparams())
