"""The algorithm contract (one Algorithm record per algorithm, required fields checked at registration), and what
the runner reports from its evaluations: the score row, results.md's table and diverged lines, by hand."""
import types

import ml_collections
import numpy as np
import pytest

from offrl.algos import ALGORITHMS, Algorithm, Stage, get_algorithm
from offrl.logger import diverged_note, finite_mean, score_table
from offrl.runner import _nonfinite, _plan, _summary, scored_evals


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


def test_score_row_by_hand():
    """The reported row of one grid point: per seed, the mean of the last ``report_last`` evaluations of the
    final stage; mean and population std over the seeds that neither diverged nor scored non-finite; the
    normalised std scaled, never offset; the diverged and non-finite seeds listed; extra scores likewise."""
    nan = float("nan")
    c = ml_collections.ConfigDict(dict(algo="td3bc", dataset="d", eval_episodes=10, report_last=2, seed=7, num_seeds=4))
    info = types.SimpleNamespace(ref_min_score=-100.0, ref_max_score=900.0, score_convention="conv")
    exp = types.SimpleNamespace(config=c, info=info, algo=types.SimpleNamespace(variant_name=lambda c: "v"))
    point0 = [1.0, 2.0, 3.0, 4.0]  # grid point 0's members 0-3, never read for point 1
    evals = [dict(stage="main", raw=point0 + [0.0, 0.0, 0.0, 0.0]),  # older than the last two: not averaged
             dict(stage="main", raw=point0 + [100.0, 300.0, 10.0, nan]),
             dict(stage="main", raw=point0 + [200.0, 500.0, nan, 5.0])]
    diverged = {"6": dict(first_nonfinite_eval=2, first_nonfinite_metric="critic_loss")}
    extra = {"best": [9.0] * 4 + [50.0, 150.0, 1000.0, 70.0]}
    row = _summary(exp, evals, {"lr": 1}, slice(4, 8), diverged, extra)
    np.testing.assert_array_equal(row["per_seed_raw"][:2], [150.0, 400.0])
    assert np.isnan(row["per_seed_raw"][2:]).all() and row["finite_seeds"] == 2
    assert row["raw_mean"] == 275.0 and row["raw_std"] == 125.0  # population std of 150 and 400
    np.testing.assert_allclose(row["per_seed_normalized"][:2], [25.0, 50.0])
    assert row["normalized_mean"] == pytest.approx(37.5) and row["normalized_std"] == pytest.approx(12.5)
    assert row["seeds"] == [7, 8, 9, 10] and row["evaluations_averaged"] == 2 and row["hparams"] == {"lr": 1}
    assert {k: row[k] for k in ("algo", "variant", "dataset", "score_convention", "ref_min_score", "ref_max_score",
                                "episodes_per_evaluation")} == dict(algo="td3bc", variant="v", dataset="d",
                                                                    score_convention="conv", ref_min_score=-100.0,
                                                                    ref_max_score=900.0, episodes_per_evaluation=10)
    assert row["diverged"] == [dict(seed=9, first_nonfinite_eval=2, first_nonfinite_metric="critic_loss"),
                               dict(seed=10, first_nonfinite_eval=None, first_nonfinite_metric=None)]
    # extra scores: the diverged member is left out even where its value is finite; member 7's is kept
    best = row["extra_scores"]["best"]
    assert best["per_seed_raw"] == [50.0, 150.0, 1000.0, 70.0]
    assert best["raw_mean"] == pytest.approx(90.0) and best["normalized_mean"] == pytest.approx(19.0)
    # an earlier stage's evaluations never enter the score: after a later stage's, only that stage counts
    later = _summary(exp, evals + [dict(stage="improve", raw=point0 + [60.0, 80.0, 0.0, 0.0])], {}, slice(4, 8))
    assert later["evaluations_averaged"] == 1 and later["per_seed_raw"][:2] == [60.0, 80.0]
    assert later["raw_mean"] == 35.0 and later["finite_seeds"] == 4


def test_score_row_without_a_reference_or_without_a_finite_seed():
    c = ml_collections.ConfigDict(dict(algo="bc", dataset="d", eval_episodes=1, report_last=1, seed=0, num_seeds=2))
    algo = types.SimpleNamespace(variant_name=lambda c: "v")
    no_ref = types.SimpleNamespace(config=c, algo=algo, info=types.SimpleNamespace(
        ref_min_score=None, ref_max_score=None, score_convention="none"))
    row = _summary(no_ref, [dict(stage="main", raw=[1.0, 3.0])], {}, slice(0, 2), None, {"x": [2.0, 4.0]})
    assert row["raw_mean"] == 2.0 and row["normalized_mean"] is None and row["normalized_std"] is None
    assert row["per_seed_normalized"] == [None, None] and row["extra_scores"]["x"]["per_seed_normalized"] == [None, None]
    with_ref = types.SimpleNamespace(config=c, algo=algo, info=types.SimpleNamespace(
        ref_min_score=0.0, ref_max_score=10.0, score_convention="c"))
    dead = _summary(with_ref, [dict(stage="main", raw=[float("nan"), float("inf")])], {}, slice(0, 2))
    assert dead["finite_seeds"] == 0 and dead["raw_mean"] is None and dead["normalized_mean"] is None
    assert dead["normalized_std"] is None and len(dead["diverged"]) == 2
    # which members hold a non-finite entry, over every axis after the first
    np.testing.assert_array_equal(_nonfinite([[1.0, float("nan")], [1.0, 2.0], [float("-inf"), 0.0]]), [True, False, True])
    np.testing.assert_array_equal(_nonfinite(np.array([[[0.0], [1.0]], [[2.0], [float("nan")]]])), [False, True])


def test_results_table_and_diverged_lines_by_hand():
    """results.md's table row of a score row: variant, dataset, label, seeds (finite/all), normalised and raw
    mean ± std, every seed's normalised score; the diverged lines name the point, seed and first non-finite."""
    row = dict(algo="td3bc", variant="td3bc+", dataset="d", hparams={"agent.alpha": 2.5}, normalized_mean=37.5,
               normalized_std=12.5, raw_mean=275.0, raw_std=125.0, per_seed_normalized=[25.0, 50.0, None],
               finite_seeds=2, diverged=[dict(seed=9, first_nonfinite_eval=2000,
                                              first_nonfinite_metric=dict(metric="train/critic_loss", global_step=1500)),
                                         dict(seed=10, first_nonfinite_eval=None, first_nonfinite_metric=None)])
    no_ref = dict(algo="bc", dataset="e", normalized_mean=None, normalized_std=None, raw_mean=None, raw_std=None,
                  per_seed_normalized=[None])
    lines = score_table([row, no_ref]).splitlines()
    assert lines[2] == "| td3bc+ | d | alpha=2.5 | 2/3 finite | 37.5 ± 12.5 | 275.0 ± 125.0 | 25.0, 50.0, nan |"
    assert lines[3] == "| bc | e | - | 1 | n/a | n/a | nan |"
    assert lines[:2] == ["| algorithm | dataset | hyperparameters | seeds | normalised score | raw return | per-seed normalised |",
                         "|---|---|---|---|---|---|---|"]
    assert diverged_note([row, no_ref]).strip().splitlines() == [
        "- diverged: alpha=2.5, seed 9: first non-finite training metric train/critic_loss at update 1500; "
        "first non-finite evaluation at update 2000 (left out of the statistics)",
        "- diverged: alpha=2.5, seed 10: non-finite score (left out of the statistics)"]
    assert diverged_note([no_ref]) == ""
    alone = dict(no_ref, diverged=[dict(seed=3, first_nonfinite_eval=500, first_nonfinite_metric=None)])  # no grid
    assert diverged_note([alone]).strip() == "- diverged: seed 3: first non-finite evaluation at update 500 (left out of the statistics)"
    assert finite_mean([1.0, float("nan"), 3.0, float("inf")]) == 2.0 and finite_mean([float("nan")]) is None
