"""Paper tables' protocols (configs/tables/), how reproduce.py applies them, and the claims' verdicts
(experiments/evidence.py)."""
import importlib
import importlib.util
import json
import os
import types

import numpy as np
import pytest

from conftest import ROOT

TABLES = ("arq_table2", "bppo_table1", "bracplus_table1", "itrpo_table2", "itrpo_table3", "td3bcpp_table1")

# each declared field, the value the paper's sentence gives, and the words of the sentence that give it;
# a field the sentence does not give must be named in the protocol's ``assumed``
WORDING = {
    "td3bcpp_table1": dict(num_steps=(1_000_000, "1 million time steps"), eval_interval=(5000, "every 5000 time steps"),
                           eval_episodes=(10, "10 trajectories"), report_last=(10, "10 evaluations"),
                           seeds=(5, "5 seeds")),
    "bppo_table1": dict(eval_episodes=(10, "10 evaluation trajectories"), seeds=(5, "five random seeds")),
    "itrpo_table2": dict(seeds=(4, "4 random seeds"), report_last=(10, "the final 10 evaluations")),
    "itrpo_table3": dict(seeds=(4, "4 random seeds")),
    "arq_table2": dict(eval_episodes=(100, "over 100 episodes"), seeds=(3, "3 different random seeds")),
    "bracplus_table1": dict(num_steps=(1_000_000, "1 million gradient steps"), eval_episodes=(100, "for 100 episodes"),
                            report_last=(1, "the policy obtained at the last epoch"), seeds=(4, "4 random seeds")),
}
ASSUMED_WORDS = {"eval_episodes": "episodes", "report_last": ("final policy", "final 10 evaluations"),
                 "num_steps": "budget"}


def load(name):
    spec = importlib.util.spec_from_file_location(f"offrl_{name}_under_test", os.path.join(ROOT, "experiments", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", TABLES)
def test_each_table_declares_the_protocol_its_paper_states(name):
    table = importlib.import_module(f"configs.tables.{name}")
    proto = table.PROTOCOL
    stated = WORDING[name]
    for field, (value, words) in stated.items():
        assert getattr(proto, field) == value, (name, field)
        assert words in proto.quote, (name, words)
    for field in ("eval_episodes", "report_last", "num_steps"):
        if field not in stated:  # not in the paper's sentence: the protocol says what it assumes
            words = ASSUMED_WORDS[field]
            assert any(w in proto.assumed for w in ((words,) if isinstance(words, str) else words)), (name, field)
    assert proto.describe().startswith(f"{proto.num_steps:,} updates" if proto.num_steps else "each column's")


def opts(**kw):
    base = dict(table="td3bcpp_table1", source="offrl", num_seeds=None, num_steps=None, dataset_size=None,
                report_last=None, eval_episodes=None, checkpoint_interval=None, set=[], workdir="runs/tables")
    return types.SimpleNamespace(**{**base, **kw})


def test_reproduce_applies_the_protocol_and_records_every_deviation():
    rep = load("reproduce")
    table = importlib.import_module("configs.tables.td3bcpp_table1")
    o = opts()
    cfg = rep.cell_config(table, "TD3+BC", "walker2d-expert-random-30-v2", o)
    assert (cfg.num_steps, cfg.eval_interval, cfg.eval_episodes, cfg.report_last, cfg.num_seeds) == (1_000_000, 5000, 10, 10, 5)
    assert rep.deviations(table, cfg, o) == [  # at the paper's protocol only the data differ
        "data: offrl's local suite offrl/walker2d/expert-random-30-v0 (1,000,000 transitions from offrl's own "
        "behaviour policies), not D4RL's dataset"]
    o = opts(num_steps=200_000, num_seeds=3, checkpoint_interval=10_000)
    cfg = rep.cell_config(table, "TD3BC++", "walker2d-medium-expert-v2", o)
    assert (cfg.num_steps, cfg.eval_interval, cfg.num_seeds, cfg.checkpoint_interval) == (200_000, 5000, 3, 10_000)
    assert cfg.agent.gp.enabled and tuple(cfg.agent.cr.percentile_clip) == (5.0, 95.0)  # Table 7 / the reference's clamp
    dev = rep.deviations(table, cfg, o)
    assert dev[:2] == ["200,000 updates (paper: 1,000,000)", "3 seeds (paper: 5)"] and len(dev) == 3  # checkpoints: none
    # a config variant gets its own folder; a plain column its config's name
    t2 = importlib.import_module("configs.tables.itrpo_table2")
    assert rep.cell_dir(t2, "iTRPO w=alpha", "hopper-medium-v2", o).endswith("hopper-medium-v2__iTRPO_w_alpha__3seeds")
    assert rep.cell_dir(t2, "iTRPO", "hopper-medium-v2", opts()).endswith("hopper-medium-v2__itrpo")  # the paper's 4 seeds
    cfg = rep.cell_config(t2, "iTRPO w=alpha", "hopper-medium-replay-v2", opts(table="itrpo_table2"))
    assert cfg.agent.kl_factor == "alpha" and (cfg.num_seeds, cfg.report_last) == (4, 10)
    # a multi-stage algorithm keeps its own budget under a protocol that states none
    bppo = importlib.import_module("configs.tables.bppo_table1")
    cfg = rep.cell_config(bppo, "BPPO", "hopper-medium-v2", opts(table="bppo_table1"))
    default = importlib.import_module("configs.bppo").get_config()
    assert cfg.num_steps == default.num_steps and cfg.report_last == 1 and cfg.eval_episodes == 10


def cell(column, task, values, steps=200_000, seeds=None):
    return {"per_seed_normalized": list(values), "normalized_mean": float(np.mean(values)),
            "normalized_std": float(np.std(values)), "timing": {"wall_s": 1.0},
            "cell": {"task": task, "column": column, "seeds": seeds or len(values), "budget": {"num_steps": steps},
                     "eval_episodes": 10, "report_last": 10, "commit": "abc", "device": "cpu: cpu", "deviations": [],
                     "protocol": {"seeds": 5}}}


def c1_results(ev, td3bc_mix, steps=200_000, envs=("hopper",)):
    out = {}
    for env in envs:
        for level in ("expert", "expert-random-30", "expert-cloned-30"):
            t = ev.task(env, level)
            mixed = level != "expert"
            out[t, "TD3+BC"] = cell("TD3+BC", t, td3bc_mix if mixed else [104.0, 106.0, 105.0], steps)
            out[t, "TD3BC++"] = cell("TD3BC++", t, [103.0, 105.0, 104.0], steps)
            out[t, "10%BC"] = cell("10%BC", t, [90.0, 95.0, 100.0], steps)
    return out


def test_claim_verdicts_follow_the_checks():
    ev = load("evidence")
    c1 = ev.BY_ID["C1"]
    # Hopper alone: the degradation check is Walker2d's, so it has not run: inconclusive
    v, why, checks, envs = ev.verdict(c1, c1_results(ev, [105.0, 104.0, 106.0]))
    assert envs == ["hopper"] and v == "inconclusive" and [c["status"] for c in checks] == ["holds", "holds", "not run"]
    # Walker2d too, with TD3+BC failing on its mixtures as in the paper: reproduced
    res = c1_results(ev, [10.0, 20.0, 15.0], envs=("hopper", "walker2d"))
    v, _, checks, _ = ev.verdict(c1, res)
    assert v == "reproduced" and all(c["status"] == "holds" for c in checks)
    # TD3+BC keeps its expert score on Walker2d's mixtures: that check's interval lies below its margin
    v, why, _, _ = ev.verdict(c1, c1_results(ev, [105.0, 104.0, 106.0], envs=("hopper", "walker2d")))
    assert v == "not reproduced" and "TD3+BC on Walker2d" in why
    # below the floor no verdict is drawn, whatever the numbers
    v, why, _, _ = ev.verdict(c1, c1_results(ev, [10.0, 20.0, 15.0], steps=100_000, envs=("hopper", "walker2d")))
    assert v == "inconclusive" and "floor" in why
    # no environment has all its cells
    v, why, _, envs = ev.verdict(c1, {})
    assert v == "inconclusive" and envs == [] and "0 of 27 cells" in why


def test_check_interval_is_a_stratified_bootstrap_of_the_difference():
    ev = load("evidence")
    a = [np.array([10.0, 12.0, 14.0]), np.array([20.0, 20.0, 20.0])]
    b = [np.array([5.0, 5.0, 5.0])]
    point, lo, hi = ev.check_interval(a, b, reps=4000)
    assert point == pytest.approx(np.mean([12.0, 20.0]) - 5.0)
    # only the first cell varies: its resampled mean lies in [10, 14], so the difference in [10, 12]
    assert 10.0 <= lo < point < hi <= 12.0
    assert ev.check_interval(a, b, reps=4000) == (point, lo, hi)  # seeded


def test_results_page_is_generated_from_cell_results(tmp_path):
    ev = load("evidence")
    work = tmp_path / "results"
    for (t, col), r in c1_results(ev, [10.0, 20.0, 15.0], envs=("hopper", "walker2d")).items():
        d = work / "td3bcpp_table1" / f"{t}__{col}"
        d.mkdir(parents=True)
        (d / "results.json").write_text(json.dumps(r))
    # a smaller run of one cell beside it (fewer seeds, smaller budget: its own folder) is not the one shown
    small = cell("TD3+BC", "walker2d-expert-random-30-v2", [90.0, 91.0], steps=100_000)
    small["cell"]["protocol"] = {"seeds": 5}
    d = work / "td3bcpp_table1" / "walker2d-expert-random-30-v2__td3bc__2seeds"
    d.mkdir()
    (d / "results.json").write_text(json.dumps(small))
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    text = ev.write_page(str(work), str(out))
    assert out.read_text() == text
    c1 = text[text.index("## C1"):text.index("## C2")]
    assert "**Verdict: reproduced**" in c1 and "| walker2d-expert-random-30-v2 | 15.0 ± 4.1 (3s, 200k) / 14.2 |" in c1
    assert (tmp_path / "docs" / "results" / "C1_profile.png").stat().st_size > 1000
    for cid in ("C2", "C3", "C4", "C5"):  # claims without runs say so
        section = text[text.index(f"## {cid}"):]
        assert "**Verdict: inconclusive** — 0 of" in section


@pytest.mark.parametrize("args, message", [
    (["--claims=C9"], "unknown claim 'C9': choose from C1, C2, C3, C4, C5"),
    (["--claims=C1", "--envs=ant"], "claim C1 is not defined on 'ant': choose from hopper, walker2d, halfcheetah"),
    ([], "name the claims to run (--claims=C1,C2) or ask for the page alone (--page)"),
])
def test_evidence_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    import subprocess
    import sys

    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "evidence.py"), *args,
                           f"--workdir={tmp_path / 'runs'}", f"--out={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}", proc.stderr[-2000:]
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_bppo_pi_b_is_read_from_the_bppo_cell_s_last_bc_evaluation(tmp_path):
    """C2's 'BPPO's π_b' column is not run: it is the last evaluation of the BPPO cell's BC stage."""
    ev = load("evidence")
    t = ev.task("hopper", "medium")
    d = tmp_path / "bppo_table1" / f"{t}__bppo"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(cell("BPPO", t, [60.0, 70.0, 80.0])))
    evals = [dict(kind="eval", stage="bc", normalized=[10.0, 11.0, 12.0]), dict(kind="train", stage="bc"),
             dict(kind="eval", stage="bc", normalized=[40.0, 50.0, 60.0]),
             dict(kind="eval", stage="improve", normalized=[60.0, 70.0, 80.0])]
    (d / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    res = ev.load_results(str(tmp_path), "bppo_table1")
    pi_b = res[t, "BPPO's π_b"]
    assert pi_b["per_seed_normalized"] == [40.0, 50.0, 60.0] and pi_b["normalized_mean"] == 50.0
    assert pi_b["cell"]["column"] == "BPPO's π_b" and res[t, "BPPO"]["per_seed_normalized"] == [60.0, 70.0, 80.0]
    check = ev.BY_ID["C2"].checks[0]
    assert (check.a, check.b) == ("BPPO", "BPPO's π_b")
    out = ev.evaluate_check(check, ev.Claim("x", "", "bppo_table1", ("BPPO",), ("medium",), ("hopper",), "", ()),
                            res, ["hopper"])
    assert out["point"] == pytest.approx(20.0) and out["status"] == "holds"


def test_score_along_the_run_reads_the_quarters_of_a_cell_s_evaluations(tmp_path):
    ev = load("evidence")
    evals = [dict(kind="eval", global_step=s, normalized_mean=m) for s, m in
             ((5000, 50.0), (10000, 90.0), (15000, 60.0), (20000, 30.0), (25000, 10.0), (30000, 5.0), (40000, 2.0))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals + [dict(kind="train")]))
    # quarters of 40k: 10k, 20k, 30k, 40k
    assert ev.along({"folder": str(tmp_path)}) == "10k 90.0, 20k 30.0, 30k 5.0, 40k 2.0"
    assert ev.along({"folder": str(tmp_path / "none")}) == "—"
