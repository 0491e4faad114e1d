"""Behaviour cloning (MSE on a tanh MLP, 2x256); set agent.top_fraction < 1 for %BC."""
from offrl.algos.bc import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "bc"
    c.normalize_obs = True
    c.agent = default_agent_config()
    return c
