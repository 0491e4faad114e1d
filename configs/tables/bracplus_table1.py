"""BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score, policy of the last epoch, 100
episodes, 4 seeds): BRAC+ with the reference's scalar alpha, BRAC+ with the paper's
state-dependent alpha(s), BRAC-vp and BEAR.

PAPER holds no number: the body of Table 1 (and of Table 2) could not be found in any source this
project can cite (the paper's captions and discussion, the reference repository vermouth1992/bracp
at every commit: README, ablation scripts and notebook whose outputs are plots, d4rl_bracp.py with
thresholds only). So the comparison prints "—" in the paper column and the offrl runs in the others
(``experiments/reproduce.py --table=bracplus_table1``), and says so above the table (NOTE). Numbers
go in only when copied from the published PDF, with the page cited here.

The rows are the tasks of Table 1 that the reference code carries thresholds for (d4rl_bracp.py).
Each column has its own config file, so each cell its own run folder (reproduce.py names a cell's
folder after the column's config file).
"""
from configs.tables import Protocol
from configs.bracplus import preset as bracplus_preset

TITLE = "BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score)"

# column name -> configs/<module>.py that reproduces it
COLUMNS = {"BRAC+": "bracplus", "BRAC+ alpha(s)": "bracplus_sa", "BRAC-vp": "brac_vp", "BEAR": "bear"}

PROTOCOL = Protocol(
    quote="For each task, we train for 1 million gradient steps and report the performance by running the policy "
          "obtained at the last epoch of the training for 100 episodes, averaged over 4 random seeds with standard "
          "deviation.",
    seeds=4, eval_episodes=100, report_last=1, num_steps=1_000_000,
)

NOTE = ("The body of the paper's Table 1 is not available to this project, so the paper column is empty: this table "
        "compares BRAC+ (scalar alpha and alpha(s)) with offrl's BRAC-vp and BEAR on the same data, not with published numbers.")

TASKS = [f"{e}-{l}-v0" for l in ("random", "medium", "medium-replay", "medium-expert")
         for e in ("halfcheetah", "hopper", "walker2d")]
PAPER = {t: {} for t in TASKS}  # task -> column -> reported score: none found (see the docstring)


def preset(column: str, task: str) -> dict:
    """Per-cell overrides: the reference's per-task threshold (and GP target) for both BRAC+ columns."""
    if column not in ("BRAC+", "BRAC+ alpha(s)"):
        return {}
    return {f"agent.{k}": v for k, v in bracplus_preset(task).items()}
