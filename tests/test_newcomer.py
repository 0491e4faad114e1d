"""A newcomer's path (issue 18): remote Minari, dataset sizes, discoverable keys, continuing a run,
using a trained policy, diverged members, wandb without a network, quiet start-up, build --help.
Errors: exit status 2, one line, nothing written."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from test_launcher import TINY, launch


def one_line_error(proc, message, workdir):
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert not os.path.exists(workdir)


# 1. remote Minari datasets: the dependency is declared and imports; offline, an absent remote id is one message
def test_remote_minari_download_path_offline(tiny_dataset, tmp_path):
    import huggingface_hub  # noqa: F401  (minari[hf]: what minari's default remote needs)
    from minari.storage.remotes import DEFAULT_REMOTE, get_cloud_storage

    assert DEFAULT_REMOTE.startswith("hf://")
    assert type(get_cloud_storage()).__name__ == "HuggingFaceStorage"
    workdir = str(tmp_path / "run")
    proc = launch(*TINY, "--config.dataset=mujoco/hopper/medium-v0", f"--workdir={workdir}", check=False,
                  env=dict(HF_HUB_OFFLINE="1"))
    one_line_error(proc, "MINARI_DATASETS_PATH", workdir)
    assert "could not be downloaded" in proc.stderr and "mujoco/hopper/medium-v0" in proc.stderr


# 2. sizes of one offrl suite dataset coexist: each is built once, beside the others, and found again
def test_dataset_sizes_coexist(tiny_dataset, capsys):
    from offrl.data import load_dataset
    from offrl.data.build import stored_id
    from offrl.data.minari_io import datasets_root

    first = stored_id("offrl/hopper/random-v0", 200)  # the plain id, unless another test built another size first
    data, info = load_dataset("offrl/hopper/random-v0", size=200)  # built now, offline (uniform actions)
    assert data.size == 200 and info.dataset_id == first
    other = "offrl/hopper/random-v0" if first != "offrl/hopper/random-v0" else "offrl/hopper/size-100/random-v0"
    data, info = load_dataset("offrl/hopper/random-v0", size=100)
    assert data.size == 100 and info.dataset_id == other == stored_id("offrl/hopper/random-v0", 100)
    out = capsys.readouterr().out
    assert f"into {os.path.join(datasets_root(), other)}" in out  # where a dataset is built is printed
    data, info = load_dataset("offrl/hopper/random-v0", size=200)  # found again, not rebuilt
    assert data.size == 200 and info.dataset_id == first and "building" not in capsys.readouterr().out


# 4. every key, its default and what it means, without running
def test_print_config_lists_every_key_without_running(tmp_path):
    from offrl.launch import config_keys, load_config

    workdir = str(tmp_path / "run")
    proc = launch("--config=configs/td3bc.py", "--config.agent.alpha=5", "--print_config", f"--workdir={workdir}")
    lines = proc.stdout.split("\n\n")[0].splitlines()  # the keys; the config's docstring follows
    config = load_config("td3bc")
    leaves = [k for k in config_keys(config) if not hasattr(config[k], "items")]
    listed = {line.split()[0] for line in lines[1:]}
    assert listed == set(leaves)
    row = {line.split()[0]: line for line in lines[1:]}
    assert "5.0" in row["agent.alpha"] and "grid-sweepable" in row["agent.alpha"]  # overrides shown
    assert "updates between evaluations" in row["eval_interval"] and "Polyak" in row["agent.tau"]
    assert "grid-sweepable" not in row["agent.policy_freq"]
    assert not os.path.exists(workdir)


# 5. raising num_steps (and only that) continues a finished run; the result equals an uninterrupted longer run
def test_larger_num_steps_continues_the_run(tiny_dataset, tmp_path):
    from test_launcher import launch as run

    short = str(tmp_path / "short")
    run(*TINY, f"--workdir={short}")
    proc = run(*TINY, "--config.num_steps=30", f"--workdir={short}")
    assert "continuing" in proc.stdout and "raised from 20" in proc.stdout
    straight = str(tmp_path / "straight")
    run(*TINY, "--config.num_steps=30", f"--workdir={straight}")
    a = json.load(open(os.path.join(short, "results.json")))
    b = json.load(open(os.path.join(straight, "results.json")))
    assert a["per_seed_raw"] == pytest.approx(b["per_seed_raw"], rel=1e-6)
    evals = [json.loads(x)["global_step"] for x in open(os.path.join(short, "metrics.jsonl")) if '"eval"' in x]
    assert evals == [10, 20, 30]  # the curve extends
    assert json.load(open(os.path.join(short, "config.json")))["num_steps"] == 30


# 6. a trained policy as a callable from raw observations to environment actions
def test_load_policy_reproduces_the_run_s_evaluation(tiny_dataset, tmp_path):
    import gymnasium as gym

    import offrl

    workdir = str(tmp_path / "run")
    launch(*TINY, "--config.eval_episodes=1", f"--workdir={workdir}")
    evals = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl")) if '"eval"' in x]
    config = json.load(open(os.path.join(workdir, "config.json")))
    for seed in (0, 1):
        policy = offrl.load_policy(workdir, seed=seed)
        env = gym.make(policy.env_id)
        # the last evaluation reset its one episode with eval_seed + 1000 * (evaluation index)
        obs, _ = env.reset(seed=config["eval_seed"] + 1000 * (len(evals) - 1))
        total, done = 0.0, False
        while not done:
            action = policy(obs)
            assert action.shape == env.action_space.shape
            obs, r, term, trunc, _ = env.step(action)
            total += r
            done = term or trunc
        assert total == pytest.approx(evals[-1]["raw"][seed], rel=1e-3)
    assert offrl.load_policy(workdir)(np.zeros((4, 11))).shape == (4, 3)  # a batch; default seed: the first
    with pytest.raises(ValueError, match="choose one of"):
        offrl.load_policy(workdir, seed=7)


# 7. a diverged grid point is flagged; the other point's statistics stay finite. (A Polyak rate of 1e38
# overflows the targets within two updates; the alpha=1e38 diverges only sometimes, since Adam
# normalises the huge actor gradient.)
def test_diverged_members_are_flagged(tiny_dataset, tmp_path):
    workdir = str(tmp_path / "run")
    proc = launch(*TINY, "--config.grid=agent.tau=0.005,1e38", f"--workdir={workdir}")
    assert "2/4 diverged (tau=1e+38 seed 0; tau=1e+38 seed 1)" in proc.stdout
    assert "nan ± nan" not in proc.stdout
    res = json.load(open(os.path.join(workdir, "results.json")))
    ok, bad = res["rows"]
    assert ok["finite_seeds"] == 2 and np.isfinite(ok["normalized_mean"]) and ok["diverged"] == []
    assert bad["finite_seeds"] == 0 and bad["normalized_mean"] is None
    assert [d["seed"] for d in bad["diverged"]] == [0, 1]
    assert all(d["first_nonfinite_metric"]["metric"].startswith("train/") for d in bad["diverged"])
    assert res["best"]["hparams"] == {"agent.tau": 0.005}
    md = open(os.path.join(workdir, "results.md")).read()
    assert "0/2 finite" in md and "diverged: tau=1e+38, seed 0: first non-finite training metric" in md


# 9. wandb: no key is refused before anything is written; an unreachable server falls back to offline
def test_wandb_without_key_or_network(tiny_dataset, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    workdir = str(tmp_path / "nokey")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "launch.py"), *TINY,
                           "--config.wandb.mode=online", f"--workdir={workdir}"], cwd=ROOT, capture_output=True,
                          text=True, env=dict(env, HOME=str(home), JAX_PLATFORMS="cpu"), timeout=600)
    one_line_error(proc, "needs a wandb API key: run `wandb login`", workdir)

    workdir = str(tmp_path / "offline")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "launch.py"), *TINY,
                           "--config.num_steps=10", "--config.wandb.mode=online", f"--workdir={workdir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(env, HOME=str(home), JAX_PLATFORMS="cpu", WANDB_BASE_URL="http://127.0.0.1:9",
                                   WANDB_API_KEY="0" * 40))
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "cannot be reached" in line]
    assert len(warnings) == 1 and "wandb sync" in warnings[0]
    assert os.path.exists(os.path.join(workdir, "results.json"))
    runs = [d for d in os.listdir(os.path.join(workdir, "wandb")) if d.startswith("offline-run-")]
    assert len(runs) == 2  # one per member (TINY: 2 seeds), as CORL's per-seed runs
    assert all(any(f.endswith(".wandb") for f in os.listdir(os.path.join(workdir, "wandb", r))) for r in runs)


# 10. build --help names the environments, levels and defaults
def test_build_help_lists_envs_levels_and_defaults():
    proc = subprocess.run([sys.executable, "-m", "offrl.data.build", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    for text in ("Hopper-v5", "medium-replay", "expert-random-X", "(default: 1000000)", "(default: 0)"):
        assert text in out, text


@pytest.mark.parametrize("args, message", [
    (["--env=Hoper-v5"], "unknown Gymnasium environment 'Hoper-v5'"),
    (["--env=Hopper-v5", "--levels=medium,expert-random-300"], "unknown level 'expert-random-300'"),
    (["--env=Hopper-v5", "--select_from=/nowhere/sac"], "--select_from=/nowhere/sac is not a directory"),
])
def test_build_refuses_bad_input_in_one_line_and_builds_nothing(tmp_path, monkeypatch, capsys, args, message):
    from offrl.data import build

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    with pytest.raises(SystemExit) as e:
        build.main([*args, "--size=100"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "datasets").exists()


# 8. the README's reproduce example, as written but with a tiny budget: the HalfCheetah cells build their
# data offline from the committed policies, train and fill the table; an environment without policies is skipped
def test_readme_reproduce_example_runs(tmp_path):
    import re
    import shlex

    readme = open(os.path.join(ROOT, "README.md")).read()
    command = re.search(r"python experiments/reproduce\.py .*?(?<!\\)\n", readme, re.S).group(0).replace("\\\n", " ")
    args = shlex.split(command)[2:]
    assert "--tasks=hopper-medium-v2,halfcheetah-medium-v2" in args
    tiny = ["--tasks=halfcheetah-medium-v2", "--num_seeds=1", "--num_steps=3", "--dataset_size=200", "--eval_episodes=1",
            "--report_last=1", f"--workdir={tmp_path}", "--set=agent.hidden_dims=(8,8)", "--set=eval_interval=3"]
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "datasets"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "reproduce.py"), *args, *tiny], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [line for line in proc.stdout.splitlines() if line.startswith("skip ")], proc.stdout[-2000:]
    assert re.search(r"\| halfcheetah-medium-v2 \| -?[\d.]+ ± [\d.]+ / [\d.]+ \| -?[\d.]+ ± [\d.]+ / [\d.]+ \|", proc.stdout), \
        proc.stdout[-2000:]
    # in a process of its own: reproduce.py defines absl flags, which another test's import may hold already
    probe = ("import sys; sys.path.insert(0, 'experiments'); import reproduce; "
             "print(reproduce.missing_data('offrl/ant/medium-v0')); print(reproduce.missing_data('offrl/halfcheetah/medium-v0'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    ant, cheetah = out.stdout.strip().splitlines()[-2:]
    assert "no committed behaviour policies for 'ant'" in ant and cheetah == "None"
