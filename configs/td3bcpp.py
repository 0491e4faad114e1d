"""TD3BC++ (paper: td3bc-pp-bear-pp-contaminated-datasets.md): TD3+BC with the gradient penalty
(lambda_GP 1, k 1, every 5 critic steps, 16 uniform actions per state) and the critic-weighted BC
term, both on. It is offrl/algos/td3bc.py with ``agent.gp`` / ``agent.cr`` enabled.

``--config=configs/td3bcpp.py:<words>``: a task (``hopper-expert-random-30``, ``walker2d-EM``)
picks the dataset and Table 7's alpha / lambda_GP; ``nogp`` / ``nocr`` give the Figure 8
ablation (TD3+BC+CR / TD3+BC+GP); ``fig11``; ``cpu`` (see configs/td3bcpp_presets.py).
"""
from configs.td3bcpp_presets import apply_words
from configs.td3bc import get_config as td3bc_config


def get_config(arg: str = ""):
    c = td3bc_config()
    c.agent.gp.enabled = True
    c.agent.cr.enabled = True
    return apply_words(c, arg, has_alpha=True)
