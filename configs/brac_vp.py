"""BRAC-vp (Wu et al. 2019) with the defaults of its reference code (google-research
behavior_regularized_offline_rl: README, run_primal.sh, brac_primal_agent.py, bc_agent.py):
sampled KL (4 samples) to a cloned tanh-Gaussian behaviour policy (200, 200; 300k updates at
lr 5e-4 with the BC agent's entropy bonus), alpha 0.1, Q 2 x (300, 300) at lr 1e-3, policy
(200, 200) at lr 3e-4, no entropy term, num_steps 500k of which the first 20k train the policy on
the divergence only. ``--config.agent.divergence=mmd`` uses the reference's squared Laplacian MMD
(bandwidth ``agent.mmd_sigma`` 20). The previous policy lr, 3e-5, is ``--config.agent.actor_lr=3e-5``."""
from offrl.algos.brac import default_agent_config
from offrl.config import base_config


def get_config():
    c = base_config()
    c.algo = "brac"
    c.num_steps = 500_000  # run_primal.sh total_train_steps
    c.agent = default_agent_config()
    c.agent.variant = "vp"
    return c
