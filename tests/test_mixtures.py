"""Mixtures (Appendix A recipe): exact to the transition, on episode lists and on Minari datasets."""
import numpy as np
import pytest

from offrl.data import mixtures


def synthetic_episodes(lengths, obs_dim=11, act_dim=3, offset=0.0, last_terminal=True):
    """Episodes whose every transition is identifiable: reward = offset + global transition index."""
    eps, g = [], 0
    for i, t in enumerate(lengths):
        term = np.zeros(t, bool)
        trunc = np.zeros(t, bool)
        if last_terminal and i % 2 == 0:
            term[-1] = True
        else:
            trunc[-1] = True
        eps.append(dict(
            observations=np.full((t + 1, obs_dim), offset + g, np.float32) + np.arange(t + 1, dtype=np.float32)[:, None],
            actions=np.full((t, act_dim), 0.5, np.float32),
            rewards=offset + g + np.arange(t, dtype=np.float64),
            terminations=term, truncations=trunc,
        ))
        g += t
    return eps


def flat(eps, key):
    return np.concatenate([ep[key] for ep in eps])


@pytest.mark.parametrize("percent", [10, 30, 50, 70, 33])
def test_contaminate_exact(percent):
    base = synthetic_episodes([7, 13, 5, 20, 9, 6])  # 60 transitions
    other = synthetic_episodes([4, 11, 30, 15], offset=1000.0)  # 60 transitions
    mixed = mixtures.contaminate(base, other, percent)
    n = 60
    k = {10: 6, 30: 18, 50: 30, 70: 42, 33: 19}[percent]  # int(n * X/100), rounded down (33%: 19.8 -> 19)
    rew = flat(mixed, "rewards")
    assert len(rew) == n == mixtures.num_transitions(mixed)
    np.testing.assert_array_equal(rew[: n - k], np.arange(n - k))
    np.testing.assert_array_equal(rew[n - k:], 1000.0 + np.arange(k))
    for ep in mixed:  # every episode stays well formed and ends in a terminal or a truncation
        t = len(ep["actions"])
        assert ep["observations"].shape == (t + 1, 11)
        assert ep["terminations"][-1] or ep["truncations"][-1]
        assert not (ep["terminations"][:-1].any() or ep["truncations"][:-1].any())


@pytest.mark.parametrize("percent", [10, 30, 70])
def test_contaminate_with_the_tail_of_cloned_data(percent):
    """expert-cloned-X takes the LAST X% of the cloned dataset (the reference script's cloned[::-1][:k]; D4RL's
    cloned agent's trajectories sit in the second half), the head of the base."""
    base = synthetic_episodes([7, 13, 5, 20, 9, 6])  # 60
    other = synthetic_episodes([4, 11, 30, 15], offset=1000.0)  # 60
    assert mixtures.part_taken("D4RL/door/cloned-v2") == mixtures.part_taken("cloned") == "tail"
    assert mixtures.part_taken("random") == mixtures.part_taken("offrl/hopper/medium-v0") == "head"
    mixed = mixtures.contaminate(base, other, percent, part="tail")
    k = int(60 * percent / 100)
    rew = flat(mixed, "rewards")
    np.testing.assert_array_equal(rew[: 60 - k], np.arange(60 - k))
    np.testing.assert_array_equal(rew[60 - k:], 1000.0 + np.arange(60 - k, 60))  # same set as cloned[::-1][:k]
    first_tail = mixed[len(mixtures.take_transitions(base, 60 - k))]
    # an episode cut at its start begins mid-way: its observations are the real ones from that point
    assert len(first_tail["observations"]) == len(first_tail["actions"]) + 1
    starts = np.cumsum([0, 4, 11, 30, 15])
    j = int(np.searchsorted(starts, 60 - k, side="right")) - 1
    np.testing.assert_array_equal(first_tail["observations"], other[j]["observations"][60 - k - starts[j]:])
    with pytest.raises(ValueError, match="part"):
        mixtures.contaminate(base, other, percent, part="middle")


def test_last_transitions_keeps_episode_ends():
    eps = synthetic_episodes([10, 10, 5])  # rewards 0..24
    tail = mixtures.last_transitions(eps, 12)
    assert [len(e["actions"]) for e in tail] == [7, 5]
    np.testing.assert_array_equal(flat(tail, "rewards"), np.arange(13, 25))
    np.testing.assert_array_equal(tail[0]["observations"], eps[1]["observations"][3:])  # 8 observations, 7 steps
    assert tail[0]["truncations"][-1] and tail[1]["terminations"][-1]  # natural ends kept
    assert mixtures.num_transitions(mixtures.last_transitions(eps, 0)) == 0
    with pytest.raises(ValueError):
        mixtures.last_transitions(eps, 26)


def test_cut_marks_truncation_and_keeps_natural_ends():
    base = synthetic_episodes([10, 10])
    cut = mixtures.take_transitions(base, 15)
    assert [len(e["actions"]) for e in cut] == [10, 5]
    assert cut[0]["terminations"][-1] and not cut[0]["truncations"][-1]  # natural terminal kept
    assert cut[1]["truncations"][-1] and not cut[1]["terminations"][-1]  # cut -> timeout
    np.testing.assert_array_equal(cut[1]["observations"], base[1]["observations"][:6])
    at_boundary = mixtures.take_transitions(base, 10)
    assert len(at_boundary) == 1 and at_boundary[0]["terminations"][-1] and not at_boundary[0]["truncations"][-1]
    with pytest.raises(ValueError):
        mixtures.take_transitions(base, 21)
    with pytest.raises(ValueError):
        mixtures.contaminate(base, base, 120)


def test_mix_minari_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from offrl.data.minari_io import load_minari, write_minari

    base = synthetic_episodes([30, 25, 45])  # 100
    other = synthetic_episodes([12, 40, 48], offset=1000.0)
    write_minari("test/hopper/base-v0", base, "Hopper-v5", -20.0, 3000.0, "base")
    write_minari("test/hopper/other-v0", other, "Hopper-v5", 0.0, 1.0, "other")
    mixtures.mix_minari("test/hopper/base-v0", "test/hopper/other-v0", 30, "test/hopper/mixed-v0", download=False)
    data, info = load_minari("test/hopper/mixed-v0", download=False)
    rew = np.asarray(data.rewards)
    np.testing.assert_array_equal(rew[:70], np.arange(70))
    np.testing.assert_array_equal(rew[70:], 1000.0 + np.arange(30))
    assert (info.ref_min_score, info.ref_max_score) == (-20.0, 3000.0)  # from the base dataset
    assert info.env_id == "Hopper-v5"
    # the cut expert episode (rows 55..69) ends as a timeout, the cut other episode too
    assert np.asarray(data.timeouts)[69] == 1 and np.asarray(data.terminals)[69] == 0
    assert np.asarray(data.timeouts)[-1] == 1
    with pytest.raises(FileExistsError):
        mixtures.mix_minari("test/hopper/base-v0", "test/hopper/other-v0", 30, "test/hopper/mixed-v0", download=False)
    mixtures.concat_minari(["test/hopper/base-v0", "test/hopper/other-v0"], "test/hopper/both-v0", download=False)
    both, _ = load_minari("test/hopper/both-v0", download=False)
    assert both.size == 200
    # a cloned source gives its tail by default (the reference script's rule: 'cloned' in the name)
    write_minari("test/hopper/cloned-v0", other, "Hopper-v5", 0.0, 1.0, "cloned")
    mixtures.mix_minari("test/hopper/base-v0", "test/hopper/cloned-v0", 30, "test/hopper/ec-v0", download=False)
    ec, _ = load_minari("test/hopper/ec-v0", download=False)
    np.testing.assert_array_equal(np.asarray(ec.rewards)[70:], 1000.0 + np.arange(70, 100))
    mixtures.mix_minari("test/hopper/base-v0", "test/hopper/cloned-v0", 30, "test/hopper/ech-v0", download=False,
                        part="head")
    ech, _ = load_minari("test/hopper/ech-v0", download=False)
    np.testing.assert_array_equal(np.asarray(ech.rewards)[70:], 1000.0 + np.arange(30))


def test_boundaries_none_all_one_step_and_empty_episodes():
    base = synthetic_episodes([7, 13, 5, 20, 9, 6])  # 60
    other = synthetic_episodes([4, 11, 30, 15], offset=1000.0)  # 60
    assert [mixtures.replaced_count(60, p) for p in (0, 100, 99.9)] == [0, 60, 59]
    for bad in (-1, 100.5):
        with pytest.raises(ValueError, match=r"\[0, 100\]"):
            mixtures.replaced_count(60, bad)
    # 0% is the base itself, 100% all of the other dataset's head or tail
    np.testing.assert_array_equal(flat(mixtures.contaminate(base, other, 0), "rewards"), np.arange(60))
    for part in ("head", "tail"):
        np.testing.assert_array_equal(flat(mixtures.contaminate(base, other, 100, part), "rewards"), 1000.0 + np.arange(60))
    # a cut that leaves one transition to the next episode; one-step and empty episodes are kept and skipped
    two = synthetic_episodes([10, 10])
    assert [len(e["actions"]) for e in mixtures.take_transitions(two, 11)] == [10, 1]
    one, five = synthetic_episodes([1, 5], offset=100.0)
    empty = dict(observations=np.zeros((1, 11), np.float32), actions=np.zeros((0, 3), np.float32),
                 rewards=np.zeros(0), terminations=np.zeros(0, bool), truncations=np.zeros(0, bool))
    taken = mixtures.take_transitions([two[0], empty, one, five], 13)
    assert [len(e["actions"]) for e in taken] == [10, 1, 2]
    np.testing.assert_array_equal(flat(taken, "rewards"), np.r_[np.arange(10), 100.0, 101.0, 102.0])
    # the last transitions starting exactly at an episode boundary, or one transition into an episode
    three = synthetic_episodes([10, 10, 5])
    assert [len(e["actions"]) for e in mixtures.last_transitions(three, 15)] == [10, 5]
    assert [len(e["actions"]) for e in mixtures.last_transitions(three, 24)] == [9, 10, 5]
