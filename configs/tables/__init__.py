"""Paper tables for experiments/reproduce.py: one module per table.

A table module defines TITLE, COLUMNS (column -> configs/<module>.py, or (module, {key: value}) for a
variant of a config), PAPER (D4RL task -> column -> reported score), PROTOCOL (a :class:`Protocol`:
how the paper measured its numbers, with the sentence it comes from) and optionally
``preset(column, task)`` (per-cell config overrides) and NOTE (a line printed above the table).
"""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a paper's table was measured. ``reproduce.py`` applies it by default and records every deviation.

    quote: the paper's sentence(s) the fields come from, verbatim.
    seeds: training seeds per number.
    eval_episodes: episodes per evaluation and seed.
    report_last: evaluations averaged into a number (1: the final policy alone).
    num_steps: updates per run; None: each column's own config decides (multi-stage algorithms' stage
        steps, a single-stage algorithm's ``num_steps``), the paper stating no common budget.
    eval_interval: updates between evaluations; None: the config's.
    assumed: what the quote does not state and offrl assumes (printed with the protocol).
    """

    quote: str
    seeds: int
    eval_episodes: int
    report_last: int
    num_steps: Optional[int] = None
    eval_interval: Optional[int] = None
    assumed: str = ""

    def describe(self) -> str:
        budget = f"{self.num_steps:,} updates" if self.num_steps else "each column's configured updates"
        which = "the final policy" if self.report_last == 1 else f"the last {self.report_last} evaluations"
        every = f", evaluated every {self.eval_interval:,} updates" if self.eval_interval else ""
        return (f"{budget}{every}; score: {which} x {self.eval_episodes} episodes, "
                f"mean ± std over {self.seeds} seeds" + (f" (not stated in the paper: {self.assumed})" if self.assumed else ""))
