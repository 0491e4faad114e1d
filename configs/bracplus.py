"""BRAC+ (offrl/algos/bracplus.py): the reference code's defaults (vermouth1992/bracp, bracp.py and
d4rl_bracp.py): CVAE ensemble of 3 and networks 2x256, 500k behaviour + 500k pretraining updates,
then 1M main updates (400 epochs x 2500), batch 100, rewards min-max scaled to [0, 1], one scalar
alpha, softplus-weighted GP with a learned weight.

``--config=configs/bracplus.py:<words>`` (comma-separated):

  <task>        hopper-medium, hopper-medium-replay-v2 or offrl/hopper/medium-v0: sets the dataset
                (a bare task name: its offrl suite) and the reference's per-task threshold
                (``generalization_threshold``) and ``max_ood_grad_norm`` (d4rl_bracp.py)
  paper         the paper's choices: ``paper_arch`` below, alpha(s) from an MLP, the hard-gated
                squared-norm GP with fixed lambda 0.1, plain backup a' ~ pi(s'), 400k behaviour steps
  paper_arch    only the paper's architecture: CVAE and policy 3x512, Q 3x256 (alpha MLP 3x256)
  state_alpha   the state-dependent multiplier alone (``agent.state_alpha=True``)
  cpu           a budget for the shared CPU: 20k + 10k + 30k updates, epoch 1000, evaluations
                every 10k with 5 episodes, 3 seeds
"""
from __future__ import annotations

import re

from offrl.algos.bracplus import default_agent_config
from offrl.config import base_config

# d4rl_bracp.py: the per-task KL threshold over the pretrained policy's KL, and the GP target
TASK_PRESETS = {
    "hopper-medium-expert": dict(generalization_threshold=0.2),
    "walker2d-medium-expert": dict(generalization_threshold=0.2),
    "halfcheetah-medium-expert": dict(generalization_threshold=0.2, max_ood_grad_norm=0.1),
    "hopper-medium": dict(generalization_threshold=0.2),
    "walker2d-medium": dict(generalization_threshold=1.0),
    "halfcheetah-medium": dict(generalization_threshold=7.0, max_ood_grad_norm=0.1),
    "hopper-medium-replay": dict(generalization_threshold=3.0),
    "walker2d-medium-replay": dict(generalization_threshold=3.0),
    "halfcheetah-medium-replay": dict(generalization_threshold=3.0, max_ood_grad_norm=0.1),
    "hopper-random": dict(generalization_threshold=3.0),
    "walker2d-random": dict(generalization_threshold=3.0),
    "halfcheetah-random": dict(generalization_threshold=3.0, max_ood_grad_norm=0.1),
}

ARCHITECTURES = {
    "reference": dict(behavior_hidden_dims=(256, 256), actor_hidden_dims=(256, 256), critic_hidden_dims=(256, 256),
                      alpha_hidden_dims=(256, 256, 256)),
    "paper": dict(behavior_hidden_dims=(512, 512, 512), actor_hidden_dims=(512, 512, 512),
                  critic_hidden_dims=(256, 256, 256), alpha_hidden_dims=(256, 256, 256)),
}

PAPER_SWITCHES = dict(state_alpha=True, gp_gate="hard", gp_squared=True, gp_weight_learned=False, gp_weight=0.1,
                      max_q_backup=False, target_policy=False, behavior_steps=400_000)

CPU_BUDGET = dict(num_steps=30_000, eval_interval=10_000, eval_episodes=5, num_seeds=3,
                  agent=dict(behavior_steps=20_000, pretrain_steps=10_000, epoch_length=1000))


def task_name(dataset: str) -> str:
    """'offrl/hopper/medium-replay-v0', 'hopper-medium-replay-v2' or 'hopper-medium-replay' -> 'hopper-medium-replay'."""
    if "/" in dataset:
        parts = dataset.split("/")
        return f"{parts[-2]}-{re.sub(r'-v[0-9]+$', '', parts[-1])}"
    return re.sub(r"-v[0-9]+$", "", dataset)


def preset(dataset: str) -> dict:
    """The reference's per-task agent overrides for a dataset or task name."""
    task = task_name(dataset)
    if task not in TASK_PRESETS:
        raise ValueError(f"no BRAC+ preset for '{dataset}': the reference sets {', '.join(TASK_PRESETS)}")
    return dict(TASK_PRESETS[task])


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "bracplus"
    c.num_steps = 1_000_000
    c.batch_size = 100
    c.reward_normalization = "minmax"
    c.eval_interval = 2500 * 10
    c.agent = default_agent_config()
    c.agent.update(ARCHITECTURES["reference"])
    for word in [w.strip() for w in arg.split(",") if w.strip()]:
        if word == "paper":
            c.agent.update(ARCHITECTURES["paper"])
            c.agent.update(PAPER_SWITCHES)
        elif word == "paper_arch":
            c.agent.update(ARCHITECTURES["paper"])
        elif word == "state_alpha":
            c.agent.state_alpha = True
        elif word == "cpu":
            c.update({k: v for k, v in CPU_BUDGET.items() if k != "agent"})
            c.agent.update(CPU_BUDGET["agent"])
        else:
            c.agent.update(preset(word))
            c.dataset = word if "/" in word else "offrl/{}/{}-v0".format(*task_name(word).split("-", 1))
    return c
