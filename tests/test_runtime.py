"""The runtime: seed-vmapped training equals seed-alone training; chunked equals one scan."""
import os
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, all_eqns, cond_eqns, size_one_batched_dots, tiny_config
from offrl.algos import get_algorithm
from offrl.data import load_dataset, preprocess
from offrl.train import make_train, seed_keys


@pytest.fixture(scope="module")
def td3bc_setup(tiny_dataset):
    cfg = tiny_config("td3bc", steps=12, num_seeds=3)
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    return cfg, make_train(get_algorithm("td3bc"), cfg, data)


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def test_vmapped_seeds_equal_single_seed_runs(td3bc_setup):
    cfg, tr = td3bc_setup
    keys = seed_keys(cfg.seed, cfg.num_seeds)
    carry_v, metrics_v = jax.jit(jax.vmap(tr.train))(keys)
    for i in range(cfg.num_seeds):
        carry_1, metrics_1 = jax.jit(tr.train)(seed_keys(cfg.seed + i, 1)[0])
        _close(jax.tree_util.tree_map(lambda x: x[i], carry_v.state.actor.params), carry_1.state.actor.params)
        _close(jax.tree_util.tree_map(lambda x: x[i], carry_v.state.critic.params), carry_1.state.critic.params)
        _close(jax.tree_util.tree_map(lambda x: x[i], metrics_v), metrics_1, tol=1e-4)
    # and the seeds really differ
    p = carry_v.state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(p[0], p[1])


def test_chunked_run_equals_one_scan(td3bc_setup):
    cfg, tr = td3bc_setup
    init, run = tr.vmapped()
    keys = seed_keys(0, 2)
    c = init(keys)
    whole, _ = run(c, tr.data, "train", 0, 12)
    part, _ = run(c, tr.data, "train", 0, 5)
    part, _ = run(part, tr.data, "train", 5, 7)
    _close(whole.state.actor.params, part.state.actor.params, tol=1e-6)
    _close(whole.key, part.key, tol=0)


def test_donating_run_gives_the_same_numbers_and_frees_its_input(td3bc_setup):
    from offrl.train import unaliased

    cfg, tr = td3bc_setup
    init, run = tr.vmapped()
    _, run_d = tr.vmapped(donate=True)
    c = init(seed_keys(0, 2))
    kept, _ = run(c, tr.data, "train", 0, 5)
    first = jax.tree_util.tree_leaves(c)[0]
    given, _ = run_d(c, tr.data, "train", 0, 5)
    _close(kept.state, given.state, tol=0)
    assert first.is_deleted()  # the chunk wrote its state over the one it was given
    # an after_chunk hook may put one array in two places; the runner copies the second before donating
    a = jax.numpy.arange(3.0)
    tree = unaliased({"pi": a, "pik": a, "other": jax.numpy.ones(2)})
    assert tree["pi"] is a and tree["pik"] is not a and tree["other"] is not a
    np.testing.assert_array_equal(tree["pik"], a)



def _grid_member_matches_alone(grid: str, point: dict, member: int, seed: int):
    """Train ``grid`` x 2 seeds vmapped; member ``member`` must equal a run of ``point`` with ``seed`` alone."""
    from offrl.sweep import members

    algo = get_algorithm("td3bc")
    cfg = tiny_config("td3bc", steps=6, num_seeds=2, grid=grid)
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    m = members(cfg, algo.sweepable)
    assert m.points[member // 2] == point and m.seed_list()[member] == seed
    tr = make_train(algo, cfg, data)
    keys = jax.numpy.stack([seed_keys(s, 1)[0] for s in m.seed_list()])
    carry, _ = jax.jit(jax.vmap(tr.train, in_axes=(0, None, 0)))(keys, data, m.hparams())
    alone_cfg = tiny_config("td3bc", steps=6, num_seeds=1, seed=seed, **point)
    alone, _ = jax.jit(make_train(algo, alone_cfg, data).train)(seed_keys(seed, 1)[0])
    _close(jax.tree_util.tree_map(lambda x: x[member], carry.state.critic_target), alone.state.critic_target)
    _close(jax.tree_util.tree_map(lambda x: x[member], carry.state.actor.params), alone.state.actor.params)
    return m, carry


def test_grid_member_equals_a_run_of_that_point_alone(tiny_dataset):
    from offrl.sweep import parse_grid

    m, _ = _grid_member_matches_alone("agent.alpha=1,5 agent.tau=0.005,0.5", {"agent.alpha": 5.0, "agent.tau": 0.5}, 7, 1)
    assert m.size == 8
    cfg = tiny_config("td3bc")
    with pytest.raises(ValueError, match="cannot sweep 'agent.hidden_dims'"):
        parse_grid("agent.hidden_dims=1,2", cfg, get_algorithm("td3bc").sweepable)
    with pytest.raises(ValueError, match="not a config key"):
        parse_grid("agent.nope=1", cfg, get_algorithm("td3bc").sweepable)


def test_learning_rate_grid_is_vmapped_and_each_member_equals_its_point_alone(tiny_dataset):
    """Learning rates live in the optimiser state (optax.inject_hyperparams), so they sweep in one program."""
    from offrl.algos.common import learning_rate_of

    point = {"agent.actor_lr": 1e-2, "agent.critic_lr": 1e-4}
    m, carry = _grid_member_matches_alone("agent.actor_lr=3e-4,1e-2 agent.critic_lr=1e-4,3e-3", point, 5, 1)
    lrs = np.asarray(learning_rate_of(carry.state.actor.opt_state))
    np.testing.assert_allclose(lrs, [3e-4, 3e-4, 3e-4, 3e-4, 1e-2, 1e-2, 1e-2, 1e-2], rtol=1e-6)
    # the two learning rates really gave different actors
    k = carry.state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(k[1], k[5])


def test_every_declared_sweepable_key_traces_in_graph(tiny_dataset):
    """Sweepability is declared: each algorithm's sweepable keys must really be read only arithmetically,
    i.e. a run whose every sweepable key is a traced value compiles (no ConcretizationTypeError)."""
    from offrl.algos import ALGORITHMS

    for name in ALGORITHMS:
        algo = get_algorithm(name)
        cfg = tiny_config(algo.config_file, steps=2, num_seeds=1)
        data, info = load_dataset(cfg.dataset)
        data, _ = preprocess(data, info, cfg)
        tr = make_train(algo, cfg, data)
        hp = {f"agent.{k}": jax.numpy.float32(cfg.agent[k]) for k in algo.sweepable}
        jax.eval_shape(lambda k, h: tr.train(k, data, h), seed_keys(0, 1)[0], hp)


def test_runner_trains_a_learning_rate_grid(tiny_dataset, tmp_path):
    """The runner's separately compiled init and chunks carry a swept learning rate through the optimiser state."""
    from offrl.runner import run_experiment

    cfg = tiny_config("td3bc", steps=4, num_seeds=1, grid="agent.actor_lr=1e-3,1e-2")
    cfg.eval_interval = 2
    summary = run_experiment(cfg, str(tmp_path / "lr_grid"), out=open(os.devnull, "w"))
    assert [r["hparams"] for r in summary["rows"]] == [{"agent.actor_lr": 1e-3}, {"agent.actor_lr": 1e-2}]


def test_diagnostics_run_outside_the_scan_change_no_state_and_are_logged(td3bc_setup, tmp_path):
    """TD3+BC's gradient-norm diagnostics are the record's ``diagnostics``: not computed by the scanned
    update, computed by ``Train.diagnose`` on one batch (each member as alone), leaving the carry as it
    was, and written to metrics.jsonl as diag/* by the runner."""
    import json

    from offrl import plugins
    from offrl.data.dataset import sample
    from offrl.runner import run_experiment
    from offrl.train import DIAGNOSTICS_STREAM

    cfg, tr = td3bc_setup
    init, run = tr.vmapped()
    carry, metrics = run(init(seed_keys(0, 2)), tr.data, "train", 0, 4)
    assert not {"grad_norm_pi", "grad_norm_data", "actor_loss", "lambda"} & set(metrics)
    before = jax.tree_util.tree_map(np.array, carry)
    diag = tr.vmapped_diagnose()(carry, tr.data, "train")
    _close(carry, before, tol=0)
    after, _ = run(carry, tr.data, "train", 4, 4)
    again, _ = run(jax.tree_util.tree_map(jax.numpy.asarray, before), tr.data, "train", 4, 4)
    _close(after, again, tol=0)
    for i in range(2):  # member i: the metric by hand on the batch its key draws
        member = jax.tree_util.tree_map(lambda x: x[i], carry)
        k_batch, _ = jax.random.split(jax.random.fold_in(member.key, DIAGNOSTICS_STREAM))
        b = sample(k_batch, tr.data, cfg.batch_size)
        s = member.state
        q1 = lambda o, a: s.critic.apply_fn(s.critic.params, o, a)[:1]  # noqa: E731
        want = plugins.grad_norm_metrics(q1, b.observations, s.actor.apply_fn(s.actor.params, b.observations), b.actions)
        for k in ("grad_norm_pi", "grad_norm_data"):
            np.testing.assert_allclose(float(diag[k][i]), float(want[k]), rtol=1e-5)
    off = cfg.copy_and_resolve_references()
    off.agent.log_grad_norm = False
    assert set(make_train(get_algorithm("td3bc"), off, tr.data).vmapped_diagnose()(carry, tr.data, "train")) == {
        "actor_loss", "bc_loss", "lambda"}

    run_cfg = tiny_config("td3bc", steps=4, num_seeds=2)
    run_cfg.eval_interval = 2
    wd = str(tmp_path / "diag")
    run_experiment(run_cfg, wd, out=open(os.devnull, "w"))
    train_rows = [r for r in map(json.loads, open(os.path.join(wd, "metrics.jsonl"))) if r.get("kind") == "train"]
    assert len(train_rows) == 2 and all(np.isfinite(r["diag/grad_norm_pi"]) and r["diag/grad_norm_data"] > 0 for r in train_rows)
    assert not any("train/grad_norm_pi" in r for r in train_rows)


def _cond_output_elements(fn, *args) -> int:
    """The largest total size of the outputs of any lax.cond in ``fn``'s jaxpr (nested jaxprs included)."""
    conds = cond_eqns(jax.make_jaxpr(fn)(*args).jaxpr)
    return max((sum(int(np.prod(v.aval.shape)) for v in e.outvars) for e in conds), default=0)


@pytest.mark.parametrize("name", ["td3bc", "bear"])
def test_gradient_penalty_branch_is_free_when_not_taken(name, tiny_dataset):
    """The update takes the GP gradient inside its lax.cond (``critic_grads``), equal to differentiating
    ``critic_objective`` through the cond, on penalised and unpenalised steps; no cond of the update
    returns more than a few parameter sets (differentiating through the cond made the untaken branch
    write ~25M zeros of residuals per step at default sizes)."""
    from offrl.data.dataset import sample
    from offrl.algos import Spec
    import importlib

    mod = importlib.import_module(f"offrl.algos.{name}")
    cfg = tiny_config(name, steps=4, num_seeds=1, **{"agent.gp.enabled": True, "agent.gp.k": 0.0})  # k 0: penalty > 0 when taken
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    spec = Spec(data.observations.shape[-1], data.actions.shape[-1])
    state = mod.init(jax.random.PRNGKey(0), spec, cfg)
    batch = sample(jax.random.PRNGKey(1), data, cfg.batch_size)
    key = jax.random.PRNGKey(2)
    for step in (0, 3, 5):
        g, info_g = mod.critic_grads(state.critic.params, state, batch, key, jax.numpy.int32(step), cfg)
        want, info_w = jax.grad(mod.critic_objective, has_aux=True)(state.critic.params, state, batch, key, jax.numpy.int32(step), cfg)
        _close(g, want, tol=1e-5)
        _close(info_g, info_w, tol=1e-5)
        assert (float(info_g["gp_penalty"]) > 0) == (step % cfg.agent.gp.every == 0)
    n_params = sum(np.size(x) for x in jax.tree_util.tree_leaves(state.critic.params))
    n_state = sum(np.size(x) for x in jax.tree_util.tree_leaves(state))
    update = lambda s, st: mod.update(s, batch, key, st, cfg)  # noqa: E731
    assert _cond_output_elements(update, state, jax.numpy.int32(1)) <= n_state + 2 * n_params + 64
    grad_through = lambda p, st: jax.grad(mod.critic_objective, has_aux=True)(p, state, batch, key, st, cfg)  # noqa: E731
    assert _cond_output_elements(grad_through, state.critic.params, jax.numpy.int32(1)) > n_state + 2 * n_params + 64


def test_policy_call_is_compiled_once_per_shape(td3bc_setup):
    """Evaluation's batched policy call is traced once: again after training, and for another evaluation."""
    from offrl.data.preprocess import Preprocessing
    from offrl.evaluation import evaluate, make_policy_fn

    import dataclasses

    cfg, tr = td3bc_setup
    init, run = tr.vmapped()
    carry = init(seed_keys(0, 2))
    algo = get_algorithm("td3bc")
    traces = []

    def act(*args, **kwargs):  # runs only while the policy call is traced
        traces.append(1)
        return algo.act(*args, **kwargs)

    policy_fn = make_policy_fn(dataclasses.replace(algo, act=act), cfg)
    obs_dim, act_dim = tr.spec
    pre = Preprocessing(np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32),
                        -np.ones(act_dim, np.float32), np.ones(act_dim, np.float32))
    for i in range(2):
        evaluate(policy_fn, carry.state, "Hopper-v5", 2, 100 + i, pre, max_steps=3)
        carry, _ = run(carry, tr.data, "train", 2 * i, 2)
    assert len(traces) == 1  # counted at trace time: not the C++ dispatch cache, whose size a long test session can change


def test_bench_counts_the_flops_of_the_branch_each_step_takes(td3bc_setup):
    """bench.update_flops traces each update with its step known: TD3+BC's actor step (step 0) costs
    more than a critic-only step (step 1), and the 2-step mean lies between; names are checked."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    cfg, tr = td3bc_setup
    actor_step = bench.update_flops(tr, "train", tr.data, 1)
    mean = bench.update_flops(tr, "train", tr.data, 2)
    critic_only = 2 * mean - actor_step
    assert actor_step > mean > critic_only > 0
    assert "td3bc" in bench.config_names("all") and "default" not in bench.config_names("all")
    with pytest.raises(ValueError, match="no config file configs/nope.py"):
        bench.load_config("nope")


def test_bench_instruction_bytes_count_one_update_and_the_costlier_branch():
    """bench.update_kernels' first figure: the scanned body's kernels, operands and output (x * 2 + y on 1000 floats: 3 x 4000
    bytes, plus the loop counter's 3 x 4), and a conditional at its costlier branch, not both."""
    import sys

    import jax.numpy as jnp
    from jax import lax

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    def count(body, *args):
        run = jax.jit(lambda c, *a: lax.scan(lambda c, i: (body(c, i, *a), None), c, jnp.arange(4))[0])
        return bench.update_kernels(run.lower(jnp.ones(1000), *args).compile().as_text())[0] * 1e6

    assert count(lambda c, i, y: c * 2.0 + y, jnp.ones(1000)) == pytest.approx(12012)
    # one fusion of 8 inputs: the printed program marks the sixth /*index=5*/, and it counts too (9 x 4000 + 12)
    xs = [jnp.full(1000, float(k)) for k in range(7)]
    assert count(lambda c, i, *a: sum(jnp.sin(c * x) for x in a), *xs) == pytest.approx(36012)
    big = jnp.ones((20, 1000))

    def costly(c, big):
        return c + jnp.sin(big * c).sum(0)  # reads and writes 20 x 1000 floats

    def cheaper(c, big):
        return c + jnp.cos(big[:5] * c).sum(0)  # reads and writes a quarter of that: its fusion reads the slice only

    alone = count(lambda c, i, big: costly(c, big), big), count(lambda c, i, big: cheaper(c, big), big)
    either = [count(lambda c, i, big: lax.cond(i % 2 == 0, *fs, c, big), big)
              for fs in ((costly, cheaper), (cheaper, costly))]
    # cheaper: (c + 5 rows of big) -> 5 rows; 5 rows -> their sum; c + sum; the counter (not 20 rows of big)
    assert alone[0] > 250_000 and alone[1] == pytest.approx((1 + 5 + 5) * 4000 + (5 + 1) * 4000 + 3 * 4000 + 12)
    # the costlier branch whichever it is, not the sum (the conditional adds a copy of its 1000-float result)
    assert either[0] == either[1] and alone[0] <= either[0] < alone[0] + alone[1] / 2


def test_bench_instruction_bytes_count_the_rows_a_gather_reads_not_its_table():
    """A sampled batch reads its rows of the dataset, not the dataset: a fusion's operand that it only indexes
    (gather, dynamic slice) counts the part it reads. Counted whole, a 4 MB table would be read every update,
    and ARQ's per-seed table of candidates made each added seed look 3-7x costlier than it is."""
    import sys

    import jax.numpy as jnp
    from jax import lax

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    def count(body, table):
        run = jax.jit(lambda c, t: lax.scan(lambda c, i: (body(c, i, t), None), c, jnp.arange(4))[0])
        return bench.update_kernels(run.lower(jnp.ones(1000), table).compile().as_text())[0] * 1e6

    table = jnp.ones((1000, 1000))  # 4 MB
    one_row = count(lambda c, i, t: c + t[i * 7], table)
    rows = count(lambda c, i, t: c + jnp.sin(t[(i * 7 + jnp.arange(8) * 101) % 1000]).sum(0), table)
    assert 3 * 4000 <= one_row < 10 * 4000  # c, its row, the sum (and the counter, the index)
    assert 8 * 4000 <= rows < 30 * 4000  # its 8 rows, not the 1000


def test_bench_kernel_count_of_one_update_and_the_branch_with_more():
    """bench.update_kernels' second figure: kernels one update launches (x * 2 + y: one fusion, plus the loop
    counter's add), a conditional at its branch with more kernels whichever way round, not their sum; and
    its third, the bytes of copy kernels: none for c * 2, some for a carry that swaps its halves."""
    import sys

    import jax.numpy as jnp
    from jax import lax

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    def kernels(body, *args):
        run = jax.jit(lambda c, *a: lax.scan(lambda c, i: (body(c, i, *a), None), c, jnp.arange(4))[0])
        return bench.update_kernels(run.lower(jnp.ones(1000), *args).compile().as_text())[1]

    assert kernels(lambda c, i, y: c * 2.0 + y, jnp.ones(1000)) == 2
    assert bench.update_kernels(jax.jit(lambda c: lax.scan(lambda c, i: (c * 2.0, None), c, jnp.arange(4))[0]).lower(
        jnp.ones(1000)).compile().as_text())[2] == 0
    # a carry whose two halves swap places every update cannot be updated in place: the loop copies them
    swap = jax.jit(lambda a, b: lax.scan(lambda c, i: ((c[1], c[0] * 2.0), None), (a, b), jnp.arange(4))[0])
    _, _, copied = bench.update_kernels(swap.lower(jnp.ones(1000), jnp.ones(1000)).compile().as_text())
    assert copied * 1e6 >= 2 * 8000 and copied * 1e6 % 8000 == 0  # each copy reads and writes 1000 floats
    big = jnp.ones((20, 1000))

    def few(c, big):
        return c + jnp.sin(big * c).sum(0)

    def many(c, big):  # a sort and a cumulative sum cannot join the reduction's fusion
        return jnp.cos(few(c, big)) + jnp.sort(c) + jnp.cumsum(c)

    alone = kernels(lambda c, i, big: few(c, big), big), kernels(lambda c, i, big: many(c, big), big)
    either = [kernels(lambda c, i, big: lax.cond(i % 2 == 0, *fs, c, big), big) for fs in ((few, many), (many, few))]
    assert alone[0] < alone[1]
    assert either[0] == either[1] and alone[1] < either[0] < alone[0] + alone[1]


def test_bench_gpu_target_refuses_what_it_cannot_compile_for():
    """--gpu_target: an unknown GPU names the known ones; a host not pinned to the CPU (JAX_PLATFORMS=cpu, which
    lets the CUDA plugin register without CUDA) is told so; without the plugin, the install line for jax's version."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments", "tools"))
    import bench

    with pytest.raises(ValueError, match="--gpu_target=a100: choose one of h100, h200"):
        bench.gpu_target_device("a100")
    platforms = jax.config.jax_platforms
    try:
        jax.config.update("jax_platforms", "")
        with pytest.raises(ValueError, match="run with JAX_PLATFORMS=cpu"):
            bench.gpu_target_device("h100")
        jax.config.update("jax_platforms", "cpu")
        try:
            bench.gpu_target_device("h100")
        except ValueError as e:  # this machine has no plugin: the message says how to get it
            assert f"pip install jax-cuda12-plugin=={jax.__version__}" in str(e)
    finally:
        jax.config.update("jax_platforms", platforms)
    text = bench.gpu_target_config("h200")
    assert "memory_bandwidth: 4800000000000" in text and "core_count: 132" in text and 'platform_name: "CUDA"' in text


def _vmapped(algo: str, num_seeds: int):
    """(Train, data, vmapped run, initial carry) of ``algo``'s tiny config with ``num_seeds`` members."""
    cfg = tiny_config(algo, steps=4, num_seeds=num_seeds)
    data, info = load_dataset(cfg.dataset)
    data, _ = preprocess(data, info, cfg)
    tr = make_train(get_algorithm(algo), cfg, data)
    init, run = tr.vmapped()
    return tr, data, run, init(seed_keys(0, num_seeds))


def test_one_member_runs_without_the_member_axis(tiny_dataset):
    """Train.vmapped's run with one member is the unvmapped ``run`` with the axis put back (nets.vmap_members):
    the same numbers bit for bit, and no matmul batched over an axis of size 1. Under a member axis of size 1,
    XLA's GPU program copied the critics' weights on every update (offrl.nets.vmap_members). IQL:
    TD3+BC's actor loss reads Q1 as an ensemble of one (nets.first_members), whose matmuls have that axis."""
    tr, data, run, carry = _vmapped("iql", 1)
    out, metrics = run(carry, data, "train", 0, 2)
    alone, metrics_1 = jax.jit(tr.run, static_argnums=(2, 4))(jax.tree_util.tree_map(lambda x: x[0], carry), data, "train", 0, 2)
    _close(jax.tree_util.tree_map(lambda x: x[0], out), alone, tol=0)
    _close(jax.tree_util.tree_map(lambda x: x[0], metrics), metrics_1, tol=0)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(carry)
    jaxpr = jax.make_jaxpr(run, static_argnums=(2, 4))(carry, data, "train", 0, 2).jaxpr
    assert [e for e in all_eqns(jaxpr) if e.primitive.name == "dot_general"] and not size_one_batched_dots(jaxpr)


def test_a_stage_begins_once_when_it_starts_and_not_when_it_resumes(tiny_dataset):
    """``Stage.begin`` runs before the stage's update at step 0 and not at a resumed chunk's first step, alone
    and seed-vmapped (the chunk's start is then a traced value). Onestep's improvement stage freezes pi_b
    there (``behavior_params``) and resets the actor's Adam; its updates no longer do either."""
    tr, data, run, carry = _vmapped("onestep", 2)
    carry, _ = run(carry, data, "behavior", 0, 2)  # the actor's Adam has counted 2 steps
    stale = jax.tree_util.tree_map(lambda x: x + 1.0, carry.state.behavior_params)
    carry = carry._replace(state=carry.state.replace(behavior_params=stale))
    count = lambda c: np.asarray(jax.tree_util.tree_leaves(c.state.actor.opt_state)[0])  # noqa: E731
    np.testing.assert_array_equal(count(carry), [2, 2])

    started, _ = run(carry, data, "train", 0, 1)
    _close(started.state.behavior_params, carry.state.actor.params, tol=0)  # pi_b: the actor as the stage began
    np.testing.assert_array_equal(count(started), [1, 1])  # a fresh Adam, then one step
    resumed, _ = run(carry, data, "train", 3, 1)
    _close(resumed.state.behavior_params, stale, tol=0)
    np.testing.assert_array_equal(count(resumed), [3, 3])
    alone, _ = jax.jit(tr.run, static_argnums=(2, 4))(jax.tree_util.tree_map(lambda x: x[1], carry), data, "train", 0, 1)
    _close(alone.state, jax.tree_util.tree_map(lambda x: x[1], started.state))


@pytest.mark.parametrize("flag, message", [
    ("--seeds=0,4", "--seeds=0,4: give comma-separated seed counts of at least 1"),
    ("--seeds=1,four", "--seeds=1,four: give comma-separated seed counts of at least 1"),
    ("--chunk=0", "--chunk=0: give a value of at least 1"),
    ("--stages=trian", "--stages: no config here has a stage trian; their stages: bc: train"),
])
def test_bench_refuses_bad_flags_in_one_line_before_timing_anything(flag, message):
    import subprocess

    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "tools", "bench.py"), "--config=bc", flag],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "machine:" not in proc.stdout, proc.stderr[-2000:]
