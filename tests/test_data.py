"""Episode -> transition conversion, sampling, preprocessing and scores, against hand computations."""
import jax
import ml_collections
import numpy as np
import pytest

from offrl.data.dataset import DatasetInfo, discounted_returns, episodes_to_transitions, sample, to_device
from offrl.data.preprocess import preprocess
from offrl.data.scores import D4RL_CONVENTION, d4rl_task_name, normalized_score, normalized_spread, reference_scores


def _episode(t, obs0, terminated=False, truncated=False):
    obs = np.arange(obs0, obs0 + t + 1, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    act = np.arange(t, dtype=np.float32)[:, None] + 10 * obs0
    term = np.zeros(t, bool)
    trunc = np.zeros(t, bool)
    term[-1] = terminated
    trunc[-1] = truncated
    return dict(observations=obs, actions=act, rewards=np.arange(1, t + 1, dtype=np.float64),
                terminations=term, truncations=trunc)


def test_alignment_terminals_timeouts_next_actions_returns():
    eps = [_episode(3, 0, terminated=True), _episode(2, 100, truncated=True), _episode(2, 200)]
    arr, ep_ret, ep_len = episodes_to_transitions(eps, discount=0.5)
    # T+1 observations for T actions: s_t = obs[:-1], s_{t+1} = obs[1:]
    np.testing.assert_array_equal(arr["observations"][:, 0], [0, 1, 2, 100, 101, 200, 201])
    np.testing.assert_array_equal(arr["next_observations"][:, 0], [1, 2, 3, 101, 102, 201, 202])
    # the terminal ends episode 0; the truncation and the cut-off end of episode 2 are timeouts
    np.testing.assert_array_equal(arr["terminals"], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(arr["timeouts"], [0, 0, 0, 0, 1, 0, 1])
    # next action inside the episode; the last transition repeats its own action
    np.testing.assert_array_equal(arr["next_actions"][:, 0], [1, 2, 2, 1001, 1001, 2001, 2001])
    # returns-to-go with discount 0.5, reset at episode ends: rewards (1,2,3), (1,2), (1,2)
    np.testing.assert_allclose(arr["returns"], [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 2.0, 2, 2.0, 2])
    np.testing.assert_array_equal(arr["episode_ids"], [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(ep_ret, [6, 3, 3])
    np.testing.assert_array_equal(ep_len, [3, 2, 2])


def test_discounted_returns_reset_at_every_end_and_are_zero_beyond_the_data():
    # episode (1, 2) ends at row 1; rows 2-3 are an unfinished episode: nothing is added after the last row
    g = discounted_returns(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, True, False, False]), 0.5)
    np.testing.assert_allclose(g, [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4])


def test_flat_fields_empty_episodes_and_a_step_both_terminal_and_truncated():
    one_d = dict(observations=np.array([0.0, 1.0, 2.0]), actions=np.array([0.5, -0.5]), rewards=np.array([1.0, 2.0]),
                 terminations=np.array([False, True]), truncations=np.array([False, True]))
    empty = dict(observations=np.zeros((1, 1)), actions=np.zeros((0, 1)), rewards=np.zeros(0),
                 terminations=np.zeros(0, bool), truncations=np.zeros(0, bool))
    unfinished = dict(_episode(2, 100), observations=np.array([[100.0], [101.0], [102.0]]), actions=np.array([[0.0], [1.0]]))
    arr, ep_ret, ep_len = episodes_to_transitions([one_d, empty, unfinished], discount=0.5)
    assert arr["observations"].shape == (4, 1) and arr["actions"].shape == (4, 1)
    np.testing.assert_array_equal(arr["observations"][:, 0], [0, 1, 100, 101])
    np.testing.assert_array_equal(arr["actions"][:, 0], [0.5, -0.5, 0, 1])
    # terminated and truncated at once is a terminal (no bootstrapping); the empty episode is skipped, not the end
    np.testing.assert_array_equal(arr["terminals"], [0, 1, 0, 0])
    np.testing.assert_array_equal(arr["timeouts"], [0, 0, 0, 1])
    np.testing.assert_array_equal(arr["episode_ids"], [0, 0, 1, 1])
    np.testing.assert_allclose(ep_ret, [3, 3])
    np.testing.assert_array_equal(ep_len, [2, 2])


def test_misaligned_episode_is_rejected():
    ep = _episode(3, 0, terminated=True)
    ep["observations"] = ep["observations"][:-1]  # T observations for T actions
    with pytest.raises(ValueError, match="T\\+1 observations"):
        episodes_to_transitions([ep])


def test_sample_is_uniform_and_keyed():
    arr, *_ = episodes_to_transitions([_episode(50, 0, terminated=True)])
    data = to_device(arr)
    b1 = sample(jax.random.PRNGKey(0), data, 4000)
    b2 = sample(jax.random.PRNGKey(0), data, 4000)
    np.testing.assert_array_equal(np.asarray(b1.observations), np.asarray(b2.observations))
    # fields stay row-aligned: next observation is observation + 1 in this episode
    np.testing.assert_array_equal(np.asarray(b1.next_observations) - 1, np.asarray(b1.observations))
    counts = np.bincount(np.asarray(b1.observations[:, 0]).astype(int), minlength=50)
    assert counts.min() > 40 and counts.max() < 130  # 80 expected per index


def test_sample_records_the_dataset_row_of_every_batch_row():
    arr, *_ = episodes_to_transitions([_episode(50, 0, terminated=True), _episode(20, 100)])
    data = to_device(arr)
    assert data.index is None  # a dataset has no index; only a sampled batch does
    batch = sample(jax.random.PRNGKey(3), data, 500)
    idx = np.asarray(batch.index)
    assert batch.index.dtype == np.int32 and idx.min() >= 0 and idx.max() < data.size and len(set(idx)) > 50
    for field in ("observations", "actions", "next_observations", "terminals", "episode_ids"):
        np.testing.assert_array_equal(np.asarray(getattr(batch, field)), np.asarray(getattr(data, field))[idx])
    again = sample(jax.random.PRNGKey(4), batch, 100)  # rows of what was sampled from, not of the original dataset
    np.testing.assert_array_equal(np.asarray(again.observations), np.asarray(batch.observations)[np.asarray(again.index)])


def _cfg(**kw):
    """The preprocessing keys of a config: no normalisation unless asked."""
    return ml_collections.ConfigDict(dict(dict(normalize_obs=False, obs_norm_eps=1e-3, reward_normalization="none",
                                               reward_scale=1.0, reward_bias=0.0, discount=0.5), **kw))


def _info(arr, ep_ret, low=-2.0, high=2.0):
    return DatasetInfo("x", "Hopper-v5", 2, 1, np.array([low], np.float32), np.array([high], np.float32),
                       ep_ret, np.ones_like(ep_ret), None, None)


def test_preprocess_normalises_obs_rescales_actions_and_rewards():
    arr, ep_ret, _ = episodes_to_transitions([_episode(3, 0, terminated=True), _episode(2, 100, truncated=True)], 0.5)
    cfg = _cfg(normalize_obs=True, reward_normalization="traj_return", reward_scale=2.0, reward_bias=-1.0)
    arr["actions"] = np.array([[-2.0], [0.0], [2.0], [1.0], [-1.0]], np.float32)
    data, pre = preprocess(to_device(arr), _info(arr, ep_ret), cfg)
    obs = arr["observations"]
    np.testing.assert_allclose(np.asarray(data.observations), (obs - obs.mean(0)) / (obs.std(0) + 1e-3), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(data.actions)[:, 0], [-1, 0, 1, 0.5, -0.5])
    np.testing.assert_allclose(pre.env_actions(np.asarray(data.actions)), arr["actions"], atol=1e-6)
    r = arr["rewards"] * 1000.0 / (6 - 3) * 2.0 - 1.0  # episode returns 6 and 3
    np.testing.assert_allclose(np.asarray(data.rewards), r, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(data.returns)[:3], [r[0] + 0.5 * r[1] + 0.25 * r[2], r[1] + 0.5 * r[2], r[2]], rtol=1e-5)


@pytest.mark.parametrize("low,high", [(-1.0, 1.0), (-1.0, 2.0), (-2.0, 1.0)])
def test_action_box_is_mapped_to_unit_box_and_back(low, high):
    arr, ep_ret, _ = episodes_to_transitions([_episode(3, 0, terminated=True)])
    arr["actions"] = np.array([[low], [(low + high) / 2], [high]], np.float32)
    arr["next_actions"] = np.array([[(low + high) / 2], [high], [high]], np.float32)
    data, pre = preprocess(to_device(arr), _info(arr, ep_ret, low, high), _cfg())
    np.testing.assert_allclose(np.asarray(data.actions)[:, 0], [-1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.asarray(data.next_actions)[:, 0], [0, 1, 1], atol=1e-6)
    # the policy's actions leave [-1, 1] clipped: never outside the environment's box
    np.testing.assert_allclose(pre.env_actions(np.array([[-3.0], [0.0], [5.0]])), [[low], [(low + high) / 2], [high]])
    np.testing.assert_allclose(pre.policy_actions(arr["actions"]), np.asarray(data.actions), atol=1e-6)
    # normalize_obs=False leaves observations as they are, and evaluation's map with them
    np.testing.assert_array_equal(np.asarray(data.observations), arr["observations"])
    np.testing.assert_array_equal(pre.observations(arr["next_observations"]), arr["next_observations"])


def test_minmax_rewards_and_returns_restart_at_timeouts():
    """BRAC+'s reward_normalization='minmax': rewards into [0, 1] over the dataset, then scale and bias; the
    returns-to-go restart after a timeout as after a terminal."""
    eps = [_episode(3, 0, truncated=True), _episode(2, 100, terminated=True)]
    eps[0]["rewards"] = np.array([-1.0, 3.0, 1.0])
    eps[1]["rewards"] = np.array([2.0, 0.0])
    arr, ep_ret, _ = episodes_to_transitions(eps, 0.5)
    cfg = _cfg(normalize_obs=True, reward_normalization="minmax", reward_scale=2.0, reward_bias=-1.0)
    data, _ = preprocess(to_device(arr), _info(arr, ep_ret), cfg)
    r = (np.array([-1.0, 3.0, 1.0, 2.0, 0.0]) + 1.0) / 4.0 * 2.0 - 1.0
    np.testing.assert_allclose(np.asarray(data.rewards), r, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data.returns), [r[0] + 0.5 * r[1] + 0.25 * r[2], r[1] + 0.5 * r[2], r[2],
                                                          r[3] + 0.5 * r[4], r[4]], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("low,high", [(-np.inf, 1.0), (-1.0, np.inf)])
def test_a_half_unbounded_action_box_is_refused(low, high):
    arr, ep_ret, _ = episodes_to_transitions([_episode(3, 0, terminated=True)])
    with pytest.raises(ValueError, match="unbounded action space"):
        preprocess(to_device(arr), _info(arr, ep_ret, low, high), _cfg())


def test_scores_and_spread_without_offset():
    lo, hi, conv = reference_scores("mujoco/hopper/medium-v0", None, None)
    assert (lo, hi, conv) == (-20.272305, 3234.3, D4RL_CONVENTION)
    assert reference_scores("mujoco/hopper/medium-v0", 0.0, 10.0)[:2] == (0.0, 10.0)
    assert reference_scores("somebody/else-v0", None, None)[0] is None
    np.testing.assert_allclose(normalized_score([hi, lo, (hi + lo) / 2], lo, hi), [100, 0, 50])
    # a spread is scaled, never offset: std 32.545... raw = 1 normalised point
    np.testing.assert_allclose(normalized_spread((hi - lo) / 100, lo, hi), 1.0)
    assert np.isnan(normalized_score(1.0, None, None))
    # half a reference is none: no score, and metadata with one side falls back to the task's D4RL returns
    assert np.isnan(normalized_score(1.0, 0.0, None)) and np.isnan(normalized_spread(1.0, None, 10.0))
    assert reference_scores("mujoco/hopper/medium-v0", 0.0, None) == (lo, hi, D4RL_CONVENTION)
    assert reference_scores("mujoco/hopper/medium-v0", None, 10.0)[:2] == (lo, hi)
    assert reference_scores("somebody/else-v0", None, None) == (None, None, "none")
    # the task of a legacy file name, of a two-part id, and no task for another namespace's
    assert [d4rl_task_name(n) for n in ("hopper_medium-v2", "Walker2d_medium_replay", "mujoco/hopper",
                                        "somebody/hopper", "hopper")] == ["hopper", "walker2d", "hopper", None, "hopper"]


def test_d4rl_ports_use_d4rl_references_over_their_metadata():
    from offrl.data.scores import D4RL_PORT_CONVENTION, d4rl_task_name

    # D4RL/* ids: d4rl/infos.py's values even when the dataset's metadata holds others
    assert reference_scores("D4RL/door/expert-v2", 1.0, 2.0) == (-56.512833, 2880.5693087298737, D4RL_PORT_CONVENTION)
    assert reference_scores("D4RL/antmaze/umaze-v1", 0.0, 700.0)[:2] == (0.0, 1.0)
    assert reference_scores("D4RL/kitchen/mixed-v2", None, None)[:2] == (0.0, 4.0)
    # other ids keep their metadata; legacy file names find their task
    assert reference_scores("somebody/pen/expert-v0", 1.0, 2.0)[:2] == (1.0, 2.0)
    assert [d4rl_task_name(n) for n in ("pen-human-v1", "antmaze-umaze-diverse-v2", "kitchen-complete-v0",
                                        "offrl/hopper/medium-v0")] == ["pen", "antmaze", "kitchen", None]


def test_a_remote_minari_dataset_is_downloaded_once_then_read_from_disk(tmp_path, monkeypatch, caplog):
    """The online path, with Minari's download replaced by a writer of the same dataset into the data root
    (nothing can be fetched here): a Minari id not on disk is downloaded and loaded, then read from disk; an
    offrl suite id is never sent to Minari's server."""
    import minari

    from offrl.data import DatasetNotFoundError, load_dataset
    from offrl.data.minari_io import open_minari, write_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episodes = []
    for i, t in enumerate((4, 6)):
        episodes.append(dict(observations=np.full((t + 1, 11), i, np.float32), actions=np.zeros((t, 3), np.float32),
                             rewards=np.full(t, 10.0 * (i + 1)), terminations=np.eye(t, dtype=bool)[-1],
                             truncations=np.zeros(t, bool)))
    fetched = []

    def download_dataset(dataset_id, *args, **kwargs):
        fetched.append(dataset_id)
        write_minari(dataset_id, episodes, "Hopper-v5", description="as downloaded")

    monkeypatch.setattr(minari, "download_dataset", download_dataset)
    for _ in range(2):
        data, info = load_dataset("mujoco/hopper/simple-v0")
        assert data.size == 10 and list(info.episode_returns) == [40.0, 120.0] and info.env_id == "Hopper-v5"
        assert (info.ref_min_score, info.ref_max_score) == (-20.272305, 3234.3)  # D4RL's, found from the task
    assert fetched == ["mujoco/hopper/simple-v0"]
    with pytest.raises(DatasetNotFoundError, match="built locally, not downloaded"):
        open_minari("offrl/nothing/here-v0", download=True)
    assert fetched == ["mujoco/hopper/simple-v0"]

    # offline: Hugging Face's per-request retry warnings stay quiet (the error says it once) and its level is restored
    import logging

    from huggingface_hub.utils import logging as hub_logging

    def offline(dataset_id, *args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("'[Errno -2]' thrown while requesting GET ...")
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(minari, "download_dataset", offline)
    before = hub_logging.get_verbosity()
    with caplog.at_level(logging.WARNING), pytest.raises(DatasetNotFoundError, match="could not be downloaded"):
        open_minari("mujoco/hopper/expert-v0")
    assert not [r for r in caplog.records if "thrown while requesting" in r.getMessage()]
    assert hub_logging.get_verbosity() == before
