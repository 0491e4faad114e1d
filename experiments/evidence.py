"""The seed papers' headline claims, run on the local suites, and the results page made from their runs.

    python experiments/evidence.py --claims=C1 --envs=hopper --num_steps=200000 --num_seeds=3   # run C1's cells
    python experiments/evidence.py --page                                                          # docs/results.md

A claim is a comparison between columns of a paper table (configs/tables/) on some datasets of the local
suites. Running a claim runs its cells with experiments/reproduce.py under the table's protocol (a smaller
budget or fewer seeds are recorded as deviations) into ``--workdir`` (default experiments/results, where
the committed cell results live); finished cells are read back, interrupted ones resume, and a cell rerun
with only a larger ``--num_steps`` continues from its checkpoint. ``--page`` writes docs/results.md from
the committed results alone, never from anything typed by hand.

Verdicts. Each claim is a list of checks "mean of A - mean of B > margin" over tasks x seeds (a negative
margin reads "A is not worse than B by more than |margin|"), each with a 95% bootstrap interval that
resamples seeds within every cell. A check holds when the interval lies above the margin and fails when it
lies below. The claim is **reproduced** when every check holds, **not reproduced** when one fails, and
**inconclusive** otherwise: an interval across the margin, a cell not yet run, or a cell under the floor
of MIN_STEPS updates and MIN_SEEDS seeds, below which no verdict is drawn.
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

MIN_STEPS, MIN_SEEDS = 200_000, 3


@dataclasses.dataclass(frozen=True)
class Check:
    text: str
    a: str  # column
    a_levels: tuple
    b: str
    b_levels: tuple
    margin: float = 0.0
    envs: tuple = ()  # () = every environment the claim ran on


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    title: str
    table: str
    columns: tuple
    levels: tuple
    envs: tuple
    statement: str
    checks: tuple
    derived: tuple = ()  # columns read from another column's runs, not run themselves (DERIVED)


# a column read from another column's cells: (that column, the stage whose last evaluation it is). BPPO's pi_b is
# scored by the runner at the end of BPPO's BC stage and logged in the cell's metrics.jsonl (stage "bc").
DERIVED = {"BPPO's π_b": ("BPPO", "bc")}
MIXTURES = ("expert-random-30", "expert-cloned-30")
CLAIMS = (
    Claim("C1", "TD3BC++ on contaminated data", "td3bcpp_table1", ("TD3+BC", "TD3BC++", "10%BC"),
          ("expert",) + MIXTURES, ("hopper", "walker2d", "halfcheetah"),
          "TD3+BC degrades when an expert dataset is contaminated with random or cloned trajectories (catastrophic "
          "failure on Walker2d ER3 in the paper's Table 1: 104.5 on expert, 14.2 on ER3; none on Hopper); TD3BC++ "
          "stays near expert level.",
          (Check("TD3BC++ on the mixtures stays within 10 points of TD3BC++ on expert", "TD3BC++", MIXTURES,
                 "TD3BC++", ("expert",), -10.0),
           Check("TD3BC++ is not worse than TD3+BC on the mixtures by more than 5 points", "TD3BC++", MIXTURES,
                 "TD3+BC", MIXTURES, -5.0),
           Check("TD3+BC on Walker2d's mixtures is more than 10 points below its expert score", "TD3+BC", ("expert",),
                 "TD3+BC", MIXTURES, 10.0, envs=("walker2d",)))),
    Claim("C2", "BPPO improves on BC", "bppo_table1", ("BC", "BPPO", "TD3+BC", "IQL"),
          ("medium", "medium-replay", "medium-expert"), ("hopper", "walker2d", "halfcheetah"),
          "BPPO improves on its behaviour-cloned policy and is comparable to TD3+BC and IQL (Table 1).",
          (Check("BPPO scores above its own behaviour-cloned policy π_b", "BPPO", (), "BPPO's π_b", ()),
           Check("BPPO scores above BC", "BPPO", (), "BC", ()),
           Check("BPPO is not worse than TD3+BC by more than 10 points", "BPPO", (), "TD3+BC", (), -10.0),
           Check("BPPO is not worse than IQL by more than 10 points", "BPPO", (), "IQL", (), -10.0)),
          derived=("BPPO's π_b",)),
    Claim("C3", "iTRPO's reward shaping helps", "itrpo_table2", ("iTRPO", "iTRPO w=alpha", "BRAC-vp"),
          ("medium-replay", "medium-expert"), ("hopper", "walker2d", "halfcheetah"),
          "iTRPO (BRAC-vp with the behaviour log-likelihood shaping the reward) scores above BRAC-vp, with either "
          "KL weighting (Table 2).",
          (Check("iTRPO with w = tau (the authors' code, the default) scores above BRAC-vp", "iTRPO", (), "BRAC-vp", ()),
           Check("iTRPO with w = alpha (the paper's text) scores above BRAC-vp", "iTRPO w=alpha", (), "BRAC-vp", ()))),
    Claim("C4", "BRAC+ improves on behaviour-regularised baselines", "bracplus_table1",
          ("BRAC+", "BRAC+ alpha(s)", "BRAC-vp", "BEAR"), ("medium", "medium-replay"), ("hopper", "walker2d", "halfcheetah"),
          "BRAC+ (with the reference's scalar alpha, and with the paper's alpha(s)) scores above BRAC-vp and BEAR "
          "(Table 1).",
          (Check("BRAC+ scores above BRAC-vp", "BRAC+", (), "BRAC-vp", ()),
           Check("BRAC+ scores above BEAR", "BRAC+", (), "BEAR", ()),
           Check("BRAC+ with alpha(s) scores above BRAC-vp", "BRAC+ alpha(s)", (), "BRAC-vp", ()))),
    Claim("C5", "ARQ matches IQL", "arq_table2", ("ARQ+π", "ARQ+s", "IQL"), ("medium-replay", "medium-expert"),
          ("hopper", "walker2d", "halfcheetah"),
          "ARQ+π and ARQ+s match or beat IQL (Table 2).",
          (Check("ARQ+π is not worse than IQL by more than 5 points", "ARQ+π", (), "IQL", (), -5.0),
           Check("ARQ+s is not worse than IQL by more than 5 points", "ARQ+s", (), "IQL", (), -5.0))),
)
BY_ID = {c.id: c for c in CLAIMS}


def task(env: str, level: str) -> str:
    return f"{env}-{level}-v2"


def load_results(workdir: str, table: str) -> dict:
    """{(task, column): results.json} of the cells of ``table`` that finished under ``workdir``."""
    out, base = {}, os.path.join(workdir, table)
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name, "results.json")
        if os.path.exists(path):
            r = json.load(open(path))
            key = (r["cell"]["task"], r["cell"]["column"]) if "cell" in r else None
            if key and (key not in out or weight(r) > weight(out[key])):
                out[key] = dict(r, folder=os.path.join(base, name))
    for name, (source, stage) in DERIVED.items():
        for (t, col), r in list(out.items()):
            if col == source:
                d = last_stage_eval(r, stage, name)
                if d is not None:
                    out[t, name] = d
    return out


def last_stage_eval(r: dict, stage: str, column: str):
    """A cell's last evaluation in ``stage`` (its metrics.jsonl) as a results record of ``column``, or None."""
    path = os.path.join(r["folder"], "metrics.jsonl")
    evals = [e for e in map(json.loads, open(path)) if e.get("kind") == "eval" and e.get("stage") == stage] \
        if os.path.exists(path) else []
    if not evals or evals[-1].get("normalized") is None:
        return None
    per_seed = [v for v in evals[-1]["normalized"] if v is not None]
    return dict(r, per_seed_normalized=per_seed, normalized_mean=float(np.mean(per_seed)),
                normalized_std=float(np.std(per_seed)), cell=dict(r["cell"], column=column))


def weight(r: dict) -> tuple:
    """Which of a cell's runs the page shows: the one at the paper's seed count, then the larger budget."""
    c = r["cell"]
    return c["seeds"] == c["protocol"]["seeds"], c["budget"]["num_steps"], c["seeds"]


def scores(results: dict, column: str, tasks) -> list:
    """Per task, the column's finite per-seed normalised scores (None for a cell not run)."""
    out = []
    for t in tasks:
        r = results.get((t, column))
        out.append(None if r is None else np.asarray([v for v in r["per_seed_normalized"] if v is not None], float))
    return out


def check_interval(a_cells: list, b_cells: list, reps: int = 2000, seed: int = 0) -> tuple:
    """(point, lo, hi): mean(A) - mean(B) over tasks x seeds, with a 95% percentile-bootstrap interval that
    resamples the seeds of every cell independently (stratified by cell)."""
    rng = np.random.default_rng(seed)

    def boot(cells):
        return np.stack([c[rng.integers(0, c.size, (reps, c.size))].mean(1) for c in cells], 1).mean(1)

    point = np.mean([c.mean() for c in a_cells]) - np.mean([c.mean() for c in b_cells])
    diff = boot(a_cells) - boot(b_cells)
    return float(point), float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))


def evaluate_check(check: Check, claim: Claim, results: dict, envs) -> dict:
    envs = [e for e in envs if not check.envs or e in check.envs]
    a_tasks = [task(e, lv) for e in envs for lv in (check.a_levels or claim.levels)]
    b_tasks = [task(e, lv) for e in envs for lv in (check.b_levels or claim.levels)]
    a, b = scores(results, check.a, a_tasks), scores(results, check.b, b_tasks)
    if not envs or any(c is None or c.size == 0 for c in a + b):
        return {"text": check.text, "status": "not run", "envs": envs}
    point, lo, hi = check_interval(a, b)
    status = "holds" if lo > check.margin else "fails" if hi < check.margin else "unresolved"
    return {"text": check.text, "status": status, "point": point, "lo": lo, "hi": hi, "envs": envs}


def verdict(claim: Claim, results: dict) -> tuple:
    """(verdict, reason, per-check results, environments counted) of a claim from its cells' results."""
    cols = claim.columns + claim.derived
    cells = {(task(e, lv), c) for e in claim.envs for lv in claim.levels for c in cols}
    envs = [e for e in claim.envs if all((task(e, lv), c) in results for lv in claim.levels for c in cols)]
    checks = [evaluate_check(ch, claim, results, envs) for ch in claim.checks]
    ran = [results[k] for k in cells if k in results]
    if not envs:
        return "inconclusive", (f"{len(ran)} of {len(cells)} cells have run; no environment has all of its cells"), checks, envs
    counted = [results[task(e, lv), c] for e in envs for lv in claim.levels for c in cols]
    low = [r for r in counted if r["cell"]["budget"]["num_steps"] < MIN_STEPS or r["cell"]["seeds"] < MIN_SEEDS]
    if low:
        return ("inconclusive", f"{len(low)} of its cells ran below the floor of {MIN_STEPS:,} updates and "
                f"{MIN_SEEDS} seeds", checks, envs)
    statuses = [c["status"] for c in checks]
    if "fails" in statuses:
        failed = [c["text"] for c in checks if c["status"] == "fails"]
        return "not reproduced", "the interval lies below the margin for: " + "; ".join(failed), checks, envs
    if all(s == "holds" for s in statuses):
        return "reproduced", "every check's interval lies above its margin", checks, envs
    why = [f"{label}: " + "; ".join(c["text"] for c in checks if c["status"] == status)
           for status, label in (("not run", "not yet run"), ("unresolved", "the interval crosses the margin"))
           if status in statuses]
    return "inconclusive", ". ".join(why), checks, envs


def fmt_cell(r) -> str:
    if r is None:
        return "not run"
    c = r["cell"]
    return f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f} ({c['seeds']}s, {c['budget']['num_steps'] // 1000}k)"


def claim_section(claim: Claim, results: dict, plot_dir: str) -> list:
    import importlib

    from offrl.aggregates import aggregate_lines

    table = importlib.import_module(f"configs.tables.{claim.table}")
    v, why, checks, envs = verdict(claim, results)
    tasks = [task(e, lv) for e in claim.envs for lv in claim.levels]
    shown = claim.columns + claim.derived
    envs_arg = ",".join(claim.envs)
    lines = [f"## {claim.id}: {claim.title}", "", f"**Claim.** {claim.statement}", "",
             f"**Verdict: {v}** — {why}.", "",
             f"Run: `python experiments/evidence.py --claims={claim.id} --envs={envs_arg} --num_steps={MIN_STEPS} "
             f"--num_seeds={MIN_SEEDS}` (the paper's budget: drop --num_steps and --num_seeds). "
             f"Paper's protocol ({claim.table}): {table.PROTOCOL.describe()}.", "",
             "| task | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{fmt_cell(results.get((t, c)))} / {table.PAPER.get(t, {}).get(c, '—')}"
                                               for c in shown) + " |")
    lines += ["", "Cells: ours, normalised score mean ± std over seeds (seeds, updates) / the paper's number.", "",
              "| check | environments | mean(A) - mean(B) [95% CI] | margin | status |", "|---|---|---|---|---|"]
    for ch, res in zip(claim.checks, checks):
        ci = f"{res['point']:.1f} [{res['lo']:.1f}, {res['hi']:.1f}]" if "point" in res else "—"
        lines.append(f"| {ch.text} | {', '.join(res['envs']) or '—'} | {ci} | {ch.margin:+g} | {res['status']} |")
    ran = {k: r for k, r in results.items() if k[0] in tasks and k[1] in shown}
    if ran:
        plot = os.path.join(plot_dir, f"{claim.id}_profile.png")
        agg = aggregate_lines(ran, [t for t in tasks if any((t, c) in ran for c in shown)],
                              [c for c in shown if any(k[1] == c for k in ran)], plot)
        lines += [ln.replace(f"performance profile: {os.path.basename(plot)}",
                             f"![{claim.id} performance profile](results/{os.path.basename(plot)})") for ln in agg]
        lines += ["| cell | budget | seeds | score along the run | episodes x evaluations | commit | device | wall (s) "
                  "| deviations |", "|---|---|---|---|---|---|---|---|---|"]
        for (t, c), r in sorted(ran.items()):
            if c in claim.derived:  # read from another cell's run, listed there
                continue
            cell = r["cell"]
            budget = ", ".join(f"{k.split('.')[-1]} {v:,}" for k, v in cell["budget"].items())
            lines.append(f"| {c} on {t} | {budget} | {cell['seeds']} | {along(r)} | {cell['eval_episodes']} x {cell['report_last']} | "
                         f"{cell['commit'][:12]}{'+dirty' if cell['commit'].endswith('+dirty') else ''} | "
                         f"{cell['device']} | {r['timing']['wall_s']:.0f} | {'; '.join(cell['deviations']) or 'none'} |")
    return lines + [""]


def along(r: dict, points: int = 4) -> str:
    """The mean normalised score of the evaluations nearest to each quarter of a cell's run (its metrics.jsonl),
    e.g. '50k 93.4, 100k 40.1, ...': a score that rose and then collapsed shows here, not in the final number."""
    path = os.path.join(r.get("folder", ""), "metrics.jsonl")
    evals = [e for e in map(json.loads, open(path)) if e.get("kind") == "eval" and e.get("normalized_mean") is not None] \
        if os.path.exists(path) else []
    if not evals:
        return "—"
    last = evals[-1]["global_step"]
    picks = [min(evals, key=lambda e: abs(e["global_step"] - last * (i + 1) / points)) for i in range(points)]
    return ", ".join(f"{e['global_step'] // 1000}k {e['normalized_mean']:.1f}" for e in picks)


def write_page(workdir: str, out: str) -> str:
    plot_dir = os.path.join(os.path.dirname(out), "results")
    os.makedirs(plot_dir, exist_ok=True)
    lines = ["# Results: the seed papers' claims on offrl", "",
             "Generated by `python experiments/evidence.py --page` from the cell results committed under "
             f"`{os.path.relpath(workdir, ROOT)}/`; do not edit by hand.", "",
             "Every claim is checked on offrl's local suites (the same construction as D4RL's datasets, from offrl's "
             "own behaviour policies), not on D4RL's datasets, so the paper's numbers are a reference, not a target. "
             f"A verdict needs every cell at {MIN_STEPS:,} updates or more and {MIN_SEEDS} seeds or more; how checks "
             "and verdicts are computed is in the docstring of experiments/evidence.py. "
             "The ± is the standard deviation over seeds.", ""]
    for claim in CLAIMS:
        lines += claim_section(claim, load_results(workdir, claim.table), plot_dir)
    text = "\n".join(lines)
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.replace(out + ".tmp", out)
    return text




def main(_):
    from offrl.launch import fail, quiet_startup

    quiet_startup()
    FLAGS = flags.FLAGS

    claims = [c for c in FLAGS.claims.split(",") if c]
    envs = [e for e in FLAGS.envs.split(",") if e]
    for c in claims:
        if c not in BY_ID:
            fail(f"unknown claim '{c}': choose from {', '.join(BY_ID)}")
    for c in claims:
        for e in envs:
            if e not in BY_ID[c].envs:
                fail(f"claim {c} is not defined on '{e}': choose from {', '.join(BY_ID[c].envs)}")
    if not claims and not FLAGS.page:
        fail("name the claims to run (--claims=C1,C2) or ask for the page alone (--page)")
    for c in claims:
        claim = BY_ID[c]
        cmd = [sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), f"--table={claim.table}",
               f"--columns={','.join(claim.columns)}", f"--tasks={','.join(task(e, lv) for e in envs for lv in claim.levels)}",
               f"--workdir={FLAGS.workdir}", f"--checkpoint_interval={FLAGS.checkpoint_interval}"]
        cmd += [f"--num_steps={FLAGS.num_steps}"] if FLAGS.num_steps else []
        cmd += [f"--num_seeds={FLAGS.num_seeds}"] if FLAGS.num_seeds else []
        print(f"=== {claim.id}: {' '.join(cmd[1:])}", flush=True)
        # Ctrl-C reaches reproduce.py too (one process group): it checkpoints its cell and exits 130, so this
        # process waits for it instead of dying first
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            rc = subprocess.Popen(cmd).wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        if rc:
            sys.exit(rc)
    write_page(FLAGS.workdir, FLAGS.out)
    print(f"wrote {FLAGS.out}")


def define_flags():
    flags.DEFINE_string("claims", "", "Comma-separated claims to run (C1..C5).")
    flags.DEFINE_string("envs", "hopper", "Comma-separated environments to run the claims on.")
    flags.DEFINE_integer("num_steps", None, "Update budget of every cell (default: the paper's protocol).")
    flags.DEFINE_integer("num_seeds", None, "Seeds per cell (default: the paper's protocol).")
    flags.DEFINE_integer("checkpoint_interval", 10_000, "Updates between checkpoints.")
    flags.DEFINE_bool("page", False, "Only write the results page from the committed results.")
    flags.DEFINE_string("workdir", os.path.join(ROOT, "experiments", "results"), "Where the cells' runs live.")
    flags.DEFINE_string("out", os.path.join(ROOT, "docs", "results.md"), "The results page.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
