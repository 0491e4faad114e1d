"""TD3BC++ / BEAR++ paper ("Taming Policy Constrained Offline Reinforcement Learning for Non-expert
Demonstrations"), Table 1: D4RL MuJoCo Gym tasks on the expert dataset and its contaminated
versions, normalised score.

Rows: expert (E), expert-medium (EM, D4RL's medium-expert), expert-random-10/30/50/70 (ER1/3/5/7) of
Walker2d, Hopper and HalfCheetah. The local suites also build expert-cloned-X (Table 2's Adroit
construction applied to the locomotion experts); the paper has no locomotion number for it.
Columns with an offrl config: BC, 10%BC, CQL, BEAR-QL, TD3+BC, IQL, BEAR++, TD3BC++ (10%TD3+BC,
Fisher-BRC and UWAC have no offrl implementation; their numbers stay in PAPER). TD3BC++ / BEAR++ cells
get Table 7's per-environment alpha / lambda_GP (configs/td3bcpp_presets.py).
"""
from configs.tables import Protocol

TITLE = "TD3BC++ paper, Table 1 (D4RL MuJoCo Gym, expert and contaminated datasets, normalised score)"

COLUMNS = {"BC": "bc", "10%BC": ("percent_bc", {"agent.top_by": "episodes"}), "CQL": "cql", "BEAR-QL": "bear",
           "TD3+BC": "td3bc", "IQL": "iql", "BEAR++": "bearpp", "TD3BC++": "td3bcpp"}

PROTOCOL = Protocol(
    quote="We train each algorithm for 1 million time steps, evaluate them every 5000 time steps, and finally report "
          "the mean and standard deviation of the normalized scores (Fu et al., 2020) over the final 500 episodes "
          "(10 trajectories, 10 evaluations, and 5 seeds).",
    seeds=5, eval_episodes=10, report_last=10, num_steps=1_000_000, eval_interval=5000,
)

_COLS = ("BC", "10%BC", "CQL", "BEAR-QL", "TD3+BC", "10%TD3+BC", "Fisher-BRC", "UWAC", "IQL", "BEAR++", "TD3BC++")
_SETTINGS = ("expert", "medium-expert", "expert-random-10", "expert-random-30", "expert-random-50", "expert-random-70")
_ROWS = {
    "walker2d": ((66.1, 76.0, 104.0, 75.1, 104.5, 72.5, 75.6, 64.3, 105.6, 97.2, 102.9),
                 (11.3, 77.5, 102.4, 56.1, 101.6, 98.2, 103.3, 14.8, 105.1, 74.1, 104.3),
                 (7.1, 74.8, 100.8, 68.9, 98.8, 100.9, 100.0, 6.6, 105.2, 94.5, 104.1),
                 (0.8, 60.4, 97.8, 2.2, 14.2, 100.5, 95.0, 9.9, 102.9, 95.1, 104.3),
                 (1.0, 30.5, 93.2, 5.2, 8.6, 72.2, 82.5, 4.0, 92.2, 87.0, 104.4),
                 (3.4, 16.3, 77.0, -0.2, 19.6, 47.7, 69.3, 2.2, 67.6, 73.1, 100.2)),
    "hopper": ((111.7, 109.6, 111.7, 61.5, 112.2, 69.3, 112.2, 106.8, 112.5, 111.4, 112.3),
               (77.0, 111.0, 112.1, 85.1, 112.0, 66.0, 112.3, 70.8, 112.5, 110.3, 112.1),
               (106.6, 112.1, 112.1, 104.4, 112.2, 85.5, 112.3, 91.5, 112.6, 111.6, 112.3),
               (25.8, 112.1, 111.2, 82.0, 112.1, 80.4, 112.1, 9.9, 112.4, 104.8, 112.2),
               (15.8, 111.7, 112.0, 27.1, 112.2, 112.3, 112.2, 9.9, 111.6, 92.0, 112.2),
               (9.6, 105.9, 17.9, 10.0, 112.0, 112.1, 112.1, 9.7, 112.5, 45.8, 112.1)),
    "halfcheetah": ((105.8, 68.6, 94.7, 103.8, 105.3, 67.5, 106.5, 95.1, 102.4, 104.5, 105.9),
                    (65.9, 95.3, 33.3, 49.3, 94.9, 96.4, 95.3, 38.0, 81.9, 91.0, 105.3),
                    (89.6, 68.6, 83.0, 93.9, 101.5, 64.9, 93.3, 63.5, 76.1, 100.4, 105.1),
                    (66.1, 63.0, 62.0, 82.2, 98.4, 77.3, 67.8, 22.6, 64.2, 103.0, 103.8),
                    (30.1, 66.2, 55.8, 43.4, 90.1, 70.3, 46.9, 2.3, 53.0, 100.3, 105.2),
                    (2.5, 61.0, 40.2, 2.3, 67.6, 75.0, 29.0, 2.3, 31.0, 101.8, 99.8)),
}
PAPER = {f"{env}-{setting}-v2": dict(zip(_COLS, row)) for env, rows in _ROWS.items() for setting, row in zip(_SETTINGS, rows)}
PAPER.update({f"{env}-expert-cloned-30-v2": {} for env in _ROWS})  # built locally; no number in the paper


def preset(column: str, task: str) -> dict:
    """Table 7's alpha / lambda_GP for TD3BC++ and BEAR++, and BEAR's per-environment MMD kernel for the three
    BEAR columns: what ``--config=configs/<module>.py:<task>`` sets, less the dataset."""
    module = COLUMNS[column] if isinstance(COLUMNS[column], str) else COLUMNS[column][0]
    if module not in ("td3bcpp", "bear", "bearpp"):
        return {}
    import importlib

    get_config = importlib.import_module(f"configs.{module}").get_config
    plain, tasked = _flat(get_config().to_dict()), _flat(get_config(task.rsplit("-v", 1)[0]).to_dict())
    return {k: v for k, v in tasked.items() if k != "dataset" and plain.get(k) != v}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
