"""ARQ paper (Goo & Niekum), Table 2 / Table A.4, D4RL rows: the normalised scores it reports for
ARQ+pi (the AWR policy), ARQ+s (the implicit policy over score-model samples) and IQL (the numbers
it borrows from Kostrikov et al. 2021). Per-task totals as printed in Table 2: locomotion ARQ+pi
1000 / ARQ+s 947 (sums of the rounded cells: 995 / 947), AntMaze 416 / 327, Kitchen 126 / 204,
Adroit human 45 / 90, cloned 50 / 71; D4RL total 1637 / 1639.

IQL's locomotion expert-v2 cells are left out: Table A.4's extraction does not say which of its
unlabelled columns they sit in.
"""

TITLE = "ARQ paper, Table 2 / A.4 (D4RL, normalised score)"

# column name -> configs/<module>.py that reproduces it (per task family settings: ``preset``)
COLUMNS = {"ARQ+π": "arq", "ARQ+s": "arq_s", "IQL": "iql"}

PAPER = {
    "hopper-expert-v2": {"ARQ+π": 111, "ARQ+s": 98},
    "walker2d-expert-v2": {"ARQ+π": 110, "ARQ+s": 108},
    "halfcheetah-expert-v2": {"ARQ+π": 95, "ARQ+s": 85},
    "hopper-medium-v2": {"ARQ+π": 66, "ARQ+s": 58, "IQL": 66},
    "walker2d-medium-v2": {"ARQ+π": 78, "ARQ+s": 81, "IQL": 78},
    "halfcheetah-medium-v2": {"ARQ+π": 47, "ARQ+s": 45, "IQL": 47},
    "hopper-medium-expert-v2": {"ARQ+π": 92, "ARQ+s": 93, "IQL": 92},
    "walker2d-medium-expert-v2": {"ARQ+π": 110, "ARQ+s": 107, "IQL": 110},
    "halfcheetah-medium-expert-v2": {"ARQ+π": 87, "ARQ+s": 82, "IQL": 87},
    "hopper-medium-replay-v2": {"ARQ+π": 81, "ARQ+s": 78, "IQL": 95},
    "walker2d-medium-replay-v2": {"ARQ+π": 74, "ARQ+s": 71, "IQL": 74},
    "halfcheetah-medium-replay-v2": {"ARQ+π": 44, "ARQ+s": 41, "IQL": 44},
    "pen-human-v0": {"ARQ+π": 44, "ARQ+s": 74, "IQL": 72},
    "door-human-v0": {"ARQ+π": 0, "ARQ+s": 10, "IQL": 4},
    "relocate-human-v0": {"ARQ+π": 0, "ARQ+s": 0, "IQL": 0},
    "hammer-human-v0": {"ARQ+π": 1, "ARQ+s": 6, "IQL": 1},
    "pen-cloned-v0": {"ARQ+π": 48, "ARQ+s": 55, "IQL": 37},
    "door-cloned-v0": {"ARQ+π": 1, "ARQ+s": 12, "IQL": 2},
    "relocate-cloned-v0": {"ARQ+π": 0, "ARQ+s": 0, "IQL": 0},
    "hammer-cloned-v0": {"ARQ+π": 1, "ARQ+s": 4, "IQL": 2},
    "kitchen-complete-v0": {"ARQ+π": 37, "ARQ+s": 77, "IQL": 63},
    "kitchen-partial-v0": {"ARQ+π": 50, "ARQ+s": 70, "IQL": 46},
    "kitchen-mixed-v0": {"ARQ+π": 39, "ARQ+s": 57, "IQL": 51},
    "antmaze-umaze-v0": {"ARQ+π": 97, "ARQ+s": 94, "IQL": 88},
    "antmaze-umaze-diverse-v0": {"ARQ+π": 62, "ARQ+s": 58, "IQL": 62},
    "antmaze-medium-play-v0": {"ARQ+π": 80, "ARQ+s": 69, "IQL": 71},
    "antmaze-medium-diverse-v0": {"ARQ+π": 82, "ARQ+s": 65, "IQL": 70},
    "antmaze-large-play-v0": {"ARQ+π": 37, "ARQ+s": 18, "IQL": 40},
    "antmaze-large-diverse-v0": {"ARQ+π": 58, "ARQ+s": 23, "IQL": 48},
}

# the paper's standard deviations over 3 seeds (Table A.4), for the ARQ columns
PAPER_STD = {
    "hopper-expert-v2": {"ARQ+π": 0.2, "ARQ+s": 0.8}, "walker2d-expert-v2": {"ARQ+π": 0.4, "ARQ+s": 0.1},
    "halfcheetah-expert-v2": {"ARQ+π": 0.2, "ARQ+s": 0.5}, "hopper-medium-v2": {"ARQ+π": 0.4, "ARQ+s": 0.8},
    "walker2d-medium-v2": {"ARQ+π": 0.7, "ARQ+s": 0.2}, "halfcheetah-medium-v2": {"ARQ+π": 0.3, "ARQ+s": 0.2},
    "hopper-medium-expert-v2": {"ARQ+π": 0.9, "ARQ+s": 2.5}, "walker2d-medium-expert-v2": {"ARQ+π": 0.5, "ARQ+s": 0.4},
    "halfcheetah-medium-expert-v2": {"ARQ+π": 0.7, "ARQ+s": 0.3}, "hopper-medium-replay-v2": {"ARQ+π": 2.4, "ARQ+s": 3.2},
    "walker2d-medium-replay-v2": {"ARQ+π": 7.0, "ARQ+s": 1.2}, "halfcheetah-medium-replay-v2": {"ARQ+π": 0.3, "ARQ+s": 0.1},
    "pen-human-v0": {"ARQ+π": 5.2, "ARQ+s": 1.3}, "door-human-v0": {"ARQ+π": 0.4, "ARQ+s": 4.9},
    "relocate-human-v0": {"ARQ+π": 0.0, "ARQ+s": 0.1}, "hammer-human-v0": {"ARQ+π": 0.7, "ARQ+s": 1.0},
    "pen-cloned-v0": {"ARQ+π": 7.1, "ARQ+s": 2.7}, "door-cloned-v0": {"ARQ+π": 0.4, "ARQ+s": 4.4},
    "relocate-cloned-v0": {"ARQ+π": 0.0, "ARQ+s": 0.0}, "hammer-cloned-v0": {"ARQ+π": 0.3, "ARQ+s": 2.6},
    "kitchen-complete-v0": {"ARQ+π": 14.2, "ARQ+s": 1.8}, "kitchen-partial-v0": {"ARQ+π": 5.0, "ARQ+s": 2.7},
    "kitchen-mixed-v0": {"ARQ+π": 9.4, "ARQ+s": 2.9}, "antmaze-umaze-v0": {"ARQ+π": 0.8, "ARQ+s": 1.7},
    "antmaze-umaze-diverse-v0": {"ARQ+π": 12.1, "ARQ+s": 7.0}, "antmaze-medium-play-v0": {"ARQ+π": 8.3, "ARQ+s": 6.6},
    "antmaze-medium-diverse-v0": {"ARQ+π": 6.1, "ARQ+s": 15.6}, "antmaze-large-play-v0": {"ARQ+π": 17.7, "ARQ+s": 1.7},
    "antmaze-large-diverse-v0": {"ARQ+π": 6.2, "ARQ+s": 5.0},
}


def family(task: str) -> str:
    for name in ("antmaze", "kitchen"):
        if task.startswith(name):
            return name
    return "adroit" if task.split("-")[0] in ("pen", "door", "relocate", "hammer") else "locomotion"


def preset(column: str, task: str) -> dict:
    """The task family's Tables A.1-A.3 settings for the ARQ columns (configs/arq.py's words)."""
    if column not in ("ARQ+π", "ARQ+s") or family(task) == "locomotion":
        return {}
    from configs.arq import get_config

    cfg = get_config(",".join(("explicit" if column == "ARQ+π" else "implicit", family(task))))
    ag = cfg.agent
    out = {f"agent.{k}": ag[k] for k in ("kth", "alpha", "num_score_models", "score_steps", "critic_lr")}
    out.update(reward_normalization=cfg.reward_normalization, reward_bias=cfg.reward_bias,
               num_steps=1 + ag.score_steps + ag.q_steps + (ag.policy_steps if ag.policy == "explicit" else 0))
    return out
