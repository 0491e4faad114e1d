"""BPPO (Zhuang et al., ICLR 2023) with the paper's Gym defaults (Table 6 / Appendix K): four stages
(V 2e6, Q 2e6, BC 5e5, improvement 1000 steps), batch 512, online selection after every step
with 10 episodes, as the reference code does.

Variants, as ``--config=configs/bppo.py:<arg>`` with comma-separated words:
  onestep   Onestep BPPO (pi_k never replaced)
  offline   J(pi) > J(pi_k) judged in-graph by E_s Q(s, mean pi(s))
  offN      iterative BPPO with N off-policy Q steps per policy step (e.g. off5)
  cpu       a budget that runs in minutes on a laptop CPU (shrunk stages, selection every 50 steps)
  <task>    a D4RL task name (hopper-medium-replay-v2, antmaze-large-play-v2, pen-human-v1, ...):
            Table 6's learning rate, clip ratio, omega and step count (configs/bppo_presets.py)
"""
from configs.bppo_presets import preset
from offrl.algos.bppo import default_agent_config
from offrl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "bppo"
    c.batch_size = 512
    c.agent = default_agent_config()
    ag = c.agent
    words = [w.strip() for w in (arg or "").split(",") if w.strip()]
    variants = ("onestep", "offline", "cpu")
    is_variant = lambda w: w in variants or (w.startswith("off") and w[3:].isdigit())  # noqa: E731
    for word in sorted(words, key=is_variant):  # task presets first, so 'cpu' shrinks their steps
        if word == "onestep":
            ag.selection = "none"
        elif word == "offline":
            ag.selection = "offline"
        elif word.startswith("off") and word[3:].isdigit():
            ag.bppo_off = int(word[3:])
        elif word == "cpu":
            ag.v_steps, ag.q_steps, ag.bc_steps, ag.pi_steps = 5_000, 5_000, 5_000, 200
            ag.select_interval, ag.select_episodes = 50, 5
            c.eval_interval, c.eval_episodes, c.num_seeds = 1_000, 5, 3
        else:
            for k, v in preset(word).items():
                ag[k] = v
    c.num_steps = ag.v_steps + ag.q_steps + ag.bc_steps + ag.pi_steps  # the total, so budgets can scale it
    return c
