"""IQL with the paper's locomotion defaults (Kostrikov et al. 2021): expectile 0.7, temperature 3,
rewards x 1000/(max-min trajectory return). For AntMaze set agent.expectile=0.9,
agent.temperature=10, reward_normalization='none' and reward_bias=-1 (the paper's r - 1)."""
from offrl.algos.iql import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "iql"
    c.normalize_obs = False
    c.reward_normalization = "traj_return"
    c.agent = default_agent_config()
    return c
