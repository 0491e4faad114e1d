"""%BC: behaviour cloning on the top 10% of trajectories by return."""
from configs.bc import get_config as bc_config


def get_config():
    c = bc_config()
    c.agent.top_fraction = 0.1
    return c
