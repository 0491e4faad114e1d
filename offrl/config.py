"""The run configuration shared by every algorithm; each configs/<algo>.py starts from ``base_config``."""
from __future__ import annotations

import ml_collections

from offrl.checks import Checks

WANDB_MODES = ("disabled", "offline", "online")
CHECKPOINT_SECONDS = 300
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
    c.num_steps = 1_000_000  # the update budget: on a multi-stage algorithm, setting it scales the agent.*_steps it does not set in proportion
    c.batch_size = 256
    # evaluation
    c.eval_interval = 5000  # updates between evaluations (and between compiled chunks)
    c.log_interval = 0  # updates per training record in metrics.jsonl and wandb (0: one per chunk); the training is the same
    c.eval_episodes = 10  # per seed
    c.eval_seed = 10_000  # episode e of every seed is reset with eval_seed + e (+ 1000 * evaluation index)
    c.report_last = 1  # the final score averages the last N evaluations (papers use 10)
    c.eval_workers = 0  # processes stepping the evaluation environments (0: auto, offrl.envpool.auto_workers; 1: none); results do not depend on it
    # evaluate a copy of the policies on the host CPU while the accelerator trains the next chunk: auto (on an
    # accelerator, when a policy call on the host is no slower), on, off. The host's float32 matmuls may round
    # differently from an accelerator's (TF32), so scores can differ in their last digits; on a CPU-only machine they do not.
    c.eval_overlap = "auto"
    # a rerun, a resume or a sweep's next job loads its compiled programs from disk instead of compiling them again
    c.compile_cache = "auto"  # JAX's persistent compilation cache: auto (JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/offrl/xla), off, or a directory
    # output
    c.checkpoint_interval = 50_000  # updates between checkpoints (0: only at the end)
    c.checkpoint_seconds = CHECKPOINT_SECONDS  # also checkpoint at the first chunk end this many seconds after the last checkpoint (0: never), so a kill loses at most that much work
    c.wandb = ml_collections.ConfigDict(dict(mode="disabled", project="offrl", entity="", group="", name="",
                                             per_member=True))
    c.agent = ml_collections.ConfigDict()
    return c


# keys that change how a run executes, not what it computes: a run resumes when only these differ
EXECUTION_ONLY = ("eval_workers", "eval_overlap", "compile_cache", "checkpoint_seconds", "wandb.per_member", "log_interval")
EVAL_OVERLAP = ("auto", "on", "off")


def validate(config) -> None:
    """Raise ValueError naming the bad key, its value and what is allowed."""
    # keys a config.json saved before they existed may lack (eval_workers, eval_overlap, compile_cache,
    # checkpoint_seconds, log_interval) read as their defaults
    c = Checks(config, "config", defaults=dict(dict.fromkeys(("num_steps", "checkpoint_interval", "dataset_size", "eval_workers",
                                                              "log_interval"), 0),
                                                eval_overlap="auto", compile_cache="auto", checkpoint_seconds=CHECKPOINT_SECONDS))
    c.integer(1, "num_seeds", "batch_size", "eval_interval", "eval_episodes", "report_last")
    c.integer(0, "num_steps", "checkpoint_interval", "dataset_size", "eval_workers", "checkpoint_seconds", "log_interval")
    c.within("[0, 1]", "discount")
    c.one_of(WANDB_MODES, "wandb.mode")
    c.one_of(EVAL_OVERLAP, "eval_overlap")
    c.need(isinstance(c.value("compile_cache"), str) and c.value("compile_cache") != "", "compile_cache",
           "give 'auto', 'off' or a directory")
    c.one_of(REWARD_NORMALIZATIONS, "reward_normalization")
    c.need(bool(config.dataset), "dataset", "name a Minari dataset id")
    c.above(0, "obs_norm_eps")


# agent keys named *_steps that count something other than updates: a budget leaves them alone
NOT_UPDATE_COUNTS = ("sampler_steps",)


def update_count_keys(config) -> list[str]:
    """The ``agent.*_steps`` keys that count updates: stage lengths (BPPO's ``v_steps``, ARQ's
    ``q_steps``, ...) and warm-ups inside a stage (CQL's ``bc_warmup_steps``)."""
    agent = config.get("agent") or {}
    return [k for k in agent if k.endswith("_steps") and k not in NOT_UPDATE_COUNTS
            and isinstance(agent[k], int) and not isinstance(agent[k], bool)]


def scale_num_steps(config, num_steps: int, keep=()) -> dict:
    """Give ``config`` a budget of ``num_steps`` updates, in place: ``config.num_steps`` becomes
    ``num_steps`` and every update count of ``config.agent`` (``update_count_keys``) is scaled by
    ``num_steps / config.num_steps`` (at least 1), so an algorithm's stages keep their proportions.
    Where the config's ``num_steps`` is the sum of its stages (BPPO, ARQ) the stages then sum to
    about ``num_steps``; where it is the last stage's length (BRAC, BRAC+, iTRPO, Onestep) the
    stages before it keep their ratio to it. The launcher's ``--config.num_steps`` and
    ``experiments/reproduce.py --num_steps`` both mean this. ``keep``: agent keys set explicitly,
    which keep their value. Returns {agent key: new value}."""
    own = config.num_steps
    if not isinstance(own, int) or own <= 0:
        raise ValueError(f"config.num_steps={own!r}: a budget scales a positive num_steps")
    scale = num_steps / own
    config.num_steps = num_steps
    changed = {}
    for k in update_count_keys(config):
        if k in keep:
            continue
        changed[k] = config.agent[k] = max(1, int(config.agent[k] * scale))
    return changed
