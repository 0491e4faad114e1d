"""Onestep RL, exponentiated-advantage variant (Brandfonbrener et al. 2021): 500k behaviour-cloning
updates, 500k SARSA updates of Q^{pi_b}, then num_steps AWR updates from pi_b (temperature 1, clip 100)."""
from offrl.algos.onestep import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "onestep"
    c.normalize_obs = True
    c.batch_size = 512
    c.num_steps = 100_000
    c.agent = default_agent_config()
    return c
