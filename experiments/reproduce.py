"""Reproduce a paper table with one command: every (task, column) cell is one seed-vmapped run.

    python experiments/reproduce.py --table=bppo_table1 --source=offrl \
        --columns=TD3+BC,BC --tasks=hopper-medium-v2 --num_seeds=5 --workdir=runs/tables

A table is a module in configs/tables/ with TITLE, COLUMNS (column -> configs/<name>.py)
and PAPER (D4RL task -> column -> reported score); it may define ``preset(column, task)``
returning config overrides (per-dataset hyperparameters). ``--source`` maps a D4RL task
name to the dataset actually used:
  offrl   -> offrl/<env>/<level>-v0 (the local suites, built offline when absent)
  minari  -> mujoco/<env>/<level>-v0 (Minari's remote datasets; only simple/medium/expert exist)
  a dir   -> <dir>/<task>.hdf5 (legacy D4RL files)
Cells whose run finished are read back, not rerun; an interrupted cell resumes. The
comparison table (ours mean ± std over seeds next to the paper's number) is written to
<workdir>/<table>.md and printed, followed per column by the interquartile mean and mean over
tasks x seeds with stratified-bootstrap 95% confidence intervals (rliable), and a performance
profile plot <workdir>/<table>_profile.png (see aggregate_lines).
"""
import ast
import importlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

flags.DEFINE_string("table", "bppo_table1", "Module in configs/tables/.")
flags.DEFINE_string("source", "offrl", "offrl | minari | a directory of D4RL .hdf5 files.")
flags.DEFINE_string("columns", "", "Comma-separated columns to run (default: all whose algorithm exists).")
flags.DEFINE_string("tasks", "", "Comma-separated D4RL task names (default: all in the table).")
flags.DEFINE_integer("num_seeds", 5, "Seeds per cell (vmapped).")
flags.DEFINE_integer("num_steps", None, "Override every run's update budget (scales multi-stage algorithms' stage steps).")
flags.DEFINE_integer("dataset_size", None, "Size of locally built offrl/* datasets.")
flags.DEFINE_integer("report_last", 10, "Evaluations averaged for a cell's score (the papers' protocol uses 10).")
flags.DEFINE_integer("eval_episodes", None, "Override episodes per evaluation and seed.")
flags.DEFINE_multi_string("set", [], "Extra override key=value (python literal), repeatable: --set=agent.hidden_dims=(64,64).")
flags.DEFINE_string("workdir", "runs/tables", "Where the cells' runs and the table go.")
FLAGS = flags.FLAGS

LEVEL = re.compile(r"^(?P<env>[a-z0-9]+)-(?P<level>.+)-v\d+$")


def dataset_for(task: str, source: str) -> str:
    m = LEVEL.match(task)
    if m is None:
        raise ValueError(f"task '{task}' is not a D4RL name like hopper-medium-v2")
    env, level = m["env"], m["level"]
    if source == "offrl":
        return f"offrl/{env}/{level}-v0"
    if source == "minari":
        return f"mujoco/{env}/{level}-v0"
    path = os.path.join(source, f"{task}.hdf5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no D4RL file {path}: --source must be offrl, minari or a directory of <task>.hdf5 files")
    return path


def missing_data(dataset: str):
    """Why a cell's dataset cannot be had on this machine, or None: an offrl/<env>/* suite is built
    from committed behaviour policies, so an environment without them (or AntMaze) has no data."""
    if not dataset.startswith("offrl/"):
        return None
    from offrl.data.build import BEHAVIOR_ROOT
    from offrl.data.minari_io import local_dataset_exists

    env = dataset.split("/")[1]
    if local_dataset_exists(dataset) or os.path.exists(os.path.join(BEHAVIOR_ROOT, env, "manifest.json")):
        return None
    return f"no local data for {dataset} (no committed behaviour policies for '{env}' in offrl/data/behavior)"


def cell_config(table, column: str, task: str):
    from offrl.algos import ALGORITHMS

    cfg = importlib.import_module(f"configs.{table.COLUMNS[column]}").get_config()
    if cfg.algo not in ALGORITHMS:
        return None
    cfg.dataset = dataset_for(task, FLAGS.source)
    cfg.num_seeds = FLAGS.num_seeds
    cfg.report_last = FLAGS.report_last
    if FLAGS.dataset_size:
        cfg.dataset_size = FLAGS.dataset_size
    for k, v in (table.preset(column, task) if getattr(table, "preset", None) else {}).items():
        cfg.update_from_flattened_dict({k: v})
    if FLAGS.eval_episodes:
        cfg.eval_episodes = FLAGS.eval_episodes
    for item in FLAGS.set:
        key, value = item.split("=", 1)
        cfg.update_from_flattened_dict({key: ast.literal_eval(value)})
    if FLAGS.num_steps:
        scale = FLAGS.num_steps / cfg.num_steps
        cfg.num_steps = FLAGS.num_steps
        for k in list(cfg.agent.keys()):
            if k.endswith("_steps") and isinstance(cfg.agent[k], int):
                cfg.agent[k] = max(1, int(cfg.agent[k] * scale))
        cfg.eval_interval = max(1, min(cfg.eval_interval, FLAGS.num_steps // FLAGS.report_last))
    return cfg


def fmt(r):
    if r is None:
        return "—"
    if r.get("normalized_mean") is None:
        return f"{r['raw_mean']:.0f} (raw)"
    return f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f}"


def aggregate_lines(results: dict, tasks, columns, plot_path: str, reps: int = 2000, seed: int = 0) -> list:
    """Markdown lines with, per column, the interquartile mean and the mean of the normalised scores over
    tasks x seeds with stratified-bootstrap 95% confidence intervals (rliable, Agarwal et al. 2021), and a
    performance-profile plot (fraction of runs scoring above tau, with bootstrap bands) saved at ``plot_path``.

    ``results``: {(task, column): a cell's results.json dict}. A column's score matrix is
    (seeds, tasks) of ``per_seed_normalized``; tasks of a column with no normalised score for every
    seed are left out of it (listed). Deterministic for a given ``seed``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from rliable import library as rly
    from rliable import metrics, plot_utils

    scores, left_out = {}, {}
    for col in columns:
        cols, miss = [], []
        for task in tasks:
            r = results.get((task, col))
            per_seed = np.asarray([np.nan if v is None else v for v in (r or {}).get("per_seed_normalized", [])], float)
            ok = r is not None and per_seed.size and np.isfinite(per_seed).all()
            if ok and cols and per_seed.size != cols[0].size:
                ok = False
            (cols.append(per_seed) if ok else miss.append(task))
        if cols:
            scores[col] = np.stack(cols, axis=1)  # (seeds, tasks)
        if miss:
            left_out[col] = miss
    lines = ["", "### Aggregates over tasks x seeds (rliable: IQM and mean, stratified-bootstrap 95% CIs)", ""]
    if not scores:
        return lines + ["no column has normalised scores for every seed of any task", ""]

    def iqm_and_mean(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    np.random.seed(seed)  # rliable/arch also draw from NumPy's global generator
    point, ci = rly.get_interval_estimates(scores, iqm_and_mean, reps=reps,
                                           random_state=np.random.RandomState(seed))
    lines += ["| column | IQM [95% CI] | mean [95% CI] | tasks x seeds |", "|---|---|---|---|"]
    for col, m in scores.items():
        (iqm, mean), lo, hi = point[col], ci[col][0], ci[col][1]
        lines.append(f"| {col} | {iqm:.1f} [{lo[0]:.1f}, {hi[0]:.1f}] | {mean:.1f} [{lo[1]:.1f}, {hi[1]:.1f}] | "
                     f"{m.shape[1]} x {m.shape[0]} |")
    for col, miss in left_out.items():
        lines.append(f"\n{col}: left out (no normalised score for every seed): {', '.join(miss)}")
    hi_score = max(100.0, max(float(m.max()) for m in scores.values()))
    taus = np.linspace(min(0.0, min(float(m.min()) for m in scores.values())), hi_score, 101)
    np.random.seed(seed)  # create_performance_profile's bootstrap draws from NumPy's global generator
    profiles, profile_cis = rly.create_performance_profile(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax,
                                         xlabel="normalised score (tau)", ylabel="fraction of runs with score > tau")
    ax.legend(ax.get_lines()[: len(scores)], list(scores), loc="upper right")  # the curves, not the bands
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    plt.close(fig)
    lines += ["", f"performance profile: {os.path.basename(plot_path)}", ""]
    return lines


def check_flags():
    """The table module, its columns and tasks from the flags; every bad flag is one line (exit 2) before
    anything runs or is written."""
    from offrl.launch import UsageError, check_overrides, fail

    here = os.path.join(ROOT, "configs", "tables")
    known = sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))
    if FLAGS.table not in known:
        fail(f"no table '{FLAGS.table}' in configs/tables: choose one of {', '.join(known)}")
    table = importlib.import_module(f"configs.tables.{FLAGS.table}")
    columns = [c for c in (FLAGS.columns.split(",") if FLAGS.columns else table.COLUMNS) if c]
    tasks = [t for t in (FLAGS.tasks.split(",") if FLAGS.tasks else table.PAPER) if t]
    for c in columns:
        if c not in table.COLUMNS:
            fail(f"unknown column '{c}': the table has {', '.join(table.COLUMNS)}")
    for t in tasks:
        if LEVEL.match(t) is None:
            fail(f"task '{t}' is not a D4RL name like hopper-medium-v2 (the table has {', '.join(table.PAPER)})")
    if FLAGS.source not in ("offrl", "minari") and not os.path.isdir(FLAGS.source):
        fail(f"--source={FLAGS.source} is neither offrl, minari nor a directory: give one of those "
             f"(a directory holds <task>.hdf5 files)")
    # each column's config, read once: a misspelt --set key would otherwise be added to it and do nothing
    defaults = {c: importlib.import_module(f"configs.{table.COLUMNS[c]}").get_config() for c in columns} if FLAGS.set else {}
    for item in FLAGS.set:
        key, eq, value = item.partition("=")
        try:
            ast.literal_eval(value)
        except (ValueError, SyntaxError):
            eq = ""
        if not key or not eq:
            fail(f"--set={item}: give key=value with a Python literal value (quote strings: --set=agent.x='y')")
        for c, config in defaults.items():
            try:
                check_overrides([f"--config.{key}"], config)
            except UsageError as e:
                fail(f"--set={item} for column {c} (configs/{table.COLUMNS[c]}.py): {e}")
    return table, columns, tasks


def main(_):
    from offrl.launch import fail
    from offrl.runner import run_experiment

    table, columns, tasks = check_flags()
    results = {}
    for task in tasks:
        for col in columns:
            try:
                cfg = cell_config(table, col, task)
            except FileNotFoundError as e:  # --source=<dir> without <task>.hdf5
                print(f"skip {col} on {task}: {e}")
                continue
            if cfg is None:
                print(f"skip {col} on {task}: algorithm '{table.COLUMNS[col]}' is not in offrl yet")
                continue
            why = missing_data(cfg.dataset)
            if why:
                print(f"skip {col} on {task}: {why}")
                continue
            if "dataset_settings" in cfg.agent:  # e.g. BPPO: what the dataset implied (configs/bppo_presets.py)
                print(f"{col} on {task}: {cfg.agent.dataset_settings}")
            wd = os.path.join(FLAGS.workdir, FLAGS.table, f"{task}__{table.COLUMNS[col]}")
            done = os.path.join(wd, "results.json")
            try:
                results[task, col] = json.load(open(done)) if os.path.exists(done) else run_experiment(cfg, wd)
            except (ValueError, FileNotFoundError, FileExistsError) as e:  # e.g. a dataset built with another size
                fail(f"{col} on {task}: {e}")
    lines = [f"## {table.TITLE}", "", f"ours (source: {FLAGS.source}, {FLAGS.num_seeds} seeds) / paper", "",
             "| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task in tasks:
        cells = [f"{fmt(results.get((task, c)))} / {table.PAPER.get(task, {}).get(c, '—')}" for c in columns]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    os.makedirs(FLAGS.workdir, exist_ok=True)
    lines += aggregate_lines(results, tasks, columns, os.path.join(FLAGS.workdir, f"{FLAGS.table}_profile.png"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(FLAGS.workdir, f"{FLAGS.table}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
