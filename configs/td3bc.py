"""TD3+BC with the paper's defaults (Fujimoto & Gu 2021): 1M updates, 5 seeds, normalised states."""
from offrl.algos.td3bc import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "td3bc"
    c.normalize_obs = True
    c.agent = default_agent_config()
    return c
