"""What a new user meets: one meaning of num_steps, dataset sizes side by side, interrupting and
rerunning a run, per-member metrics, messages. Errors: exit status 2, one line, nothing written."""
import os

import pytest
from test_launcher import TINY, full_run, launch  # noqa: F401  (full_run: a fixture)


def _stage_lengths(config):
    from offrl.algos import get_algorithm

    return [st.num_steps for st in get_algorithm(config.algo).stages(config)]


def test_num_steps_scales_every_update_count_in_proportion():
    from offrl.config import scale_num_steps
    from offrl.launch import load_config

    for name in ("bppo", "arq"):  # num_steps is the sum of their stages: the scaled stages sum to about it
        config = load_config(name)
        assert sum(_stage_lengths(config)) == config.num_steps
        before = dict(config.agent)
        changed = scale_num_steps(config, 3000)
        assert config.num_steps == 3000 and 2990 <= sum(_stage_lengths(config)) <= 3000
        assert all(v == max(1, int(before[k] * 3000 / load_config(name).num_steps)) for k, v in changed.items())
    assert config.agent.sampler_steps == 500 and "sampler_steps" not in changed  # not an update count
    config = load_config("onestep")  # num_steps is the last stage: the earlier ones keep their ratio to it
    scale_num_steps(config, 1000, keep=("q_steps",))
    assert _stage_lengths(config) == [5000, 2_000_000, 1000]
    config = load_config("td3bc")
    assert scale_num_steps(config, 20) == {} and _stage_lengths(config) == [20]
    with pytest.raises(ValueError, match="num_steps"):
        config.num_steps = 0
        scale_num_steps(config, 10)


def test_launcher_num_steps_is_the_budget_of_a_multi_stage_algorithm(tmp_path):
    workdir = str(tmp_path / "run")
    proc = launch("--config=bppo", "--config.num_steps", "2000", "--config.agent.pi_steps=5", "--print_config",
                  f"--workdir={workdir}")
    row = {line.split()[0]: line.split()[1] for line in proc.stdout.split("\n\n")[0].splitlines()[2:]}
    assert (row["num_steps"], row["agent.v_steps"], row["agent.q_steps"], row["agent.bc_steps"], row["agent.pi_steps"]) == (
        "2000", "888", "888", "222", "5")  # pi_steps, set explicitly, keeps its value
    assert "scaled in proportion" in proc.stdout.splitlines()[0] and not os.path.exists(workdir)


def _start(args, workdir):
    """The launcher in a subprocess, returned once it has printed its first progress line."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "experiments", "launch.py"), *args, f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "total " in line:  # a chunk has finished
            return proc, seen
    raise AssertionError("".join(seen) + proc.stderr.read())


def _records(workdir):
    import json

    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train = [r["global_step"] for r in rows if r["kind"] == "train"]
    evals = [r["global_step"] for r in rows if r["kind"] == "eval"]
    return train, evals


INTERRUPTIBLE = [a for a in TINY if not a.startswith("--config.num_steps")] + [
    "--config.num_steps=200", "--config.checkpoint_seconds=0"]  # 20 chunks; checkpoint_interval=0: none before the end


def test_ctrl_c_checkpoints_the_last_chunk_and_a_kill_without_checkpoint_restarts_without_duplicates(tiny_dataset, tmp_path):
    import json
    import re
    import signal

    interrupted, killed = str(tmp_path / "interrupted"), str(tmp_path / "killed")
    proc, _ = _start(INTERRUPTIBLE, interrupted)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    m = re.fullmatch(r"interrupted at update (\d+); rerun the same command to resume", err.strip())
    assert m and "Traceback" not in err, err[-2000:]
    step = int(m.group(1))
    assert 10 <= step < 200 and os.path.exists(os.path.join(interrupted, "checkpoint.msgpack"))
    assert _records(interrupted)[0][-1] == step
    resumed = launch(*INTERRUPTIBLE, f"--workdir={interrupted}")
    assert f"resuming {interrupted} at update {step}/200" in resumed.stdout
    assert f"compiling the first chunk (train stage, {10 - step % 10} updates)" in resumed.stdout

    proc, _ = _start(INTERRUPTIBLE, killed)  # SIGKILL: no checkpoint, records on disk
    proc.kill()
    proc.communicate(timeout=600)
    assert _records(killed)[0] and not os.path.exists(os.path.join(killed, "checkpoint.msgpack"))
    again = launch(*INTERRUPTIBLE, f"--workdir={killed}")
    assert "holds no checkpoint of this run: starting it again from update 0" in again.stdout
    for workdir in (interrupted, killed):  # every record once, in order
        train, evals = _records(workdir)
        assert train == list(range(10, 201, 10)) and evals == list(range(10, 201, 10)), (workdir, train, evals)
    # interrupting and resuming ends with the numbers of the run that trained straight through
    results = [json.load(open(os.path.join(w, "results.json"))) for w in (interrupted, killed)]
    assert results[0]["per_seed_raw"] == results[1]["per_seed_raw"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.grid=alpha=1,2"], "config.grid names 'alpha', which is not a config key: did you mean agent.alpha?"),
        (["--num_seeds=3"], "Unknown command line flag 'num_seeds' (did you mean --config.num_seeds?)"),
        (["--config=configs/td3bc.py:fast"], "configs/td3bc.py takes no words after ':' (got 'fast')"),
        (["--config.dataset=hopper-medium-v2"], "use offrl/hopper/medium-v0 (offrl's local suite, built offline), "
                                                "mujoco/hopper/medium-v0 (Minari's port, downloaded), or the path of D4RL's file"),
    ],
)
def test_what_a_d4rl_or_corl_user_types_gets_a_pointed_one_line_error(tiny_dataset, tmp_path, args, message):
    from test_newcomer import one_line_error

    workdir = str(tmp_path / "run")
    one_line_error(launch(*TINY, *args, f"--workdir={workdir}", check=False), message, workdir)


def test_a_workdir_of_another_algorithm_is_named_as_such(tiny_dataset, tmp_path):
    from offrl.launch import load_config

    workdir = tmp_path / "td3bc_run"
    workdir.mkdir()
    (workdir / "config.json").write_text(load_config("td3bc").to_json())
    args = ["--config=iql" if a.startswith("--config=") else a for a in TINY if "hidden_dims" not in a]
    proc = launch(*args, f"--workdir={workdir}", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert f"workdir {workdir} holds a td3bc run, not iql: choose another --workdir" in proc.stderr
    assert os.listdir(workdir) == ["config.json"]


def test_print_config_describes_switches_as_switches():
    from offrl.launch import describe, load_config

    rows = {line.split()[0]: line for line in describe(load_config("iql")).splitlines()[1:]}
    assert "switch: the actor's learning rate follows a cosine decay" in rows["agent.cosine_actor_lr"]
    assert all("learning rate" not in rows[k] or "switch" in rows[k] for k in rows if rows[k].split()[1] in ("True", "False"))


def test_results_say_what_they_mean_and_a_finished_workdir_says_it_is_complete(tiny_dataset, tmp_path):
    import json
    import re

    import numpy as np

    workdir = str(tmp_path / "run")
    grid = [a for a in TINY if not a.startswith("--config.num_steps")] + [
        "--config.num_steps=20", "--config.grid=agent.alpha=1,2", "--config.wandb.mode=offline"]
    proc = launch(*grid, f"--workdir={workdir}")
    # the progress line summarises each grid point; metrics.jsonl and wandb keep every member's own metrics
    assert re.search(r"train 20/20 \| alpha=1 -?[\d.]+ ± [\d.]+; alpha=2 -?[\d.]+ ± [\d.]+ \|", proc.stdout), proc.stdout
    train = [r for r in map(json.loads, open(os.path.join(workdir, "metrics.jsonl"))) if r["kind"] == "train"]
    for r in train:
        assert set(r["members"]) == {k for k in r if k.startswith("train/")} and len(r["members"]["train/critic_loss"]) == 4
        assert r["train/critic_loss"] == pytest.approx(np.mean(r["members"]["train/critic_loss"]))
    runs = sorted(d for d in os.listdir(os.path.join(workdir, "wandb")) if d.startswith("offline-run-"))
    assert len(runs) == 4  # one wandb run per member
    md = open(os.path.join(workdir, "results.md")).read()
    for text in ("- Dataset: test/hopper/tiny-v0 (", "- Budget: 20 updates (train 20), batch 32.", "- Seeds: 0, 1 per row",
                 "the mean of the last 1 of the 2 evaluations of the 'train' stage (updates 20), 2 episodes each",
                 "the mean over seeds ± the standard deviation over seeds"):
        assert text in md, md
    again = launch(*grid, f"--workdir={workdir}")
    assert f"{workdir} is complete (20 updates)" in again.stdout and "compiling the first chunk" not in again.stdout
    assert "alpha=1" in again.stdout and "alpha=2" in again.stdout


def test_the_default_workdir_is_the_same_for_the_same_command():
    from offrl.launch import default_workdir, load_config

    a, b, c = load_config("td3bc"), load_config("td3bc"), load_config("td3bc")
    b.eval_workers = 3  # how it runs, not what it computes
    c.agent.alpha = 5.0
    assert default_workdir(a) == default_workdir(b) != default_workdir(c)
    assert default_workdir(a).startswith(os.path.join("runs", "td3bc_offrl_hopper_medium-v0_"))


USER_ALGORITHM = '''"""A user's own algorithm, outside offrl: behaviour cloning with a Huber loss of width agent.delta."""
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl import nets
from offrl.algos import Algorithm, single_stage
from offrl.algos.common import adam, make_state
from offrl.checks import Checks


def default_config():
    return ml_collections.ConfigDict(dict(lr=1e-3, hidden_dims=(16, 16), delta=1.0))


class State(struct.PyTreeNode):
    actor: TrainState


def init(key, spec, config):
    net = nets.DeterministicPolicy(spec.act_dim, tuple(config.agent.hidden_dims))
    return State(make_state(key, net, (jnp.zeros((1, spec.obs_dim)),), adam(config.agent.lr)))


def update(state, batch, key, step, config):
    def loss_fn(params):
        err = state.actor.apply_fn(params, batch.observations) - batch.actions
        return optax.huber_loss(err, delta=config.agent.delta).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    return state.replace(actor=state.actor.apply_gradients(grads=grads)), {"huber": loss}


def act(state, obs, key, config, deterministic=True):
    return state.actor.apply_fn(state.actor.params, obs)


def validate(config):
    Checks(config.agent, "agent").above(0, "delta")


ALGORITHM = Algorithm(name="huber_bc", init=init, stages=lambda c: single_stage(update, c), act=act,
                      default_config=default_config, validate=validate, sweepable=("delta",))
'''


def test_an_algorithm_outside_the_package_runs_from_the_command_line(tiny_dataset, tmp_path):
    import json

    from test_newcomer import one_line_error

    path = tmp_path / "huber_bc.py"
    path.write_text(USER_ALGORITHM)
    args = [a for a in TINY if "hidden_dims" not in a] + [f"--config.algo={path}"]
    workdir = str(tmp_path / "run")
    shown = launch(*args, "--config.agent.delta=0.5", "--print_config", f"--workdir={workdir}")
    rows = {line.split()[0]: line.split()[1] for line in shown.stdout.split("\n\n")[0].splitlines()[1:]}
    assert {k for k in rows if k.startswith("agent.")} == {"agent.lr", "agent.hidden_dims", "agent.delta"}
    assert rows["agent.delta"] == "0.5"
    # the harness's checks: a bad value, a misspelt key, a grid over a key the record does not declare
    one_line_error(launch(*args, "--config.agent.delta=-1", f"--workdir={workdir}", check=False), "agent.delta=-1.0", workdir)
    one_line_error(launch(*args, "--config.agent.dleta=1", f"--workdir={workdir}", check=False),
                   "unknown config key 'agent.dleta': did you mean agent.delta", workdir)
    one_line_error(launch(*args, "--config.grid=agent.lr=1e-3,1e-4", f"--workdir={workdir}", check=False),
                   "cannot sweep 'agent.lr'", workdir)
    one_line_error(launch(*args[:-1], f"--config.algo={tmp_path}/nope.py", f"--workdir={workdir}", check=False),
                   "nope.py' does not exist", workdir)
    proc = launch(*args, "--config.grid=agent.delta=0.5,2", f"--workdir={workdir}")
    assert "normalised score" in proc.stdout
    res = json.load(open(os.path.join(workdir, "results.json")))
    assert [r["hparams"] for r in res["rows"]] == [{"agent.delta": 0.5}, {"agent.delta": 2.0}]
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert all(r["train/huber"] > 0 for r in rows if r["kind"] == "train")


def test_a_configs_words_are_shown_by_print_config_and_help(tmp_path):
    shown = launch("--config=bppo:cpu", "--print_config")
    about = shown.stdout.split("about this config (")[1]
    assert about.startswith("configs/bppo.py):") and "  cpu       a budget for a 2-core CPU" in about
    helped = launch("--help", check=False)  # absl: exit status 1 after --help
    assert "take words after ':' (e.g. bppo:cpu" in " ".join(helped.stdout.split()) and "arq, arq_s" in helped.stdout


def test_quiet_startup_silences_the_known_startup_noise():
    import warnings

    import numpy as np
    from absl import logging as absl_logging
    from arch.bootstrap import IIDBootstrap

    from offrl.launch import quiet_startup

    level = absl_logging.get_verbosity()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            quiet_startup()
            IIDBootstrap(np.arange(10), random_state=np.random.RandomState(0))  # what rliable's bootstrap does
            warnings.warn("an unrelated warning stays", UserWarning)
        assert [str(w.message) for w in caught] == ["an unrelated warning stays"]
        assert absl_logging.get_verbosity() == absl_logging.WARNING
    finally:
        absl_logging.set_verbosity(level)


def test_every_shipped_key_has_a_meaning_in_print_config():
    from offrl.launch import available_configs, describe, load_config

    for name in available_configs():
        rows = describe(load_config(name)).splitlines()[1:]
        vague = [row.split()[0] for row in rows if "see offrl/algos/" in row]
        assert not vague, (name, vague)


def test_a_finer_log_interval_logs_windows_and_changes_no_number(full_run, tmp_path):  # noqa: F811
    import json

    import numpy as np

    chunked, _ = full_run  # TINY: records once per 10-update chunk
    workdir = str(tmp_path / "fine")
    launch(*TINY, "--config.log_interval=5", f"--workdir={workdir}")

    def train(w):
        return [r for r in map(json.loads, open(os.path.join(w, "metrics.jsonl"))) if r["kind"] == "train"]

    fine, coarse = train(workdir), train(chunked)
    assert [r["global_step"] for r in fine] == [5, 10, 15, 20] and [r["global_step"] for r in coarse] == [10, 20]
    for a, b, c in zip(fine[::2], fine[1::2], coarse):  # two windows average to their chunk
        for k in c["members"]:
            assert np.allclose((np.array(a["members"][k]) + b["members"][k]) / 2, c["members"][k], rtol=1e-5, atol=1e-6), k
    results = [json.load(open(os.path.join(w, "results.json"))) for w in (workdir, chunked)]
    assert results[0]["per_seed_raw"] == results[1]["per_seed_raw"]  # the training is the same


def test_a_workdir_written_before_the_new_keys_existed_still_resumes(full_run, tmp_path):  # noqa: F811
    import json
    import shutil

    done, _ = full_run
    workdir = str(tmp_path / "older")
    shutil.copytree(done, workdir)
    path = os.path.join(workdir, "config.json")
    config = json.load(open(path))
    for key in ("checkpoint_seconds", "log_interval"):  # what an older offrl wrote lacks them
        del config[key]
    del config["wandb"]["per_member"]
    json.dump(config, open(path, "w"))
    again = launch(*TINY, f"--workdir={workdir}")
    assert f"{workdir} is complete (20 updates)" in again.stdout
    assert json.load(open(os.path.join(workdir, "results.json")))["per_seed_raw"] == \
        json.load(open(os.path.join(done, "results.json")))["per_seed_raw"]
