"""iTRPO paper (Zhang & Tan, AAAI 2023), Table 3: D4RL AntMaze (-v2), normalised score, mean over
4 seeds, with a BRAC-vp column (not in the paper).

PLAS and SPOT have no offrl implementation: their numbers are kept in PAPER for reference but they
are not columns. offrl has no local AntMaze suite, so with ``--source=offrl`` every cell is skipped
with a message; ``--source=<dir>`` with D4RL's antmaze-*-v2.hdf5 files runs them. The iTRPO code's
AntMaze settings (reward transformation, per-task alpha/tau) are not in the paper text and are not
applied here: the cells run configs/itrpo.py as is."""
from configs.tables import Protocol

TITLE = "iTRPO paper, Table 3 (D4RL AntMaze, normalised score)"

COLUMNS = {"BEAR": "bear", "TD3-BC": "td3bc", "CQL": "cql", "IQL": "iql", "BRAC-vp": "brac_vp", "iTRPO": "itrpo"}

PROTOCOL = Protocol(
    quote="We report the mean and standard deviation of score performance over 4 random seeds.",
    seeds=4, eval_episodes=10, report_last=10,
    assumed="the final 10 evaluations of 10 episodes, as Table 2; each column trains its own configured budget",
)

_COLS = ("BEAR", "TD3-BC", "PLAS", "CQL", "IQL", "SPOT", "iTRPO")
_ROWS = {
    "antmaze-umaze-v2": (73.0, 73.0, 62.0, 82.6, 89.6, 93.5, 92.7),
    "antmaze-umaze-diverse-v2": (61.0, 47.0, 45.4, 10.2, 65.6, 40.7, 86.5),
    "antmaze-medium-play-v2": (0.0, 0.0, 31.4, 59.0, 76.4, 74.7, 77.9),
    "antmaze-medium-diverse-v2": (8.0, 0.2, 20.6, 46.6, 72.8, 79.1, 76.3),
    "antmaze-large-play-v2": (0.0, 0.0, 2.2, 16.4, 42.0, 35.3, 50.9),
    "antmaze-large-diverse-v2": (0.0, 0.0, 3.0, 3.2, 46.0, 36.3, 50.6),
}
PAPER = {task: dict(zip(_COLS, row)) for task, row in _ROWS.items()}
# the table's "Total" row as printed; for iTRPO it is not the sum of the rows above it (434.9)
PAPER_TOTAL = dict(zip(_COLS, (142.0, 120.2, 164.6, 218.0, 392.4, 359.6, 418.5)))
