"""iTRPO paper (Zhang & Tan, AAAI 2023), Table 2: D4RL MuJoCo locomotion (-v2), normalised score,
mean over 4 seeds and the final 10 evaluations, with a BRAC-vp column (not in the paper; its
ablation "shaping off" in Figure 2(d) is iTRPO with ``agent.shaping=False``).

UWAC and PBRL have no offrl implementation: their numbers are kept in PAPER for reference but they
are not columns. With ``--source=offrl`` only the environments with committed behaviour policies
(Hopper) have local data; the other cells are skipped with a message."""
from configs.tables import Protocol

TITLE = "iTRPO paper, Table 2 (D4RL MuJoCo locomotion, normalised score)"

# column name -> configs/<module>.py that reproduces it
COLUMNS = {"BEAR": "bear", "IQL": "iql", "TD3-BC": "td3bc", "CQL": "cql", "BRAC-vp": "brac_vp", "iTRPO": "itrpo",
           # iTRPO's KL weight: the default is the authors' code's w = tau; this column is the paper's text's w = alpha
           "iTRPO w=alpha": ("itrpo", {"agent.kl_factor": "alpha"})}

PROTOCOL = Protocol(
    quote="We report the mean and standard deviation of score performance over 4 random seeds and the final 10 "
          "evaluations.",
    seeds=4, eval_episodes=10, report_last=10,
    assumed="10 episodes per evaluation; each column trains its own configured budget (iTRPO: 1M updates)",
)

_COLS = ("BEAR", "UWAC", "IQL", "TD3-BC", "CQL", "PBRL", "iTRPO")
_ROWS = {
    "halfcheetah-random-v2": (2.3, 2.3, 12.1, 11.8, 23.2, 11.0, 27.4),
    "hopper-random-v2": (3.9, 2.7, 8.4, 9.1, 8.5, 26.8, 31.6),
    "walker2d-random-v2": (12.8, 2.0, 6.3, 1.4, 5.5, 8.1, 5.7),
    "halfcheetah-medium-v2": (43.2, 42.2, 47.1, 48.2, 49.1, 57.9, 56.2),
    "hopper-medium-v2": (51.8, 50.9, 63.6, 59.0, 67.5, 75.3, 98.5),
    "walker2d-medium-v2": (-0.2, 75.4, 80.2, 83.8, 83.1, 89.6, 85.0),
    "halfcheetah-medium-replay-v2": (36.3, 35.9, 44.3, 44.6, 45.5, 45.1, 55.0),
    "hopper-medium-replay-v2": (52.2, 25.3, 95.4, 65.4, 95.5, 100.6, 101.2),
    "walker2d-medium-replay-v2": (7.0, 23.6, 69.9, 80.3, 82.5, 77.7, 94.2),
    "halfcheetah-medium-expert-v2": (46.0, 42.7, 89.2, 91.7, 87.7, 92.3, 94.4),
    "hopper-medium-expert-v2": (50.6, 44.9, 101.6, 101.6, 104.6, 110.8, 110.8),
    "walker2d-medium-expert-v2": (22.1, 96.5, 109.6, 110.1, 109.5, 110.1, 110.6),
    "halfcheetah-expert-v2": (92.7, 92.9, 94.8, 96.7, 98.2, 92.4, 95.2),
    "hopper-expert-v2": (54.6, 110.5, 109.1, 110.2, 107.7, 110.5, 111.3),
    "walker2d-expert-v2": (106.6, 108.4, 109.3, 110.2, 109.4, 108.3, 111.8),
}
PAPER = {task: dict(zip(_COLS, row)) for task, row in _ROWS.items()}
PAPER_AVERAGE = dict(zip(_COLS, (38.8, 50.4, 69.4, 68.3, 71.8, 74.4, 79.3)))  # the table's "Average" row
