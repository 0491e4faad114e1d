"""The table aggregates (offrl.aggregates): IQM / mean over tasks x seeds with stratified-bootstrap CIs, performance profile."""
import os

import numpy as np
import pytest


@pytest.fixture(scope="module")
def reproduce():
    from offrl import aggregates

    return aggregates


def hand_iqm(x):
    """25%-trimmed mean of all runs x tasks: drop floor(n/4) lowest and highest, average the rest."""
    v = np.sort(np.ravel(x))
    k = int(0.25 * v.size)
    return v[k: v.size - k].mean()


def test_iqm_cis_and_profile(reproduce, tmp_path):
    rng = np.random.default_rng(0)
    tasks = ["hopper-medium-v2", "walker2d-medium-v2", "halfcheetah-medium-v2"]
    a = rng.normal(60, 15, (5, 3))
    b = rng.normal(40, 5, (5, 3))
    a[0, 0] = 1000.0  # an outlier run: moves the mean, not the IQM
    results = {}
    for j, t in enumerate(tasks):
        results[t, "A"] = {"per_seed_normalized": a[:, j].tolist()}
        results[t, "B"] = {"per_seed_normalized": b[:, j].tolist()}
    results[tasks[2], "C"] = {"per_seed_normalized": [1.0, None, 3.0, 4.0, 5.0]}  # a diverged seed
    plot = str(tmp_path / "profile.png")
    lines = reproduce.aggregate_lines(results, tasks, ["A", "B", "C"], plot, reps=500)
    rows = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| A") or ln.startswith("| B")}
    for col, m in (("A", a), ("B", b)):
        cells = rows[col].split("|")
        iqm, iqm_ci = cells[2].split(" [")
        mean = cells[3].split(" [")[0]
        assert float(iqm) == pytest.approx(hand_iqm(m), abs=0.06)
        assert float(mean) == pytest.approx(m.mean(), abs=0.06)
        lo, hi = (float(x) for x in iqm_ci.rstrip("] ").split(", "))
        assert lo <= float(iqm) <= hi and hi - lo > 0
        assert cells[4].strip() == "3 x 5"
    assert float(rows["A"].split("|")[3].split(" [")[0]) > hand_iqm(a) + 20  # the outlier shows in the mean only
    assert any("C: left out" in ln and tasks[2] in ln for ln in lines)
    assert os.path.getsize(plot) > 1000
    again = reproduce.aggregate_lines(results, tasks, ["A", "B", "C"], str(tmp_path / "p2.png"), reps=500)
    assert again == [ln.replace("profile.png", "p2.png") for ln in lines]  # seeded: same CIs every call
