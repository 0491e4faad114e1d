"""BRAC+ with the paper's state-dependent multiplier alpha(s) (configs/bracplus.py with the word
'state_alpha'; the same words apply, e.g. --config=configs/bracplus_sa.py:hopper-medium,cpu).
Its own file so a paper table's "BRAC+ alpha(s)" column has its own run folder
(experiments/reproduce.py names a cell's folder after the column's config file)."""
from configs.bracplus import get_config as bracplus_config


def get_config(arg: str = ""):
    return bracplus_config(",".join(w for w in ("state_alpha", arg) if w))
