"""CQL(H) with the paper's locomotion defaults (Kumar et al. 2020): min-Q weight 5, 10 sampled
actions, no Lagrange, actor lr 1e-4, critic lr 3e-4. AntMaze: agent.min_q_weight=10,
agent.lagrange=True, reward_bias=-1."""
from offrl.algos.cql import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "cql"
    c.agent = default_agent_config()
    return c
