"""BRAC-vp (Wu et al. 2019): sampled KL (4 samples) to a cloned tanh-Gaussian behaviour policy,
alpha 0.1, Q 2x(300, 300), policy (200, 200); 300k behaviour-cloning updates, then
num_steps (paper: 500k) updates of which the first 20k train the policy on the divergence only.
The divergence is the KL; ``--config.agent.divergence=mmd`` uses the kernel MMD instead (BRAC's other
primal option; ``agent.mmd_kernel`` 'laplacian' or 'gaussian', bandwidth ``agent.mmd_sigma`` 20)."""
from offrl.algos.brac import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "brac"
    c.num_steps = 500_000
    c.agent = default_agent_config()
    c.agent.variant = "vp"
    return c
