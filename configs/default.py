"""The default job: TD3+BC on the local Hopper-v5 medium dataset, 3 seeds in one vmapped run,
sized so that install + build + train + evaluation stay under 5 minutes on 2 CPU cores (the full settings are configs/td3bc.py)."""
from configs.td3bc import get_config as td3bc_config


def get_config():
    c = td3bc_config()
    c.dataset = "offrl/hopper/medium-v0"
    c.dataset_size = 100_000
    c.num_seeds = 3
    c.num_steps = 10_000
    c.eval_interval = 5_000
    c.eval_episodes = 5
    c.checkpoint_interval = 5_000
    return c
