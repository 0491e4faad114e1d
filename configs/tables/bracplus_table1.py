"""BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score, policy of the last epoch, 100
episodes, 4 seeds): BRAC+ with the reference's scalar alpha, BRAC+ with the paper's
state-dependent alpha(s), and BRAC-vp.

PAPER holds no number: none was found in a source this project can cite. Looked in (25 Nov 2026):
../shared/papers/brac-plus.md (Table 1's caption and discussion only, the body is lost; Table 2's
caption likewise), ../shared/specs/ALGORITHMS.md section 4 and ../shared/DESIGN.md (no scores);
the reference repository vermouth1992/bracp at every commit (README, ablation.py, ablation.ipynb
whose outputs are plots only, d4rl_bracp.py: thresholds, no scores); the search corpora (pages,
docs, code, issues) for the title, arXiv 2110.00894, the ACML/PMLR page (abstract only) and
result-table phrasings. So the comparison prints "—" in the paper column and the offrl runs in
the others (``experiments/reproduce.py --table=bracplus_table1``). Numbers go in only when copied
from the published PDF, with the page cited here.

The rows are the tasks of Table 1 that the reference code carries thresholds for (d4rl_bracp.py).
Each column has its own config file, so each cell its own run folder (reproduce.py names a cell's
folder after the column's config file).
"""
from configs.bracplus import preset as bracplus_preset

TITLE = "BRAC+ paper, Table 1 (D4RL Gym locomotion, normalised score)"

# column name -> configs/<module>.py that reproduces it
COLUMNS = {"BRAC+": "bracplus", "BRAC+ alpha(s)": "bracplus_sa", "BRAC-vp": "brac_vp"}

TASKS = [f"{e}-{l}-v0" for l in ("random", "medium", "medium-replay", "medium-expert")
         for e in ("halfcheetah", "hopper", "walker2d")]
PAPER = {t: {} for t in TASKS}  # task -> column -> reported score: none found (see the docstring)


def preset(column: str, task: str) -> dict:
    """Per-cell overrides: the reference's per-task threshold (and GP target) for both BRAC+ columns."""
    if column == "BRAC-vp":
        return {}
    return {f"agent.{k}": v for k, v in bracplus_preset(task).items()}
