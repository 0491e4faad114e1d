"""iTRPO (Zhang & Tan, AAAI 2023) with the defaults of its reference code (JackZhangY/offorRL,
ikl_trainer.py + configs/trainer/ikl.yaml, bc.yaml): BRAC-vp with the reward shaped by
tau * alpha * max(log pi(a|s) - log pi_b(a|s), -1), alpha 0.03, tau 0.9 (``agent.shaping_tau``),
reward bonus 5, 10 action samples, grad-of-Q critic regulariser 0.1, Q and policy 3 x 256 at lr
3e-4; pi_b 2 x 256 cloned for 1M updates (lr 1e-3, x0.1 at 80% and 90%); 1M agent updates.
The KL weight is the code's (tau, ``agent.kl_factor='tau'``); ``--config.agent.kl_factor=alpha`` is the paper's Eq. 5.
``--config.agent.shaping=False`` is plain BRAC-vp with the same hyperparameters (the ablation)."""
from offrl.algos.itrpo import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "itrpo"
    c.num_steps = 1_000_000  # ikl.yaml total_training_steps
    c.agent = default_agent_config()
    return c
