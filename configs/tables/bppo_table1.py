"""BPPO paper (Zhuang et al., ICLR 2023), Table 1, Gym locomotion rows: the D4RL normalised scores
it reports for CQL, TD3+BC, Onestep RL, IQL, its own BC and BPPO."""
from configs.tables import Protocol

TITLE = "BPPO paper, Table 1 (D4RL Gym locomotion, normalised score)"

# column name -> configs/<module>.py that reproduces it
COLUMNS = {"CQL": "cql", "TD3+BC": "td3bc", "Onestep RL": "onestep", "IQL": "iql", "BC": "bc", "BPPO": "bppo"}

PROTOCOL = Protocol(
    quote="BPPO is calculated by averaging mean returns over 10 evaluation trajectories and five random seeds.",
    seeds=5, eval_episodes=10, report_last=1,
    assumed="the final policy is scored; each column trains its own configured budget",
)

PAPER = {
    "halfcheetah-medium-v2": {"CQL": 44.0, "TD3+BC": 48.3, "Onestep RL": 48.4, "IQL": 47.4, "BC": 43.5, "BPPO": 44.0},
    "hopper-medium-v2": {"CQL": 58.5, "TD3+BC": 59.3, "Onestep RL": 59.6, "IQL": 66.3, "BC": 61.3, "BPPO": 93.9},
    "walker2d-medium-v2": {"CQL": 72.5, "TD3+BC": 83.7, "Onestep RL": 81.8, "IQL": 78.3, "BC": 74.2, "BPPO": 83.6},
    "halfcheetah-medium-replay-v2": {"CQL": 45.5, "TD3+BC": 44.6, "Onestep RL": 38.1, "IQL": 44.2, "BC": 40.1, "BPPO": 41.0},
    "hopper-medium-replay-v2": {"CQL": 95.0, "TD3+BC": 60.9, "Onestep RL": 97.5, "IQL": 94.7, "BC": 66.0, "BPPO": 92.5},
    "walker2d-medium-replay-v2": {"CQL": 77.2, "TD3+BC": 81.8, "Onestep RL": 49.5, "IQL": 73.9, "BC": 33.4, "BPPO": 77.6},
    "halfcheetah-medium-expert-v2": {"CQL": 91.6, "TD3+BC": 90.7, "Onestep RL": 93.4, "IQL": 86.7, "BC": 64.4, "BPPO": 92.5},
    "hopper-medium-expert-v2": {"CQL": 105.4, "TD3+BC": 98.0, "Onestep RL": 103.3, "IQL": 91.5, "BC": 64.9, "BPPO": 112.8},
    "walker2d-medium-expert-v2": {"CQL": 108.8, "TD3+BC": 110.1, "Onestep RL": 113.0, "IQL": 109.6, "BC": 107.7, "BPPO": 113.1},
}
