"""Reproduce a paper table with one command: every (task, column) cell is one seed-vmapped run.

    python experiments/reproduce.py --table=bppo_table1 --source=offrl \
        --columns=TD3+BC,BC --tasks=hopper-medium-v2 --num_seeds=5 --workdir=runs/tables

A table is a module in configs/tables/ (its docstring lists what a table defines): the columns'
configs, the paper's numbers, and the paper's PROTOCOL (budget, evaluations averaged, episodes,
seeds, with the sentence they come from). The protocol is applied unless a flag overrides it; the
table is printed under it, and every cell's results.json gets a ``cell`` record (protocol, budget,
seeds, deviations from the protocol and data, commit, device), so a short local run is never shown
as if it stood next to the paper's numbers. ``--source`` maps a D4RL task name to the dataset
actually used:
  offrl   -> offrl/<env>/<level>-v0 (the local suites, built offline when absent)
  minari  -> mujoco/<env>/<level>-v0 (Minari's remote datasets; only simple/medium/expert exist)
  a dir   -> <dir>/<task>.hdf5 (legacy D4RL files)
Cells whose run finished are read back, not rerun; an interrupted cell resumes. The
comparison table (ours mean ± std over seeds next to the paper's number) is written to
<workdir>/<table>.md and printed, followed per column by the interquartile mean and mean over
tasks x seeds with stratified-bootstrap 95% confidence intervals (rliable), and a performance
profile plot <workdir>/<table>_profile.png (offrl.aggregates).
"""
import ast
import dataclasses
import importlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402


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


def column_config(table, column: str) -> tuple[str, dict]:
    """(configs/<module>.py, overrides) of a column: COLUMNS maps a column to a module, or to
    (module, {key: value}) for a variant of a config (e.g. another KL weighting)."""
    entry = table.COLUMNS[column]
    return (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))


def cell_dir(table, column: str, task: str, opts) -> str:
    """A cell's run folder: <task>__<config module>, or <task>__<column> for a config variant, with
    __<n>seeds when the seed count is not the protocol's (so a reduced run and the paper's own do not meet
    in one folder; a run is continued to a larger budget in its folder)."""
    module, overrides = column_config(table, column)
    name = module if not overrides else re.sub(r"[^A-Za-z0-9+.-]+", "_", column).strip("_")
    seeds = opts.num_seeds or table.PROTOCOL.seeds
    return os.path.join(opts.workdir, opts.table, f"{task}__{name}" + ("" if seeds == table.PROTOCOL.seeds else f"__{seeds}seeds"))


def cell_config(table, column: str, task: str, opts):
    """The config of one cell: the column's config, the table's protocol (seeds, episodes, evaluations
    averaged, budget, evaluation interval), the table's per-cell preset, then the flags."""
    from offrl.algos import ALGORITHMS

    module, overrides = column_config(table, column)
    proto = table.PROTOCOL
    cfg = importlib.import_module(f"configs.{module}").get_config()
    if cfg.algo not in ALGORITHMS:
        return None
    cfg.dataset = dataset_for(task, opts.source)
    cfg.num_seeds = opts.num_seeds or proto.seeds
    cfg.report_last = opts.report_last or proto.report_last
    cfg.eval_episodes = opts.eval_episodes or proto.eval_episodes
    if proto.eval_interval:
        cfg.eval_interval = proto.eval_interval
    if opts.dataset_size:
        cfg.dataset_size = opts.dataset_size
    if opts.checkpoint_interval is not None:
        cfg.checkpoint_interval = opts.checkpoint_interval
    for k, v in {**overrides, **(table.preset(column, task) if getattr(table, "preset", None) else {})}.items():
        cfg.update_from_flattened_dict({k: v})
    for item in opts.set:
        key, value = item.split("=", 1)
        cfg.update_from_flattened_dict({key: ast.literal_eval(value)})
    budget = opts.num_steps or proto.num_steps
    if budget and budget != cfg.num_steps:
        from offrl.config import scale_num_steps

        explicit = [item.split("=", 1)[0][len("agent."):] for item in opts.set if item.startswith("agent.")]
        scale_num_steps(cfg, budget, keep=explicit)
        cfg.eval_interval = max(1, min(cfg.eval_interval, budget // cfg.report_last))
    return cfg


def budget_of(cfg) -> dict:
    """What a run trained: num_steps and, for multi-stage algorithms, each stage's updates."""
    from offrl.config import update_count_keys

    return {"num_steps": cfg.num_steps, **{f"agent.{k}": cfg.agent[k] for k in sorted(update_count_keys(cfg))}}


def deviations(table, cfg, opts) -> list:
    """How a cell's run departs from the paper's protocol and data, one phrase each ([] for none)."""
    proto, out = table.PROTOCOL, []
    if proto.num_steps and cfg.num_steps != proto.num_steps:
        out.append(f"{cfg.num_steps:,} updates (paper: {proto.num_steps:,})")
    elif not proto.num_steps and opts.num_steps:
        out.append(f"{cfg.num_steps:,} updates (paper: the column's configured budget)")
    for key, paper, what in (("num_seeds", proto.seeds, "seeds"), ("eval_episodes", proto.eval_episodes, "episodes per evaluation"),
                             ("report_last", proto.report_last, "evaluations averaged")):
        if cfg[key] != paper:
            out.append(f"{cfg[key]} {what} (paper: {paper})")
    if proto.eval_interval and cfg.eval_interval != proto.eval_interval:
        out.append(f"evaluation every {cfg.eval_interval:,} updates (paper: {proto.eval_interval:,})")
    if cfg.dataset.startswith("offrl/"):
        out.append(f"data: offrl's local suite {cfg.dataset} ({cfg.dataset_size:,} transitions from offrl's own "
                   f"behaviour policies), not D4RL's dataset")
    elif cfg.dataset.startswith("mujoco/"):
        out.append(f"data: Minari's {cfg.dataset}, not D4RL's -v2 dataset")
    out += [f"--set={item}" for item in opts.set]
    return out


def provenance() -> dict:
    """The commit (with '+dirty' when tracked files differ from it) and the device a cell ran on."""
    import subprocess

    import jax

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except OSError:
            return ""
    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    dev = jax.devices()[0]
    return {"commit": commit + ("+dirty" if dirty else ""), "device": f"{dev.platform}: {dev.device_kind}",
            "devices": jax.device_count()}


def same_config(wd: str, cfg) -> bool:
    """Whether the run in ``wd`` was launched with ``cfg`` (keys that only change how a run executes aside)."""
    from offrl.runner import changed_keys

    path = os.path.join(wd, "config.json")
    return os.path.exists(path) and not changed_keys(json.load(open(path)), cfg)


def run_cell(table, column: str, task: str, cfg, opts) -> dict:
    """A cell's results.json, with its ``cell`` record (table, column, task, protocol, budget, deviations,
    commit, device): read back when the run in its folder finished with this config, else trained
    (resumed, or continued when only the budget was raised)."""
    from offrl.runner import run_experiment

    wd = cell_dir(table, column, task, opts)
    done = os.path.join(wd, "results.json")
    trained = not (os.path.exists(done) and same_config(wd, cfg))
    source = provenance() if trained else {"commit": "unrecorded", "device": "unrecorded"}  # the code that runs
    result = run_experiment(cfg, wd) if trained else json.load(open(done))
    if "cell" in result and not trained:
        return result
    result["cell"] = {"table": opts.table, "column": column, "task": task, "dataset": cfg.dataset,
                      "source": opts.source, "protocol": dataclasses.asdict(table.PROTOCOL),
                      "budget": budget_of(cfg), "seeds": cfg.num_seeds, "eval_episodes": cfg.eval_episodes,
                      "report_last": cfg.report_last, "eval_interval": cfg.eval_interval,
                      "deviations": deviations(table, cfg, opts), **source}
    tmp = done + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, done)
    return result


def fmt(r):
    if r is None:
        return "—"
    if r.get("normalized_mean") is None:
        return f"{r['raw_mean']:.0f} (raw)"
    return f"{r['normalized_mean']:.1f} ± {r['normalized_std']:.1f}"


def check_flags(opts):
    """The table module, its columns and tasks from the flags; every bad flag is one line (exit 2) before
    anything runs or is written."""
    from offrl.launch import UsageError, check_overrides, fail

    here = os.path.join(ROOT, "configs", "tables")
    known = sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and not f.startswith("_"))
    if opts.table not in known:
        fail(f"no table '{opts.table}' in configs/tables: choose one of {', '.join(known)}")
    table = importlib.import_module(f"configs.tables.{opts.table}")
    columns = [c for c in (opts.columns.split(",") if opts.columns else table.COLUMNS) if c]
    tasks = [t for t in (opts.tasks.split(",") if opts.tasks else table.PAPER) if t]
    for c in columns:
        if c not in table.COLUMNS:
            fail(f"unknown column '{c}': the table has {', '.join(table.COLUMNS)}")
    for t in tasks:
        if LEVEL.match(t) is None:
            fail(f"task '{t}' is not a D4RL name like hopper-medium-v2 (the table has {', '.join(table.PAPER)})")
    if opts.source not in ("offrl", "minari") and not os.path.isdir(opts.source):
        fail(f"--source={opts.source} is neither offrl, minari nor a directory: give one of those "
             f"(a directory holds <task>.hdf5 files)")
    # each column's config, read once: a misspelt --set key would otherwise be added to it and do nothing
    defaults = {c: importlib.import_module(f"configs.{column_config(table, c)[0]}").get_config() for c in columns} if opts.set else {}
    for item in opts.set:
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
                fail(f"--set={item} for column {c} (configs/{column_config(table, c)[0]}.py): {e}")
    return table, columns, tasks


def header_lines(table, columns, results: dict) -> list:
    """The table's title, the paper's protocol with its sentence, and what the cells did differently."""
    proto = table.PROTOCOL
    lines = [f"## {table.TITLE}", "", f"Paper's protocol: {proto.describe()}.", f"> {proto.quote}", ""]
    if getattr(table, "NOTE", ""):
        lines += [table.NOTE, ""]
    devs = {}
    for (task, col), r in results.items():
        for d in r.get("cell", {}).get("deviations", []):
            devs.setdefault(d, []).append(f"{col} on {task}")
    if devs:
        lines.append("**Not the paper's protocol** — these cells differ from it, so they do not stand next to the "
                     "paper's numbers as equals:")
        for d, cells in devs.items():
            lines.append(f"- {d}" + ("" if len(cells) == len(results) else f" ({', '.join(cells)})"))
        lines.append("")
    return lines


def main(_):
    from offrl.aggregates import aggregate_lines
    from offrl.launch import INTERRUPTED, fail, quiet_startup
    from offrl.runner import RunInterrupted

    quiet_startup()
    opts = flags.FLAGS
    table, columns, tasks = check_flags(opts)
    print(f"{table.TITLE}\npaper's protocol: {table.PROTOCOL.describe()}")
    results = {}
    for task in tasks:
        for col in columns:
            try:
                cfg = cell_config(table, col, task, opts)
            except FileNotFoundError as e:  # --source=<dir> without <task>.hdf5
                print(f"skip {col} on {task}: {e}")
                continue
            if cfg is None:
                print(f"skip {col} on {task}: algorithm '{column_config(table, col)[0]}' is not in offrl yet")
                continue
            why = missing_data(cfg.dataset)
            if why:
                print(f"skip {col} on {task}: {why}")
                continue
            if "dataset_settings" in cfg.agent:  # e.g. BPPO: what the dataset implied (configs/bppo_presets.py)
                print(f"{col} on {task}: {cfg.agent.dataset_settings}")
            try:
                results[task, col] = run_cell(table, col, task, cfg, opts)
            except (ValueError, FileNotFoundError, FileExistsError) as e:  # e.g. a dataset built with another size
                fail(f"{col} on {task}: {e}")
            except RunInterrupted as e:  # SIGINT / SIGTERM: the cell checkpointed at a chunk boundary
                print(f"{col} on {task}: {e}", file=sys.stderr, flush=True)
                sys.exit(INTERRUPTED)
            except KeyboardInterrupt:  # a second signal, or one before training started
                print(f"{col} on {task}: interrupted; rerun the same command to resume from the cell's last "
                      f"checkpoint, if any", file=sys.stderr, flush=True)
                sys.exit(INTERRUPTED)
    seeds = sorted({r["cell"]["seeds"] for r in results.values()}) or [opts.num_seeds or table.PROTOCOL.seeds]
    lines = header_lines(table, columns, results)
    lines += [f"ours (source: {opts.source}, {'/'.join(map(str, seeds))} seeds, mean ± std over seeds) / paper", "",
              "| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for task in tasks:
        cells = [f"{fmt(results.get((task, c)))} / {table.PAPER.get(task, {}).get(c, '—')}" for c in columns]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    os.makedirs(opts.workdir, exist_ok=True)
    lines += aggregate_lines(results, tasks, columns, os.path.join(opts.workdir, f"{opts.table}_profile.png"))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(opts.workdir, f"{opts.table}.md"), "w") as f:
        f.write(text)
    print(text)


def define_flags():
    flags.DEFINE_string("table", "bppo_table1", "Module in configs/tables/.")
    flags.DEFINE_string("source", "offrl", "offrl | minari | a directory of D4RL .hdf5 files.")
    flags.DEFINE_string("columns", "", "Comma-separated columns to run (default: all whose algorithm exists).")
    flags.DEFINE_string("tasks", "", "Comma-separated D4RL task names (default: all in the table).")
    flags.DEFINE_integer("num_seeds", None, "Seeds per cell (vmapped); default: the table's protocol.")
    flags.DEFINE_integer("num_steps", None, "Every run's update budget (scales multi-stage algorithms' stage steps); "
                         "default: the table's protocol, else each column's config.")
    flags.DEFINE_integer("dataset_size", None, "Size of locally built offrl/* datasets (default: the config's, 1M).")
    flags.DEFINE_integer("report_last", None, "Evaluations averaged for a cell's score; default: the table's protocol.")
    flags.DEFINE_integer("eval_episodes", None, "Episodes per evaluation and seed; default: the table's protocol.")
    flags.DEFINE_integer("checkpoint_interval", None, "Updates between checkpoints (default: the config's); changes no number.")
    flags.DEFINE_multi_string("set", [], "Extra override key=value (python literal), repeatable: --set=agent.hidden_dims=(64,64).")
    flags.DEFINE_string("workdir", "runs/tables", "Where the cells' runs and the table go.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
