"""BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score, last evaluation, 4 seeds): BRAC+
with the reference's scalar alpha, BRAC+ with the paper's state-dependent alpha(s), and BRAC-vp.

The paper's numbers are not in the copy of the paper this project holds
(../shared/papers/brac-plus.md keeps Table 1's caption, not its body), so PAPER has no number
yet and the comparison table prints "—" there until someone copies them from the published PDF. The
rows are the tasks of Table 1 that the reference code carries thresholds for (d4rl_bracp.py).
"""
from configs.bracplus import preset as bracplus_preset

TITLE = "BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score)"

# column name -> configs/<module>.py that reproduces it
COLUMNS = {"BRAC+": "bracplus", "BRAC+ alpha(s)": "bracplus", "BRAC-vp": "brac_vp"}

TASKS = [f"{e}-{l}-v0" for l in ("random", "medium", "medium-replay", "medium-expert")
         for e in ("halfcheetah", "hopper", "walker2d")]
PAPER = {t: {} for t in TASKS}  # task -> column -> reported score (none transcribed yet)


def preset(column: str, task: str) -> dict:
    """Per-cell overrides: the reference's per-task threshold for both BRAC+ columns; alpha(s) for the second."""
    if column == "BRAC-vp":
        return {}
    out = {f"agent.{k}": v for k, v in bracplus_preset(task).items()}
    if column == "BRAC+ alpha(s)":
        out["agent.state_alpha"] = True
    return out
