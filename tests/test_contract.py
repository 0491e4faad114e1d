"""The algorithm contract: one Algorithm record per algorithm, required fields checked at registration."""
import pytest

from offrl.algos import ALGORITHMS, Algorithm, Stage, get_algorithm
from offrl.runner import _plan, scored_evals


def _noop(*args, **kwargs):
    return None


@pytest.mark.parametrize("missing", ["init", "stages", "act", "default_config"])
def test_a_record_missing_a_required_field_fails_at_registration_naming_it(missing):
    fields = dict(name="mine", init=_noop, stages=_noop, act=_noop, default_config=_noop)
    del fields[missing]
    with pytest.raises(TypeError, match=f"missing its required field '{missing}'"):
        Algorithm(**fields)


def test_optional_hooks_default_to_no_ops():
    a = Algorithm(name="mine", init=_noop, stages=_noop, act=_noop, default_config=_noop)
    assert a.validate(None) is None
    assert a.prepare_data("data", "info", None) == ("data", "info")
    assert a.chunk_every(None) == {}
    assert a.after_chunk("states", None, "train", 3) == "states"
    assert a.variant_name(None) == "mine" and a.config_file == "mine" and a.sweepable == ()
    assert a.diagnostics is None
    assert a.extra_scores("states", None) == {}
    with pytest.raises(TypeError, match="tuple of agent keys"):
        Algorithm(name="mine", init=_noop, stages=_noop, act=_noop, default_config=_noop, sweepable="alpha")


def test_every_algorithm_module_ends_with_its_record():
    for name in ALGORITHMS:
        rec = get_algorithm(name)
        assert isinstance(rec, Algorithm) and rec.name == name
        assert all(isinstance(k, str) for k in rec.sweepable)
        assert set(k.split(".")[0] for k in rec.sweepable) <= set(rec.default_config().keys()), name


def test_chunks_and_hooks_address_stages_by_name():
    stages = [Stage("bc", _noop, 5, 4), Stage("improve", _noop, 6, 4)]
    assert _plan(stages, 4, {"improve": 3}) == [
        ("bc", 0, 4), ("bc", 4, 1), ("improve", 0, 3), ("improve", 3, 1), ("improve", 4, 2)]
    with pytest.raises(ValueError, match="do not exist"):
        _plan(stages, 4, {"nope": 2})


def test_the_score_uses_only_the_final_policy_stage():
    evals = [{"stage": "bc", "raw": [1.0]}, {"stage": "bc", "raw": [2.0]}, {"stage": "improve", "raw": [9.0]}]
    assert scored_evals(evals) == [{"stage": "improve", "raw": [9.0]}]
    assert scored_evals(evals[:2]) == evals[:2]


def test_no_code_probes_algorithm_modules_for_hooks():
    """The record's fields are the contract: nothing looks for optional functions with hasattr/getattr."""
    import os
    import re

    from conftest import ROOT

    probe = re.compile(r"(hasattr|getattr)\(\s*(algo|algorithm)\b")
    for top in ("offrl", "experiments", "tests"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    text = open(os.path.join(dirpath, f)).read()
                    assert not probe.search(text), f"{os.path.join(dirpath, f)} probes an algorithm with hasattr/getattr"
