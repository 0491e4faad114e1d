"""ARQ+s: ARQ with the implicit policy over score-model candidates (configs/arq.py with the word
'implicit'; the same words apply, e.g. --config=configs/arq_s.py:antmaze,cpu). Each evaluation step
samples 30 candidates (500 PC steps) and their ODE likelihoods: evaluations cost far more than
ARQ+pi's."""
from configs.arq import get_config as arq_config


def get_config(arg: str = ""):
    return arq_config(",".join(w for w in ("implicit", arg) if w))
