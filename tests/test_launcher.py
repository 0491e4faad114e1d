"""The launcher end to end in a subprocess; resume; bad inputs fail clearly and write nothing;
the non-editable install runs ``python -m offrl`` from another directory."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

TINY = [
    "--config=configs/td3bc.py",
    "--config.dataset=test/hopper/tiny-v0",
    "--config.num_seeds=2",
    "--config.num_steps=20",
    "--config.batch_size=32",
    "--config.eval_interval=10",
    "--config.eval_episodes=2",
    "--config.checkpoint_interval=0",
    "--config.agent.hidden_dims=(16, 16)",
]


def launch(*args, check=True, env=None):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "launch.py"), *args],
        cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu", **(env or {})), timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"launch failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def full_run(tiny_dataset, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("runs") / "full")
    proc = launch(*TINY, f"--workdir={workdir}")
    return workdir, proc


def test_launcher_writes_config_metrics_table_and_plot(full_run):
    workdir, proc = full_run
    for name in ("config.json", "metrics.jsonl", "results.json", "results.md", "curve.png", "checkpoint.msgpack"):
        assert os.path.exists(os.path.join(workdir, name)), name
    res = json.load(open(os.path.join(workdir, "results.json")))
    assert len(res["per_seed_normalized"]) == 2 and res["seeds"] == [0, 1]
    # normalised = 100 (R - min) / (max - min) with the tiny dataset's reference scores (-20, 1000)
    for raw, norm in zip(res["per_seed_raw"], res["per_seed_normalized"]):
        assert norm == pytest.approx(100 * (raw + 20) / 1020)
    evals = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl")) if '"eval"' in line]
    assert [e["global_step"] for e in evals] == [10, 20]
    assert "normalised score" in proc.stdout and "ETA" in proc.stdout
    # where the wall time went, printed and in results.json alike (CPU: no evaluation overlaps training)
    from offrl.runner import timing_line

    t = res["timing"]
    assert timing_line(t) in proc.stdout and t["evaluation_during_training_s"] == 0
    assert t["wall_s"] >= t["data_s"] + t["training_s"] + t["evaluation_s"] and t["training_s"] > 0 < t["evaluation_s"]
    assert t["compile_cache"] == os.environ["JAX_COMPILATION_CACHE_DIR"] and t["programs"] >= t["programs_from_cache"] >= 0
    assert 0 < t["compilation_s"] < t["wall_s"]


def test_resume_gives_the_same_final_numbers(full_run, tmp_path):
    workdir, _ = full_run
    resumed = str(tmp_path / "resumed")
    first = launch(*TINY, f"--workdir={resumed}", "--stop_after=10")
    assert "stopped after 10" in first.stdout and not os.path.exists(os.path.join(resumed, "results.json"))
    second = launch(*TINY, f"--workdir={resumed}", "--config.eval_workers=1", "--config.compile_cache=off")  # how it runs may differ on resume
    assert "resuming" in second.stdout
    a = json.load(open(os.path.join(workdir, "results.json")))
    b = json.load(open(os.path.join(resumed, "results.json")))
    assert a["per_seed_raw"] == pytest.approx(b["per_seed_raw"], rel=1e-6)
    la = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    lb = [json.loads(x) for x in open(os.path.join(resumed, "metrics.jsonl"))]
    assert [r["global_step"] for r in la] == [r["global_step"] for r in lb]
    for ra, rb in zip(la, lb):
        if ra["kind"] == "train":
            assert ra["train/critic_loss"] == pytest.approx(rb["train/critic_loss"], rel=1e-5)


def test_the_compile_cache_is_loaded_by_the_next_run_and_changes_no_number(full_run, tmp_path):
    """A run writes its compiled programs to config.compile_cache; the next run with the same shapes loads
    every one of them and gives bit-identical results, as does a run with the cache off."""
    import re

    reference = json.load(open(os.path.join(full_run[0], "results.json")))["per_seed_raw"]
    cache = str(tmp_path / "xla")
    every = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # the tiny networks compile in well under JAX's 1 s

    def run(name, setting):
        proc = launch(*TINY, f"--workdir={tmp_path / name}", f"--config.compile_cache={setting}", env=every)
        assert json.load(open(tmp_path / name / "results.json"))["per_seed_raw"] == reference
        return proc.stdout

    os.makedirs(cache)  # an entry another JAX program left, as JAX's unbounded default writes it (no access-time file)
    open(os.path.join(cache, "jit_other-0123-cache"), "wb").close()
    first = run("first", cache)
    entries = sorted(f for f in os.listdir(cache) if f.endswith("-cache") and f != "jit_other-0123-cache")
    assert entries and "0 of " in first and f"programs loaded from the compile cache {cache}" in first
    second = run("second", cache)
    hits, programs = map(int, re.search(r"(\d+) of (\d+) programs loaded from the compile cache", second).groups())
    assert programs >= hits >= len(entries) and "of compiling saved" in second
    timing = json.load(open(tmp_path / "second" / "results.json"))["timing"]
    assert (timing["programs_from_cache"], timing["programs"], timing["compile_cache"]) == (hits, programs, cache)
    assert "no compile cache" in run("off", "off")
    assert sorted(f for f in os.listdir(cache) if f.endswith("-cache") and f != "jit_other-0123-cache") == entries


def test_evaluation_over_worker_processes_gives_the_same_scores(full_run, tmp_path):
    workdir, _ = full_run
    other = str(tmp_path / "workers")
    launch(*TINY, f"--workdir={other}", "--config.eval_workers=2")  # 4 environments over 2 processes
    a = json.load(open(os.path.join(workdir, "results.json")))
    b = json.load(open(os.path.join(other, "results.json")))
    assert a["per_seed_raw"] == b["per_seed_raw"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.algo=nope"], "unknown algorithm 'nope'"),
        (["--config.dataset=nobody/missing-v0", "--config.download=False"], "nobody/missing-v0"),
        (["--config.num_seeds=0"], "config.num_seeds=0 is invalid"),
        (["--config.wandb.mode=sometimes"], "wandb.mode"),
        (["--config.num_seeds=three"], "num_seeds"),
        (["--config.eval_workers=-1"], "config.eval_workers=-1 is invalid"),
        (["--config.eval_overlap=sometimes"], "config.eval_overlap='sometimes' is invalid: choose one of"),
        (["--config.compile_cache=/dev/null/xla"], "config.compile_cache='/dev/null/xla': cannot write to /dev/null/xla"),
        # a grid over a key that drives Python control flow is refused before anything is written
        (["--config.grid=agent.policy_freq=1,2"], "cannot sweep 'agent.policy_freq'"),
        # a config file that does not exist, a misspelt key (with the closest valid ones), a missing D4RL file
        (["--config=configs/nope.py"], "config file 'configs/nope.py' does not exist"),
        (["--config=nope"], "no config named 'nope': choose one of"),
        (["--config.agent.alhpa=1"], "unknown config key 'agent.alhpa': did you mean agent.alpha"),
        (["--config.dataset=/nowhere/hopper_medium-v2.hdf5"], "D4RL file '/nowhere/hopper_medium-v2.hdf5' does not exist"),
        (["--stop_after=0"], "flag --stop_after=0: 0 is not a positive integer"),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(tiny_dataset, tmp_path, args, message):
    workdir = str(tmp_path / "run")
    proc = launch(*TINY, *args, f"--workdir={workdir}", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]  # one line, no traceback
    assert not os.path.exists(workdir)


@pytest.mark.parametrize("under", [False, True])
def test_a_workdir_that_is_or_lies_under_a_file_fails_in_one_line_before_any_work(tiny_dataset, tmp_path, under):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    workdir = blocker / "run" if under else blocker
    proc = launch(*TINY, f"--workdir={workdir}", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]  # one line, no traceback
    want = f"workdir {workdir} cannot be created: {blocker} is a file" if under else f"workdir {workdir} is a file"
    assert want in proc.stderr and "[td3bc]" not in proc.stdout  # refused before the dataset and training
    assert blocker.read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_missing_dataset_error_names_directory_and_remedy(tiny_dataset):
    from offrl.data import DatasetNotFoundError, load_dataset

    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("nobody/missing-v0", download=False)
    msg = str(e.value)
    assert os.environ["MINARI_DATASETS_PATH"] in msg and "MINARI_DATASETS_PATH" in msg and "build it locally" in msg


def test_existing_run_with_other_config_is_left_alone(full_run):
    workdir, _ = full_run
    before = open(os.path.join(workdir, "metrics.jsonl")).read()
    for change in ("--config.agent.alpha=3.0", "--config.num_steps=10"):  # only raising num_steps continues
        proc = launch(*TINY, change, f"--workdir={workdir}", check=False)
        assert proc.returncode == 2 and "different config" in proc.stderr, proc.stderr[-2000:]
        assert open(os.path.join(workdir, "metrics.jsonl")).read() == before
    assert "agent.alpha: 2.5 -> 3.0" in launch(*TINY, "--config.agent.alpha=3.0", f"--workdir={workdir}", check=False).stderr


def test_launch_prints_no_backend_probe_lines(full_run):
    _, proc = full_run
    assert "xla_bridge" not in proc.stderr and "Unable to initialize backend" not in proc.stderr, proc.stderr[-2000:]


def test_non_editable_install_runs_from_another_directory(tiny_dataset, tmp_path):
    """``pip install .`` (not editable) into a fresh venv that sees this environment's packages; then
    ``python -m offrl --config=td3bc`` from an empty directory uses the installed package and its configs."""
    src = tmp_path / "src"  # a copy, so the build never writes build/ or *.egg-info into the checkout
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    names = files.stdout.split() if files.returncode == 0 else []
    if not names:  # not a git checkout: copy the package sources
        names = ["setup.py"] + [os.path.relpath(os.path.join(d, f), ROOT) for top in ("offrl", "configs")
                                for d, _, fs in os.walk(os.path.join(ROOT, top)) for f in fs if "__pycache__" not in d]
    for name in names:
        if os.path.isfile(os.path.join(ROOT, name)) and name.split("/")[0] in ("offrl", "configs", "setup.py"):
            os.makedirs(os.path.dirname(src / name), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), src / name)
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the installed copy first on the path, this environment's dependencies after it; nothing of the checkout
    env = dict(os.environ, PYTHONPATH=str(site), JAX_PLATFORMS="cpu")

    def offrl(*args):
        return subprocess.run([sys.executable, "-m", "offrl", *args], cwd=elsewhere, capture_output=True, text=True,
                              env=env, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import offrl, configs; print(offrl.__file__); print(configs.__file__)"],
                           cwd=elsewhere, capture_output=True, text=True, env=env)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout + where.stderr
    helped = offrl("--help")  # loads the default config (configs/default.py imports configs.td3bc)
    assert "--print_config" in helped.stdout and "Traceback" not in helped.stderr, helped.stderr[-2000:]  # absl: exit 1
    shown = offrl("--config=default", "--print_config")
    assert shown.returncode == 0 and "dataset_size" in shown.stdout and "1000000" in shown.stdout, shown.stderr[-2000:]
    workdir = tmp_path / "run"
    args = [a.replace("configs/td3bc.py", "td3bc") for a in TINY]
    proc = offrl(*args, "--config.num_steps=10", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "normalised score" in proc.stdout and os.path.exists(workdir / "results.json")
    assert not (elsewhere / "runs").exists()
