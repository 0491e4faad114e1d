"""BEAR-QL (Kumar et al. 2019) with the authors' reference code's settings (github.com/aviralkumar2907/BEAR,
algos.py, run as its README's commands): batch 100, 1M updates, no state normalisation, Adam lr 1e-3
everywhere, Laplacian MMD (sigma 10, 5 samples), epsilon 0.05, 20k warm-up updates.
``--config=configs/bear.py:<words>`` takes the same words as configs/bearpp.py (``gp``, ``cr``, a task, ``cpu``);
a task also picks the kernel and sigma of ``offrl.algos.bear.MMD_PRESETS`` (Gaussian, sigma 20 for Adroit)."""
from configs.td3bcpp_presets import apply_words
from offrl.algos.bear import default_agent_config
from offrl.config import base_config


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "bear"
    c.batch_size = 100
    c.agent = default_agent_config()
    return apply_words(c, arg, has_alpha=False)
