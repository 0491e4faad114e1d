"""CQL(H) with the authors' reference settings (github.com/aviralkumar2907/CQL, d4rl/rlkit/torch/sac/cql.py,
README locomotion flags): min-Q weight 5, 10 sampled actions, no Lagrange, actor lr 1e-4, critic lr 3e-4,
temperature lr 1e-4, 40k BC warm-start updates, 3x256 MLPs.

``--config=configs/cql.py:antmaze`` is the reference's AntMaze recipe (examples/cql_antmaze_new.py with
``--lagrange_thresh=5.0 --min_q_weight=5.0``): Lagrange on with threshold 5, min-Q weight 5, rewards
(r - 0.5) * 4."""
from offrl.algos.cql import default_agent_config
from offrl.config import base_config

ANTMAZE = dict(lagrange=True, target_action_gap=5.0, min_q_weight=5.0)
ANTMAZE_REWARD = dict(reward_scale=4.0, reward_bias=-2.0)  # (r - 0.5) * 4


def get_config(arg: str = ""):
    c = base_config()
    c.algo = "cql"
    c.agent = default_agent_config()
    for w in [w.strip() for w in (arg or "").split(",") if w.strip()]:
        if w == "antmaze":
            c.agent.update(ANTMAZE)
            c.update(ANTMAZE_REWARD)
        else:
            raise ValueError(f"unknown word '{w}' in --config=configs/cql.py:{arg}: the only preset is 'antmaze'")
    return c
