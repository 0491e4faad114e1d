"""ARQ+pi: ARQ with the AWR policy (configs/arq.py with the word 'explicit'; the same words apply,
e.g. --config=configs/arq_pi.py:antmaze,cpu)."""
from configs.arq import get_config as arq_config


def get_config(arg: str = ""):
    return arq_config(",".join(w for w in ("explicit", arg) if w))
