"""offrl/sweep.py: a grid's points and the order of its members, which every table row's label depends on."""
import ml_collections
import numpy as np
import pytest

from offrl.sweep import Members, label, members, parse_grid

SWEEPABLE = ("alpha", "tau", "actor_lr")


def config(grid="", seed=3, num_seeds=2):
    return ml_collections.ConfigDict(dict(algo="td3bc", grid=grid, seed=seed, num_seeds=num_seeds,
                                          agent=dict(alpha=2.5, tau=0.005, actor_lr=3e-4, policy_freq=2)))


def test_points_are_the_cartesian_product_in_the_order_written():
    points = parse_grid("agent.alpha=1,2.5,5 agent.tau=0.005,0.01", config(), SWEEPABLE)
    assert points == [{"agent.alpha": a, "agent.tau": t} for a in (1.0, 2.5, 5.0) for t in (0.005, 0.01)]
    assert parse_grid("  ", config(), SWEEPABLE) == [{}]
    assert parse_grid("agent.alpha=1,", config(), SWEEPABLE) == [{"agent.alpha": 1.0}]  # a trailing comma is no value


def test_members_are_point_major_with_the_seeds_inside():
    m = members(config("agent.alpha=1,5 agent.tau=0.1,0.2", seed=3, num_seeds=2), SWEEPABLE)
    assert m.size == 8 and m.seeds == [3, 4] and m.seed_list() == [3, 4] * 4
    h = m.hparams()
    np.testing.assert_array_equal(h["agent.alpha"], [1, 1, 1, 1, 5, 5, 5, 5])
    np.testing.assert_allclose(h["agent.tau"], [0.1, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.2])
    assert h["agent.alpha"].dtype == np.float32
    plain = members(config(num_seeds=3), SWEEPABLE)
    assert plain.points == [{}] and plain.hparams() == {} and plain.size == 3 and plain.seed_list() == [3, 4, 5]
    assert label({"agent.alpha": 2.5, "agent.tau": 0.005}) == "alpha=2.5, tau=0.005" and label({}) == "-"
    assert Members([{"agent.alpha": 1.0}], [0]).size == 1


@pytest.mark.parametrize("grid, message", [
    ("agent.alpha", "malformed: write key=v1,v2"),
    ("agent.nope=1", "names 'agent.nope', which is not a config key"),
    ("agent.policy_freq=1,2", "cannot sweep 'agent.policy_freq' in one program"),
    ("agent.alpha=a,b", "values for 'agent.alpha' must be numbers, got 'a,b'"),
    ("agent.alpha=1=2", "values for 'agent.alpha' must be numbers, got '1=2'"),
    ("agent.alpha=", "lists no values for 'agent.alpha'"),
    ("agent.alpha=1 agent.alpha=2", "names 'agent.alpha' twice"),
])
def test_a_bad_grid_is_refused_with_its_entry_named(grid, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_grid(grid, config(), SWEEPABLE)
    with pytest.raises(ValueError, match="sweepable here: none"):
        parse_grid("agent.alpha=1", config(), ())


@pytest.mark.parametrize("grid, sweepable, hint", [
    ("alpha=1", SWEEPABLE, ": did you mean agent.alpha?"),  # the agent. prefix forgotten
    ("critic_lr_scale=1", ("critic_lr_scale", "critic_lr_scale2"),  # that key alone, not the close ones too
     ": did you mean agent.critic_lr_scale?"),
    ("agent.alph=1", ("alpha1", "alpha2", "alpha3", "alpha4"),  # the three closest, closest first
     ": did you mean agent.alpha4 or agent.alpha3 or agent.alpha2?"),
    ("zz=1", SWEEPABLE, " (sweepable here: agent.actor_lr, agent.alpha, agent.tau)"),  # nothing close
    ("zz=1", (), " (sweepable here: none)"),
])
def test_an_unknown_grid_key_is_refused_with_the_closest_sweepable_keys(grid, sweepable, hint):
    with pytest.raises(ValueError) as e:
        parse_grid(grid, config(), sweepable)
    assert str(e.value) == f"config.grid names '{grid.split('=')[0]}', which is not a config key{hint}"
