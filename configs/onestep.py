"""Onestep RL with the reference code's defaults (github.com/davidbrandfonbrener/onestep-rl,
config/train.yaml and its learner configs): 5e5 behaviour-cloning steps, 2e6 SARSA steps of
Q^{pi_b} (2x1024, target update every 2nd step), then 1e5 reverse-KL improvement steps
(alpha 1, 10 samples), batch 512, lr 1e-4, raw observations. ``agent.operator='exp_weight'``
is the exponentially weighted variant (the reference's temp 0.01 = 1/agent.temperature)."""
from offrl.algos.onestep import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "onestep"
    c.normalize_obs = False
    c.batch_size = 512
    c.num_steps = 100_000
    c.agent = default_agent_config()
    return c
