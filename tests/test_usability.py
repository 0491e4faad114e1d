"""What a new user meets: one meaning of num_steps, dataset sizes side by side, interrupting and
rerunning a run, per-member metrics, messages. Errors: exit status 2, one line, nothing written."""
import os

import pytest
from test_launcher import launch


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
    row = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()[2:]}
    assert (row["num_steps"], row["agent.v_steps"], row["agent.q_steps"], row["agent.bc_steps"], row["agent.pi_steps"]) == (
        "2000", "888", "888", "222", "5")  # pi_steps, set explicitly, keeps its value
    assert "scaled in proportion" in proc.stdout.splitlines()[0] and not os.path.exists(workdir)
