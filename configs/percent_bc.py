"""%BC: behaviour cloning on the best trajectories holding 10% of the timesteps (the Decision
Transformer code's convention, agent.top_by='timesteps'); agent.top_by='episodes' keeps the top 10%
of trajectories instead, as the TD3BC++ paper describes its 10%BC."""
from configs.bc import get_config as bc_config


def get_config():
    c = bc_config()
    c.agent.top_fraction = 0.1
    return c
