"""BPPO (Zhuang et al., ICLR 2023) with the paper's Gym defaults (Table 6 / Appendix K): four stages
(V 2e6, Q 2e6, BC 5e5, improvement 1000 steps), batch 512, online selection after every step
with 10 episodes, as the reference code does.

Variants, as ``--config=configs/bppo.py:<arg>`` with comma-separated words:
  onestep   Onestep BPPO (pi_k never replaced)
  offline   J(pi) > J(pi_k) judged in-graph by E_s Q(s, mean pi(s))
  offN      iterative BPPO with N off-policy Q steps per policy step (e.g. off5)
  cpu       a budget for a 2-core CPU: 256-wide nets, batch 256, 1e4 steps per value/Q/BC stage,
            1000 improvement steps, online selection every 100 steps with 5 episodes, 3 seeds
  <task>    a D4RL task name (hopper-medium-replay-v2, antmaze-large-play-v2, pen-human-v1, ...) or a
            dataset id (offrl/hopper/medium-replay-v0, which also sets config.dataset): Table 6's
            learning rate, clip ratio, omega and step count (configs/bppo_presets.py)
e.g.  python experiments/launch.py --config=configs/bppo.py:cpu,onestep,offrl/hopper/medium-replay-v0
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
        elif word == "cpu":  # the budget of docs/bppo.md's CPU measurements
            ag.v_hidden_dims, ag.q_hidden_dims, ag.pi_hidden_dims = (256, 256, 256), (256, 256), (256, 256)
            ag.v_steps, ag.q_steps, ag.bc_steps = 10_000, 10_000, 10_000
            ag.select_interval, ag.select_episodes = 100, 5
            c.batch_size, c.dataset_size, c.num_seeds = 256, 50_000, 3
            c.eval_interval, c.eval_episodes = 10_000, 10
        else:
            for k, v in preset(word).items():
                ag[k] = v
            if "/" in word:  # a dataset id: use it too
                c.dataset = word
    c.num_steps = ag.v_steps + ag.q_steps + ag.bc_steps + ag.pi_steps  # the total, so budgets can scale it
    return c
