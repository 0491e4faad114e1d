"""The run configuration shared by every algorithm; each configs/<algo>.py starts from ``base_config``."""
from __future__ import annotations

import ml_collections

WANDB_MODES = ("disabled", "offline", "online")
REWARD_NORMALIZATIONS = ("none", "traj_return", "minmax")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.algo = ""
    # data
    c.dataset = "offrl/hopper/medium-v0"  # a Minari id (local, remote, or offrl's own suite)
    c.dataset_size = 1_000_000  # transitions, when an offrl/* suite dataset has to be built
    c.download = True  # fetch remote Minari datasets that are not on disk
    c.discount = 0.99
    c.normalize_obs = False  # standardise observations with dataset mean/std (eps below)
    c.obs_norm_eps = 1e-3
    c.reward_normalization = "none"  # none | traj_return (x 1000/(max-min episode return)) | minmax ([0, 1])
    c.reward_scale = 1.0  # applied after reward_normalization: r * scale + bias
    c.reward_bias = 0.0
    # run
    c.seed = 0
    c.num_seeds = 5  # seeds seed, seed+1, ... trained together in one vmapped program
    c.grid = ""  # e.g. "agent.alpha=1,2.5,5": every grid point x every seed in one vmapped program
    c.num_steps = 1_000_000  # updates of a single-stage algorithm
    c.batch_size = 256
    # evaluation
    c.eval_interval = 5000  # updates between evaluations (and between compiled chunks)
    c.eval_episodes = 10  # per seed
    c.eval_seed = 10_000  # episode e of every seed is reset with eval_seed + e (+ 1000 * evaluation index)
    c.report_last = 1  # the final score averages the last N evaluations (papers use 10)
    c.eval_workers = 0  # processes stepping the evaluation environments (0: auto, offrl.envpool.auto_workers; 1: none); results do not depend on it
    # output
    c.checkpoint_interval = 50_000  # updates between checkpoints (0: only at the end)
    c.wandb = ml_collections.ConfigDict(dict(mode="disabled", project="offrl", entity="", group="", name=""))
    c.agent = ml_collections.ConfigDict()
    return c


# keys that change how a run executes, not what it computes: a run resumes when only these differ
EXECUTION_ONLY = ("eval_workers",)


def validate(config) -> None:
    """Raise ValueError naming the bad key, its value and what is allowed."""

    def need(cond, key, value, what):
        if not cond:
            raise ValueError(f"config.{key}={value!r} is invalid: {what}")

    for key in ("num_seeds", "batch_size", "eval_interval", "eval_episodes", "report_last"):
        v = config[key]
        need(isinstance(v, int) and v >= 1, key, v, "must be an integer >= 1")
    for key in ("num_steps", "checkpoint_interval", "dataset_size", "eval_workers"):
        v = config.get(key, 0)  # eval_workers is absent from the config.json of runs made before it
        need(isinstance(v, int) and v >= 0, key, v, "must be an integer >= 0")
    need(0.0 <= config.discount <= 1.0, "discount", config.discount, "must lie in [0, 1]")
    need(config.wandb.mode in WANDB_MODES, "wandb.mode", config.wandb.mode, f"choose one of {WANDB_MODES}")
    need(
        config.reward_normalization in REWARD_NORMALIZATIONS,
        "reward_normalization",
        config.reward_normalization,
        f"choose one of {REWARD_NORMALIZATIONS}",
    )
    need(bool(config.dataset), "dataset", config.dataset, "name a Minari dataset id")
    need(config.obs_norm_eps > 0, "obs_norm_eps", config.obs_norm_eps, "must be > 0")
