"""Legacy D4RL HDF5 import: episode split at terminals/timeouts, next observations, reference scores."""
import h5py
import numpy as np
import pytest

from offrl.data import d4rl
from offrl.data.scores import D4RL_REFERENCE


def write_d4rl(path, next_obs=True, timeouts=True, infos=True, obs_dim=11, act_dim=3):
    """13 rows: episode A rows 0-4 ends terminal, B rows 5-9 ends in a timeout, C rows 10-12 unfinished."""
    n = 13
    obs = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, obs_dim), np.float32)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[4] = True
    tout[9] = True
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.tile(np.linspace(-1, 1, act_dim, dtype=np.float32), (n, 1))
        f["rewards"] = np.arange(n, dtype=np.float32) * 10
        f["terminals"] = term
        if timeouts:
            f["timeouts"] = tout
        if next_obs:
            f["next_observations"] = obs + 0.5  # distinguishable from the following row
        if infos:
            f["infos/qpos"] = np.zeros((n, 6), np.float32)
            f["infos/action_log_probs"] = np.zeros(n, np.float32)
            f["metadata/algorithm"] = "SAC"
    return path


def test_without_next_observations_follows_qlearning_dataset(tmp_path):
    path = write_d4rl(tmp_path / "hopper_medium-v2.hdf5", next_obs=False)
    data, info = d4rl.load_d4rl(str(path))
    rows = np.asarray(data.rewards) / 10
    # A: rows 0-4 all kept (terminal); B: timeout row 9 dropped; C: unfinished final row 12 dropped
    np.testing.assert_array_equal(rows, [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11])
    np.testing.assert_array_equal(np.asarray(data.terminals), [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(data.timeouts), [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1])
    nxt = np.asarray(data.next_observations)[:, 0]
    np.testing.assert_array_equal(nxt[:4], [1, 2, 3, 4])  # following row inside the episode
    np.testing.assert_array_equal(nxt[5:9], [6, 7, 8, 9])
    np.testing.assert_array_equal(nxt[9:], [11, 12])
    assert info.num_episodes == 3 and list(info.episode_lengths) == [5, 4, 2]
    assert (info.ref_min_score, info.ref_max_score) == D4RL_REFERENCE["hopper"]
    assert info.env_id == "Hopper-v5" and info.obs_dim == 11 and info.act_dim == 3


def test_with_next_observations_keeps_every_row(tmp_path):
    path = write_d4rl(tmp_path / "walker2d-expert-v2.hdf5", next_obs=True)
    data, info = d4rl.load_d4rl(str(path), env_id="Hopper-v5")  # shapes are Hopper's; scores follow the name
    assert data.size == 13
    np.testing.assert_array_equal(np.asarray(data.next_observations)[:, 0], np.arange(13) + 0.5)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(data.terminals)), [4])
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(data.timeouts)), [9, 12])
    np.testing.assert_array_equal(np.asarray(data.episode_ids), [0] * 5 + [1] * 5 + [2] * 3)
    assert (info.ref_min_score, info.ref_max_score) == D4RL_REFERENCE["walker2d"]
    # returns-to-go restart at every episode end
    assert float(data.returns[4]) == pytest.approx(40.0)


def test_v0_file_without_timeouts_and_task_argument(tmp_path):
    path = write_d4rl(tmp_path / "data.hdf5", next_obs=False, timeouts=False, infos=False)
    data, info = d4rl.load_d4rl(str(path), task="halfcheetah-medium-v0")
    # only the terminal splits: rows 0-4, then 5-12 unfinished (final row dropped)
    assert data.size == 12 and info.num_episodes == 2
    assert (info.ref_min_score, info.ref_max_score) == D4RL_REFERENCE["halfcheetah"]
    assert info.score_convention == "D4RL reference returns (task from the file name)"
    _, unknown = d4rl.load_d4rl(str(path))
    assert unknown.ref_max_score is None and unknown.env_id is None and unknown.score_convention == "none"
    # no environment to ask: the actions are taken to lie in [-1, 1]
    np.testing.assert_array_equal(unknown.action_low, -np.ones(3))
    np.testing.assert_array_equal(unknown.action_high, np.ones(3))


def test_column_vector_float_flags_and_short_timed_out_episodes(tmp_path):
    """Some legacy files keep rewards, terminals and timeouts as (N, 1) float columns; a timed-out episode of one
    row has no transition with a known successor, one of two rows has one."""
    n = 8
    obs = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 11))
    term = np.zeros((n, 1), np.float32)
    tout = np.zeros((n, 1), np.float32)
    tout[1] = 1  # rows 0-1 | 2 | 3-7: timeout, timeout, terminal
    tout[2] = 1
    term[7] = 1
    path = tmp_path / "hopper-medium-v0.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = np.zeros((n, 3))
        f["rewards"] = np.arange(n, dtype=np.float64)[:, None]
        f["terminals"] = term
        f["timeouts"] = tout
    data, info = d4rl.load_d4rl(str(path))
    assert data.observations.dtype == np.float32 and data.rewards.shape == (6,)
    np.testing.assert_array_equal(np.asarray(data.rewards), [0, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(data.next_observations)[:, 0], [1, 4, 5, 6, 7, 7])
    np.testing.assert_array_equal(np.asarray(data.terminals), [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(np.asarray(data.timeouts), [1, 0, 0, 0, 0, 0])
    assert list(info.episode_lengths) == [1, 5]


def test_convert_to_minari(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    from offrl.data.minari_io import load_minari

    path = write_d4rl(tmp_path / "hopper_medium_replay-v2.hdf5", next_obs=False)
    d4rl.d4rl_to_minari(str(path), "d4rl/hopper/test-v2")
    data, info = load_minari("d4rl/hopper/test-v2", download=False)
    direct, _ = d4rl.load_d4rl(str(path))
    for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(np.asarray(getattr(data, k)), np.asarray(getattr(direct, k)), err_msg=k)
    assert (info.ref_min_score, info.ref_max_score) == pytest.approx(D4RL_REFERENCE["hopper"])
    assert info.env_id == "Hopper-v5"
    # the written file itself ends the timed-out and the unfinished episode in a truncation, for other readers
    from offrl.data.minari_io import open_minari

    eps = list(open_minari("d4rl/hopper/test-v2", download=False).iterate_episodes())
    assert [(bool(e.terminations[-1]), bool(e.truncations[-1])) for e in eps] == [(True, False), (False, True), (False, True)]
    with pytest.raises(FileExistsError):
        d4rl.d4rl_to_minari(str(path), "d4rl/hopper/test-v2")


def test_not_a_d4rl_file(tmp_path):
    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        f["foo"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a D4RL dataset"):
        d4rl.load_d4rl(str(path))
