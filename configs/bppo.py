"""BPPO (Zhuang et al., ICLR 2023) with the reference code's defaults (github.com/Dragon-Zhuang/BPPO,
main.py): four stages (V 2e6, Q 2e6, BC 5e5, improvement 1000 steps), batch 512, online selection
after every step with 10 episodes.

The per-dataset settings (paper Table 6 / Appendix K: clip ratio, learning rate, omega,
improvement steps; with ``agent.code_tips`` the reference's code-comment tips: entropy weight,
shorter pretraining, state normalisation) follow ``config.dataset`` wherever it is set — ``--config.dataset=...``, a task word below, or a table
cell of experiments/reproduce.py — through ``configs.bppo_presets.follow_dataset``; a key set
explicitly keeps its value. ``config.agent.dataset_settings`` says what the dataset implied.

Variants, as ``--config=configs/bppo.py:<arg>`` with comma-separated words:
  onestep   Onestep BPPO (pi_k never replaced)
  offline   J(pi) > J(pi_k) judged in-graph by E_s Q(s, mean pi(s))
  offN      iterative BPPO with N off-policy Q steps per policy step (e.g. off5)
  best      also evaluate the online-selected best pi_k at the end (agent.report_best_pik)
  tips      the reference's code-comment tips per dataset (agent.code_tips; see configs/bppo_presets.py)
  cpu       a budget for a 2-core CPU: 256-wide nets, batch 256, 1e4 steps per value/Q/BC stage,
            1000 improvement steps, online selection every 100 steps with 5 episodes, 3 seeds
  <task>    a dataset: a D4RL task name (hopper-medium-replay-v2 -> offrl/hopper/medium-replay-v0)
            or a dataset id (offrl/hopper/medium-replay-v0); sets config.dataset
e.g.  python experiments/launch.py --config=configs/bppo.py:cpu,onestep,offrl/hopper/medium-replay-v0
"""
from configs.bppo_presets import follow_dataset, task_name
from offrl.algos.bppo import default_agent_config
from offrl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "bppo"
    c.batch_size = 512
    c.agent = default_agent_config()
    follow_dataset(c)
    ag = c.agent
    for word in [w.strip() for w in (arg or "").split(",") if w.strip()]:
        if word == "onestep":
            ag.selection = "none"
        elif word == "offline":
            ag.selection = "offline"
        elif word.startswith("off") and word[3:].isdigit():
            ag.bppo_off = int(word[3:])
        elif word == "best":
            ag.report_best_pik = True
        elif word == "tips":
            ag.code_tips = True
        elif word == "cpu":  # the budget of docs/bppo.md's CPU measurements (explicit, so it beats the dataset's steps)
            ag.v_hidden_dims, ag.q_hidden_dims, ag.pi_hidden_dims = (256, 256, 256), (256, 256), (256, 256)
            ag.v_steps, ag.q_steps, ag.bc_steps = 10_000, 10_000, 10_000
            ag.select_interval, ag.select_episodes = 100, 5
            c.batch_size, c.dataset_size, c.num_seeds = 256, 50_000, 3
            c.eval_interval, c.eval_episodes = 10_000, 10
        elif "/" in word:
            c.dataset = word
        elif task_name(word) == word and word.count("-") >= 2:  # a D4RL task name
            env, level = word.split("-", 1)
            c.dataset = f"offrl/{env}/{level.rsplit('-v', 1)[0]}-v0"
        else:
            raise ValueError(f"unknown configs/bppo.py word '{word}': use onestep, offline, offN, best, tips, cpu or a dataset")
    return c
