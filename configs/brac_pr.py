"""BRAC-pr (Wu et al. 2019): configs/brac_vp.py with the divergence as a policy regulariser
instead of a value penalty."""
from configs.brac_vp import get_config as brac_vp_config


def get_config():
    c = brac_vp_config()
    c.agent.variant = "pr"
    return c
