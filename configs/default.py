"""The default job: TD3+BC on the local Hopper-v5 medium dataset (1M transitions, the size every
shipped config uses; built once, offline), 3 seeds in one vmapped run of 10k updates. The full
settings are configs/td3bc.py."""
from configs.td3bc import get_config as td3bc_config


def get_config():
    c = td3bc_config()
    c.dataset = "offrl/hopper/medium-v0"
    c.num_seeds = 3
    c.num_steps = 10_000
    c.eval_interval = 5_000
    c.eval_episodes = 5
    c.checkpoint_interval = 5_000
    return c
