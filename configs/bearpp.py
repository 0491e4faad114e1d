"""BEAR++: BEAR-QL with the gradient penalty (lambda_GP 1, Table 7) and the critic-weighted MMD
constraint, both on. It is offrl/algos/bear.py with ``agent.gp`` / ``agent.cr`` enabled.

``--config=configs/bearpp.py:<words>``: a task (``hopper-ER3``) sets the dataset and lambda_GP;
``nogp`` / ``nocr`` for the ablation; ``cpu`` (see configs/td3bcpp_presets.py).
"""
from configs.bear import get_config as bear_config


def get_config(arg: str = ""):
    from configs.td3bcpp_presets import apply_words

    c = bear_config()
    c.algo = "bear"
    c.agent.gp.enabled = True
    c.agent.cr.enabled = True
    return apply_words(c, arg, has_alpha=False)
