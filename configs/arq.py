"""ARQ+pi (Goo & Niekum) with the reference code's D4RL locomotion settings (experiments/*.gin, Tables
A.1-A.3): score model 1M steps, 30 candidates, 500 sampler steps, K = 9, alpha 1, Q and policy 1M
steps each, batch 512, rewards x 1000/(max-min trajectory return). ARQ+s: configs/arq_s.py.

Words, as ``--config=configs/arq.py:<arg>`` (comma-separated):
  explicit | pi     ARQ+pi: the AWR policy (default)
  implicit | s      ARQ+s: the implicit policy over sampled candidates
  antmaze           K = 3, alpha 10, rewards r - 1
  kitchen           score model 300k steps, Q lr 1e-4, original rewards
  adroit            3 score models, 300k steps, Q lr 1e-4, alpha 10, original rewards
  cpu               a CPU budget: 100k transitions (the local suite's size), 20k score / 20k Q / 20k policy steps,
                    5 candidates (K scaled to the same quantile: 9 -> 2), 50 sampler steps, exact trace,
                    batch 256, 3 seeds, 5 episodes (docs/arq.md's Hopper run shrinks it further:
                    experiments/arq_hopper_cpu.sh)
e.g.  python experiments/launch.py --config=configs/arq.py:cpu --workdir=runs/arq_pi
"""
from offrl.algos.arq import default_agent_config
from offrl.config import base_config

WORDS = ("implicit", "s", "explicit", "pi", "antmaze", "kitchen", "adroit", "cpu")


def apply_word(c, word: str) -> None:
    ag = c.agent
    if word in ("implicit", "s"):
        ag.policy = "implicit"
    elif word in ("explicit", "pi"):
        ag.policy = "explicit"
    elif word == "antmaze":
        ag.kth, ag.alpha = 3, 10.0
        c.reward_normalization, c.reward_bias = "none", -1.0
    elif word == "kitchen":
        ag.score_steps, ag.critic_lr = 300_000, 1e-4
        c.reward_normalization = "none"
    elif word == "adroit":
        ag.num_score_models, ag.score_steps, ag.critic_lr, ag.alpha = 3, 300_000, 1e-4, 10.0
        c.reward_normalization = "none"
    elif word == "cpu":
        ag.score_steps, ag.q_steps, ag.policy_steps = 20_000, 20_000, 20_000
        ag.kth = max(1, round(ag.kth * 6 / (ag.num_candidates + 1)))  # the same quantile of 5 + 1 candidates
        ag.num_candidates, ag.sampler_steps, ag.trace, ag.support_chunk = 5, 50, "exact", 4096
        ag.score_batch_size = 256
        c.batch_size, c.dataset_size, c.num_seeds = 256, 100_000, 3
        c.eval_interval, c.eval_episodes = 20_000, 5
    else:
        raise ValueError(f"unknown word '{word}' in configs/arq.py:<arg>: choose from {', '.join(WORDS)}")


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "arq"
    c.batch_size = 512
    c.normalize_obs = False
    c.reward_normalization = "traj_return"
    c.eval_interval = 100_000
    c.agent = default_agent_config()
    words = [w.strip() for w in (arg or "").split(",") if w.strip()]
    for word in sorted(words, key=lambda w: w == "cpu"):  # the budget last, so it shrinks the presets
        apply_word(c, word)
    ag = c.agent
    c.num_steps = 1 + ag.score_steps + ag.q_steps + (ag.policy_steps if ag.policy == "explicit" else 0)
    return c
