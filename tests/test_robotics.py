"""D4RL AntMaze / Adroit / Kitchen through Minari + gymnasium-robotics, on tiny datasets made here.

Each family gets a Minari dataset of two short random episodes recorded from its gymnasium-robotics
environment (the environments Minari's D4RL ports name), stored under a ``D4RL/<domain>/...`` id.
The tests then load it as a user would (``offrl.data.load_dataset``), recover the evaluation env,
evaluate a policy in it through the one evaluation loop, and check the D4RL reference scores.
"""
import copy
import warnings

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.data import load_dataset, robotics
from offrl.data.preprocess import Preprocessing
from offrl.data.scores import D4RL_PORT_CONVENTION, D4RL_REFERENCE, normalized_score
from offrl.evaluation import evaluate
from test_d4rl import write_d4rl

pytest.importorskip("gymnasium_robotics")  # installed by .[dev]; skip only where someone installed without it

STEPS = 12  # per episode: keeps each family under a few seconds
FAMILIES = {  # domain: (env id, make kwargs as Minari's D4RL ports store them)
    "antmaze": ("AntMaze_UMaze-v4", dict(continuing_task=True, reset_target=False)),
    "pen": ("AdroitHandPen-v1", {}),
    "door": ("AdroitHandDoor-v1", {}),
    "hammer": ("AdroitHandHammer-v1", {}),
    "relocate": ("AdroitHandRelocate-v1", {}),
    "kitchen": ("FrankaKitchen-v1", dict(tasks_to_complete=["microwave", "kettle", "light switch", "slide cabinet"])),
}


def record_tiny(domain, root, monkeypatch):
    """Write D4RL/<domain>/tiny-v0: two random episodes of STEPS steps; returns (id, first reset observation)."""
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    robotics.ensure_robotics()
    env_id, kw = FAMILIES[domain]
    env = minari.DataCollector(gym.make(env_id, max_episode_steps=STEPS, **kw))
    env.action_space.seed(0)
    first = None
    for ep in range(2):
        obs, _ = env.reset(seed=ep)
        first = copy.deepcopy(obs) if first is None else first  # Kitchen reuses its observation arrays
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            done = term or trunc
    did = f"D4RL/{domain}/tiny-v0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env.create_dataset(did, eval_env=gym.make(env_id, max_episode_steps=STEPS, **kw).spec,
                           algorithm_name="random", author="offrl tests", description="tiny test dataset",
                           ref_min_score=-123.0, ref_max_score=456.0)  # Minari-side values D4RL's replace
    env.close()
    return did, first


@pytest.mark.parametrize("domain", list(FAMILIES))
def test_load_recover_env_evaluate_and_score(domain, tmp_path, monkeypatch):
    did, first = record_tiny(domain, tmp_path, monkeypatch)
    data, info = load_dataset(did, download=False)
    env_id, kw = FAMILIES[domain]

    # observations: flat, identical to gymnasium's own flattening of the env's dict observation
    raw_env = gym.make(env_id, **kw)
    flat_first = gym.spaces.flatten(raw_env.observation_space, first)
    raw_env.close()
    assert data.size == 2 * STEPS and info.obs_dim == flat_first.shape[0]
    np.testing.assert_allclose(np.asarray(data.observations[0]), flat_first, rtol=1e-6, atol=1e-6)
    assert float(data.timeouts[STEPS - 1]) == 1.0 or float(data.terminals[STEPS - 1]) == 1.0
    assert not np.array_equal(np.asarray(data.observations[0]), np.asarray(data.observations[STEPS - 1]))

    # the recovered evaluation env observes the same flat vector
    assert info.env_id == env_id
    env = gym.make(info.env_spec)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (info.obs_dim,) and env.action_space.shape == (info.act_dim,)
    np.testing.assert_allclose(obs, flat_first, rtol=1e-6, atol=1e-6)
    if domain == "antmaze":
        assert env.unwrapped.continuing_task is False  # an episode ends at the goal: return 1 or 0
    env.close()

    # D4RL's references replace the dataset's own metadata for D4RL/* ids
    assert (info.ref_min_score, info.ref_max_score) == D4RL_REFERENCE[domain]
    assert info.score_convention == D4RL_PORT_CONVENTION

    # one policy (zero actions in [-1, 1] = the box's centre) evaluated by the one evaluation loop
    pre = Preprocessing(np.zeros(info.obs_dim, np.float32), np.ones(info.obs_dim, np.float32),
                        info.action_low, info.action_high)

    def policy_fn(states, o, keys):
        return jnp.zeros(o.shape[:2] + (info.act_dim,))

    res = evaluate(policy_fn, {"w": jnp.zeros((1, 1))}, info.env_spec, 2, 0, pre, info.ref_min_score,
                   info.ref_max_score, max_steps=5)
    assert res.returns.shape == (1, 2) and np.all(np.isfinite(res.returns))
    lo, hi = D4RL_REFERENCE[domain]
    np.testing.assert_allclose(res.normalized, 100 * (res.raw - lo) / (hi - lo))


def test_antmaze_return_is_one_at_the_goal_and_scores_100(tmp_path, monkeypatch):
    """D4RL's AntMaze convention: reaching the goal gives return 1 and ends the episode -> normalised 100."""
    import mujoco

    did, _ = record_tiny("antmaze", tmp_path, monkeypatch)
    _, info = load_dataset(did, download=False)
    env = gym.make(info.env_spec)
    env.reset(seed=0)
    u = env.unwrapped
    u.ant_env.data.qpos[:2] = u.goal  # put the ant on the goal
    mujoco.mj_forward(u.ant_env.model, u.ant_env.data)
    _, r, term, trunc, _ = env.step(np.zeros(info.act_dim))
    assert r == 1.0 and term and not trunc
    assert normalized_score(r, info.ref_min_score, info.ref_max_score) == 100.0
    env.close()


def test_flatten_matches_gymnasium_on_nested_dicts():
    robotics.ensure_robotics()
    env = gym.make("FrankaKitchen-v1", tasks_to_complete=["kettle", "microwave"])
    o1 = copy.deepcopy(env.reset(seed=0)[0])  # FrankaKitchen reuses its observation arrays between calls
    o2 = copy.deepcopy(env.step(env.action_space.sample())[0])
    assert not np.array_equal(o1["observation"], o2["observation"])
    batch = {k: ({kk: np.stack([o1[k][kk], o2[k][kk]]) for kk in v} if isinstance(v, dict)
                 else np.stack([o1[k], o2[k]])) for k, v in o1.items()}
    flat = robotics.flatten_observations(env.observation_space, batch)
    for i, o in enumerate((o1, o2)):
        np.testing.assert_array_equal(flat[i], gym.spaces.flatten(env.observation_space, o).astype(np.float32))
    env.close()
    with pytest.raises(ValueError, match="Dict"):
        robotics.flatten_observations(env.observation_space, np.zeros((2, 3)))


@pytest.mark.parametrize("task,dims", [("pen", (45, 24)), ("door", (39, 28)), ("hammer", (46, 26)),
                                       ("relocate", (39, 30))])
def test_legacy_adroit_hdf5_maps_to_gymnasium_robotics(task, dims, tmp_path):
    path = str(tmp_path / f"{task}-human-v1.hdf5")
    write_d4rl(path, obs_dim=dims[0], act_dim=dims[1])
    data, info = load_dataset(path)
    assert info.env_id == robotics.ADROIT_ENVS[task]
    assert (info.ref_min_score, info.ref_max_score) == D4RL_REFERENCE[task]
    assert data.size == 13 and data.observations.shape[1] == dims[0]
    env = gym.make(info.env_id)
    assert env.observation_space.shape == (dims[0],)
    env.close()


@pytest.mark.parametrize("name,dims", [("antmaze-umaze-v2", (29, 8)), ("kitchen-complete-v0", (60, 9))])
def test_legacy_antmaze_and_kitchen_hdf5_say_there_is_no_env(name, dims, tmp_path):
    path = str(tmp_path / f"{name}.hdf5")
    write_d4rl(path, obs_dim=dims[0], act_dim=dims[1])
    with pytest.raises(ValueError, match="no gymnasium-robotics environment matches") as e:
        load_dataset(path)
    assert "D4RL/" in str(e.value)


@pytest.mark.parametrize("domain", ["antmaze", "kitchen"])
def test_a_run_trains_and_scores_on_a_dict_observation_domain(domain, tmp_path, monkeypatch):
    """The whole path as a user runs it (config -> load -> preprocess -> train -> evaluate in the recovered env)."""
    import json
    import os

    from conftest import tiny_config
    from offrl.runner import run_experiment

    did, _ = record_tiny(domain, tmp_path / "data", monkeypatch)
    cfg = tiny_config("td3bc", steps=4, num_seeds=1)
    cfg.dataset = did
    cfg.download = False
    cfg.eval_interval = 4
    run_experiment(cfg, str(tmp_path / "run"), out=open(os.devnull, "w"))
    with open(tmp_path / "run" / "results.json") as f:
        res = json.load(f)
    row = res["rows"][0] if "rows" in res else res
    lo, hi = D4RL_REFERENCE[domain]
    assert (row["ref_min_score"], row["ref_max_score"]) == (lo, hi)
    np.testing.assert_allclose(row["per_seed_normalized"], 100 * (np.asarray(row["per_seed_raw"]) - lo) / (hi - lo))
