"""BEAR-QL (Kumar et al. 2019) with the reference code's settings: batch 100, 1M updates, no state
normalisation, Laplacian MMD (sigma 20, 5 samples), epsilon 0.05, 100k warm-up updates.
``--config=configs/bear.py:<words>`` takes the same words as configs/bearpp.py (``gp``, ``cr``, a task, ``cpu``)."""
from configs.td3bcpp_presets import apply_words
from offrl.algos.bear import default_agent_config
from offrl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "bear"
    c.batch_size = 100
    c.agent = default_agent_config()
    return apply_words(c, arg, has_alpha=False)
