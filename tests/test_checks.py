"""offrl.checks, the one vocabulary every validate uses: each rule accepts its boundary values,
rejects values just outside, and the one-line message names the key, the value and what is allowed."""
import math

import ml_collections
import pytest

from offrl.checks import Checks, interval

EPS = 1e-9


def checks(**values):
    cd = ml_collections.ConfigDict(dict(values, sub=dict(k=1, name="a")))
    return Checks(cd, "agent")


def rejects(rule, value, *message_parts, key="x"):
    with pytest.raises(ValueError) as e:
        rule(checks(**{key: value}))
    msg = str(e.value)
    assert msg.startswith(f"agent.{key}={value!r} is invalid: "), msg
    assert "\n" not in msg
    for part in message_parts:
        assert part in msg, msg


def accepts(rule, value, key="x"):
    rule(checks(**{key: value}))


@pytest.mark.parametrize("spec, inside, outside", [
    ("(0, 1]", [EPS, 0.5, 1.0], [0.0, -EPS, 1.0 + EPS, math.nan]),
    ("[0, 1]", [0.0, 0.5, 1.0], [-EPS, 1.0 + EPS, math.nan]),
    ("[0, 1)", [0.0, 1.0 - EPS], [-EPS, 1.0, math.nan]),
    ("(0, 1)", [EPS, 1.0 - EPS], [0.0, 1.0, math.nan]),
    ("[-2.5, 10]", [-2.5, 10.0], [-2.5 - EPS, 10.0 + EPS]),
])
def test_within_closed_and_open_ends(spec, inside, outside):
    rule = lambda c: c.within(spec, "x")  # noqa: E731
    for v in inside:
        accepts(rule, v)
    for v in outside:
        rejects(rule, v, f"must lie in {spec}")


def test_interval_parsing():
    assert interval("(0, 1]") == (0.0, 1.0, True, False)
    assert interval(" [ -1,2.5 ) ") == (-1.0, 2.5, False, True)
    for bad in ("0, 1", "(0; 1]", "(0, 1", "{0, 1}"):
        with pytest.raises(ValueError, match="malformed"):
            interval(bad)


def test_at_least_and_above():
    accepts(lambda c: c.at_least(0, "x"), 0.0)
    accepts(lambda c: c.at_least(0, "x"), 3)
    rejects(lambda c: c.at_least(0, "x"), -EPS, "must be >= 0")
    rejects(lambda c: c.at_least(0, "x"), math.nan, "must be >= 0")  # a NaN hyperparameter is never valid
    accepts(lambda c: c.above(0, "x"), EPS)
    rejects(lambda c: c.above(0, "x"), 0.0, "must be > 0")
    rejects(lambda c: c.above(0.5, "x"), 0.5, "must be > 0.5")
    rejects(lambda c: c.above(0, "x"), math.nan, "must be > 0")


def test_integer():
    accepts(lambda c: c.integer(1, "x"), 1)
    accepts(lambda c: c.integer(0, "x"), 0)
    rejects(lambda c: c.integer(1, "x"), 0, "must be an integer >= 1")
    rejects(lambda c: c.integer(2, "x"), 1, "must be an integer >= 2")
    rejects(lambda c: c.integer(1, "x"), 2.0, "must be an integer >= 1")  # a float is not a count
    rejects(lambda c: c.integer(1, "x"), "3", "must be an integer >= 1")


def test_one_of():
    accepts(lambda c: c.one_of(("kl", "mmd"), "x"), "mmd")
    rejects(lambda c: c.one_of(("kl", "mmd"), "x"), "js", "choose one of ('kl', 'mmd')")
    rejects(lambda c: c.one_of(["kl"], "x"), "KL", "choose one of ('kl',)")


def test_several_keys_name_the_first_bad_one():
    c = checks(a=1.0, b=-2.0, c=-3.0)
    c.at_least(0, "a")
    with pytest.raises(ValueError, match=r"^agent\.b=-2\.0 is invalid: must be >= 0$"):
        c.at_least(0, "a", "b", "c")


def test_why_is_appended():
    rejects(lambda c: c.integer(0, "x", why="0: off"), -1, "must be an integer >= 0 (0: off)")
    rejects(lambda c: c.within("[0, 1]", "x", why="the paper's tau"), 2.0, "must lie in [0, 1] (the paper's tau)")


def test_ordered():
    Checks(ml_collections.ConfigDict(dict(lo=-5.0, hi=2.0)), "agent").ordered("lo", "hi")
    Checks(ml_collections.ConfigDict(dict(lo=2.0, hi=2.0)), "agent").ordered("lo", "hi", strict=False)
    with pytest.raises(ValueError, match=r"^agent\.lo=2\.0 is invalid: must be < agent\.hi=2\.0$"):
        Checks(ml_collections.ConfigDict(dict(lo=2.0, hi=2.0)), "agent").ordered("lo", "hi")
    with pytest.raises(ValueError, match=r"^agent\.lo=2\.5 is invalid: must be <= agent\.hi=2\.0$"):
        Checks(ml_collections.ConfigDict(dict(lo=2.5, hi=2.0)), "agent").ordered("lo", "hi", strict=False)


def test_need_shows_own_or_given_value():
    c = checks(x=3)
    c.need(True, "x", "never shown")
    with pytest.raises(ValueError, match=r"^agent\.x=3 is invalid: must be even$"):
        c.need(False, "x", "must be even")
    with pytest.raises(ValueError, match=r"^agent\.x=\(1, 2\) is invalid: need lo < hi$"):
        c.need(False, "x", "need lo < hi", value=(1, 2))


def test_dotted_keys_defaults_and_prefix():
    c = checks()
    c.integer(1, "sub.k")
    with pytest.raises(ValueError, match=r"^agent\.sub\.name='a' is invalid: choose one of \('b',\)$"):
        c.one_of(("b",), "sub.name")
    # a key the section lacks reads its default; without one it is the caller's mistake, not bad input
    withdef = Checks(ml_collections.ConfigDict(dict(sub=dict())), "config", defaults={"sub.w": -1})
    with pytest.raises(ValueError, match=r"^config\.sub\.w=-1 is invalid: must be an integer >= 0$"):
        withdef.integer(0, "sub.w")
    with pytest.raises(KeyError, match="config.sub.nope"):
        withdef.integer(0, "sub.nope")
