"""Throughput of the seed-vmapped runtime for any config, stage by stage, against the machine's limit.

    python experiments/tools/bench.py --config=td3bc            # one config file (configs/<name>.py)
    python experiments/tools/bench.py --config=cql,iql          # several
    python experiments/tools/bench.py --config=all              # every config file (not default.py)
    python experiments/tools/bench.py --config=td3bc --seeds=1,4,16 --min_time=5
    python experiments/tools/bench.py --config=arq,arq_s --stages=q,policy --chunk=100   # some stages only
    python experiments/tools/bench.py --config=all --config_timeout=600   # each config in its own process, hangs reported

For every stage of the config's algorithm (stages are named; ``Train.run`` takes the name), at
the config's own network sizes and batch, on a synthetic dataset with Hopper's shapes (11-d
observations, 3-d actions, ``--size`` transitions):

- compile time of one chunk (``--chunk`` updates in one ``lax.scan``), per number of seeds;
- updates/s per seed and seed-updates/s at each ``--seeds`` count (median over timed calls of
  at least ``--min_time`` seconds in all);
- FLOPs per update: XLA's cost analysis of one update, averaged over the stage's first
  ``--flops_steps`` updates (traced with the step known, so every ``lax.cond`` counts the branch
  that step takes; XLA's analysis of a whole chunk counts a ``while`` body once and a ``cond`` by
  its costlier branch), and the GFLOP/s the measured rate reaches;
- share of the machine's limit: that GFLOP/s over the GFLOP/s of a dense float32 matmul
  (``--matmul``) timed between the same chunks (calls interleaved), so a busy machine slows both.

For td3bc, the same seeds are also timed against a minimal hand-written jitted TD3+BC
(``minimal_td3bc``: plain ``jax.numpy`` MLPs, ``lax.scan``, in-graph sampling, no diagnostics,
the paper's hyperparameters), the calls interleaved so the ratio is robust to a busy machine;
the ratio column is offrl's rate over the minimal one's (goal: >= 0.9).

ARQ (``agent.support='pregenerated'``, the default): a real run fills a candidate table once, at the
end of the ``score`` stage, and the ``q`` and ``policy`` updates look candidates up by the sampled
rows. Before those stages (and their FLOP count) every member is given such a table
(``synthetic_support``): pre-generation's own layout (``arq.support_rows``, ``arq.with_support``)
and real shapes and dtypes, with SYNTHETIC values, since a lookup's cost does not depend on them.
Without it each update would run the 500-step PC sampler in-graph, which no real run does.
The chunk donates its carry, as the runner's does (``Train.vmapped(donate=True)``), so the table
(about 460 MiB per seed for 1M states) is updated in place rather than copied on every call.

``--sampler`` (configs of ARQ, e.g. ``--config=arq --sampler``): instead of the stage updates, the
pre-generation stage that ARQ spends its compute on. The score model is trained for
``--sampler_train`` DSM updates through the runtime's ``standardize`` and ``score`` stages (the
ODE's step count depends on how smooth the learned field is), then, vmapped over seeds as
pre-generation is, at each ``--sampler_states`` count (states per call, each with
``agent.num_candidates`` candidates): candidates/s of the PC sampler (``agent.sampler_steps``, 500
unless ``--sampler_steps``) and likelihoods/s of the probability-flow ODE (Dopri5, rtol = atol =
1e-5) for each ``--sampler_traces`` estimator (hutchinson: 10 Rademacher probes; exact), each the
mean of ``--sampler_repeats`` calls after the compiling one.

``--eval``: instead of the updates, one evaluation as the runner makes it (``offrl.evaluation``),
for each ``--eval_workers`` value of ``config.eval_workers``: the config's ``num_seeds`` x
``eval_episodes`` environments of ``--eval_env`` (default Hopper-v5 with
``terminate_when_unhealthy=False``, so every episode runs its full 1000 steps, as a trained policy's
does), freshly initialised policies. Reports the environments' start-up, seconds per evaluation
(the second call: the policy is compiled by then), environment steps/s, and the evaluation time of
the config's whole run (its evaluations x that).

``--traffic``: instead of timing, XLA's cost analysis of each stage's compiled chunk at each seed count
(on the device it runs on, with that backend's fusion): GFLOP and MB of memory accessed per update (a
``while`` body is counted once, i.e. one update, and a ``cond`` at its costlier branch), the MB each
added seed brings (the difference to the seed count before it, per seed; the analysis counts a
gather's whole operand, the dataset, once per update whatever the seed count, and the difference
removes it), and, with ``--bandwidth`` (GB/s of the device's memory), the time the seeds' traffic
(seeds x MB per added seed) takes at that bandwidth: for the question of why many seeds cost more
than one on a GPU. The counts follow the compiled program's fusions, so the same flag on a GPU gives
the GPU's own. Beside XLA's figure, a second count from the compiled program's text
(``update_kernels``): the bytes of every top-level instruction of one update (the scanned body; a
nested loop's body once, a ``conditional`` at its costlier branch), its operands and its output,
i.e. what each kernel reads and writes if nothing stays in cache, except that of an operand a kernel
only indexes (a gather, a slice) it counts the part read: the batch's rows, not the dataset, and not
ARQ's per-seed table of candidates, which XLA's figure counts whole for every added seed. Per added
seed the two agree within 1% on the CPU where no per-seed table is indexed (td3bc, iql). Then the
number of kernels one update launches, and the MB its ``copy`` kernels move: work that computes
nothing, which the GPU program showed where the CPU's did not (a ``cond`` returning its state, an axis
of size 1, docs/performance.md).

``--traffic --gpu_target=h100`` (or ``h200``) compiles the same chunks for that GPU without one
present (XLA's deviceless compilation, from a target description of the GPU: ``GPU_TARGETS``), so
the kernel counts and bytes are the GPU compiler's own on a machine without a GPU; XLA gives no
cost analysis there, and ``--bandwidth`` defaults to the GPU's. It needs the jax CUDA plugin of
jax's version and the host on the CPU:
``pip install jax-cuda12-plugin==$(python -c 'import jax; print(jax.__version__)')``, then
``JAX_PLATFORMS=cpu python experiments/tools/bench.py --traffic --gpu_target=h200 --config=td3bc,iql --seeds=4,16,64``.

``--memory``: the compiled chunk's memory (XLA memory analysis: arguments, outputs, temporaries)
for an AntMaze-sized dataset (2M transitions, 111-d observations, 8-d actions), given as shapes
so nothing is allocated, at each seed count: the dataset is an argument shared by all members,
and the temporaries must not grow by a dataset per member. ``--memory_run`` also allocates it
and runs one chunk, reporting the device's peak (``memory_stats``) or the process's peak RSS.
"""
from __future__ import annotations

import faulthandler
import functools
import glob
import importlib
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/tools/ -> the repository
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.extend  # noqa: E402,F401  (jaxpr_as_fun for the FLOP count)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402

from offrl.algos import get_algorithm  # noqa: E402
from offrl.envpool import available_cores  # noqa: E402
from offrl.launch import UsageError, fail  # noqa: E402
from offrl.data.dataset import Transitions, sample  # noqa: E402
from offrl.train import make_train, seed_keys, unaliased  # noqa: E402

flags.DEFINE_string("config", "td3bc", "Config file name(s) in configs/, comma-separated, or 'all'.")
flags.DEFINE_string("seeds", "1,4", "Comma-separated numbers of vmapped seeds.")
flags.DEFINE_string("stages", "", "Comma-separated stage names to time (each config times those it has); empty: every stage.")
flags.DEFINE_integer("chunk", 50, "Updates per compiled call (lax.scan length).")
flags.DEFINE_float("min_time", 3.0, "Seconds of timed calls per (stage, seeds) after the warm-up call.")
flags.DEFINE_integer("size", 1_000_000, "Synthetic dataset size (Hopper shapes: 11-d observations, 3-d actions).")
flags.DEFINE_integer("flops_steps", 10, "Updates whose FLOPs are averaged (covers periods 1, 2, 5, 10); 0: no FLOP "
                     "count (it traces each update under jax.disable_jit, which unrolls every scan inside an update, "
                     "e.g. ARQ's 500-step sampler, in Python), so no share of the matmul either.")
flags.DEFINE_integer("matmul", 1024, "Size n of the n x n x n float32 matmul that measures the machine's limit.")
flags.DEFINE_bool("baseline", True, "For td3bc: also time the minimal hand-written TD3+BC, interleaved.")
flags.DEFINE_bool("sampler", False, "ARQ configs: time pre-generation (PC sampler, ODE likelihood), not the stage updates.")
flags.DEFINE_string("sampler_states", "8,32", "With --sampler: states per call, comma-separated (x agent.num_candidates rows).")
flags.DEFINE_string("sampler_traces", "hutchinson,exact", "With --sampler: divergence estimators to time, comma-separated.")
flags.DEFINE_integer("sampler_steps", 0, "With --sampler: PC sampler steps (0: the config's agent.sampler_steps).")
flags.DEFINE_integer("sampler_train", 200, "With --sampler: DSM updates of the score model before timing.")
flags.DEFINE_integer("sampler_repeats", 1, "With --sampler: timed calls after the compiling one.")
flags.DEFINE_float("config_timeout", 0.0, "If > 0: each config runs in its own process, stopped after this many seconds "
                   "(its Python stacks dumped first), and the table goes on; 0: all configs in this process.")
flags.DEFINE_bool("header", True, "Print the machine, matmul and table header (off in --config_timeout's per-config processes).")
flags.DEFINE_string("profile_dir", "", "If set: after timing each (stage, seeds), run 2 more chunks under jax.profiler.trace "
                    "into <profile_dir>/<config>_<stage>_<seeds> (read with xprof / TensorBoard's profile plugin).")
flags.DEFINE_bool("eval", False, "Time one evaluation of each config (see the docstring), not its updates.")
flags.DEFINE_string("eval_workers", "1,0", "With --eval: config.eval_workers values to time, comma-separated (0: auto).")
flags.DEFINE_string("eval_env", "Hopper-v5:terminate_when_unhealthy=False",
                    "With --eval: the environment id, with ':key=value,...' keyword arguments for gym.make.")
flags.DEFINE_bool("traffic", False, "Report XLA's FLOPs and bytes accessed per update of each compiled chunk, per seed count "
                  "(see the docstring), not timings.")
flags.DEFINE_float("bandwidth", 0.0, "With --traffic: the device's memory bandwidth in GB/s (e.g. 4800 for an H200), for "
                   "the time the bytes take at it; 0: not shown.")
flags.DEFINE_string("gpu_target", "", "With --traffic: compile for this GPU (h100 or h200) without one present "
                    "(XLA's deviceless compilation; needs JAX_PLATFORMS=cpu and the jax CUDA plugin), so the counts are the "
                    "GPU compiler's own.")
flags.DEFINE_bool("memory", False, "Report compiled memory for an AntMaze-sized dataset (2M x 111-d obs).")
flags.DEFINE_bool("memory_run", False, "With --memory: also allocate that dataset and run one chunk.")
FLAGS = flags.FLAGS

NOT_CONFIGS = ("default", "__init__")


def synthetic(n, obs_dim=11, act_dim=3, seed=0, episode_len=1000):
    """Random values laid out as a dataset of ``episode_len``-step episodes (Hopper's limit): within
    an episode a row's next state is the following row's state, so tables keyed by distinct states
    (ARQ's support) have a real dataset's row count, n + n / episode_len."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    obs, act, ep = f(n, obs_dim), np.tanh(f(n, act_dim)), np.arange(n, dtype=np.int32) // episode_len
    last = np.append(ep[1:] != ep[:-1], True)  # each episode's last row: its next state is new
    nxt = np.concatenate([obs[1:], f(1, obs_dim)])
    nxt[last] = f(int(last.sum()), obs_dim)
    nact = np.concatenate([act[1:], act[:1]])
    j = jnp.asarray
    return Transitions(
        observations=j(obs), actions=j(act), rewards=j(f(n)), next_observations=j(nxt), terminals=jnp.zeros(n),
        timeouts=j(last.astype(np.float32)), next_actions=j(nact), returns=j(f(n)), episode_ids=j(ep),
    )


def synthetic_support(states, data, config, seed=0):
    """ARQ's support table as ``arq.pregenerate`` lays it out for ``data`` (``arq.support_rows``,
    ``arq.with_support``: a row per distinct state, ``agent.num_candidates`` candidates, their
    log-likelihoods, ``at_next``), with SYNTHETIC values: candidates uniform in the action box,
    log-likelihoods normal around ``agent.threshold`` (about half in support). The updates' work is a
    lookup whose cost does not depend on the values; pre-generation itself is ``--sampler``'s."""
    from offrl.algos import arq

    _, at_next = arq.support_rows(data)
    lead = tuple(np.shape(states.alpha))
    m, c, a = int(np.max(at_next)) + 1, int(config.agent.num_candidates), int(data.actions.shape[-1])
    ka, kl = jax.random.split(jax.random.PRNGKey(seed))
    fill = jax.jit(lambda ka, kl: (jax.random.uniform(ka, lead + (m, c, a), minval=-1.0, maxval=1.0),
                                   config.agent.threshold + 3.0 * jax.random.normal(kl, lead + (m, c))))
    actions, log_lik = fill(ka, kl)
    return arq.with_support(states, at_next, actions, log_lik)


def needs_support(cfg, stages, stage: str) -> bool:
    """ARQ with a pre-generated table: the stages after ``score`` (the table is filled at its end)."""
    names = [s.name for s in stages]
    return (cfg.algo == "arq" and cfg.agent.support == "pregenerated" and "score" in names
            and names.index(stage) > names.index("score"))


def dataset_shapes(n, obs_dim, act_dim) -> Transitions:
    """A dataset as shapes only (jax.ShapeDtypeStruct): compiled and analysed, never allocated."""
    s = jax.ShapeDtypeStruct
    f32 = jnp.float32
    return Transitions(
        observations=s((n, obs_dim), f32), actions=s((n, act_dim), f32), rewards=s((n,), f32),
        next_observations=s((n, obs_dim), f32), terminals=s((n,), f32), timeouts=s((n,), f32),
        next_actions=s((n, act_dim), f32), returns=s((n,), f32), episode_ids=s((n,), jnp.int32),
    )


def machine() -> str:
    d = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{len(jax.devices())} x {d.device_kind} ({d.platform}), host {cpu}, {os.cpu_count()} cores "
            f"(load average {load:.1f} at start), jax {jax.__version__}")


def config_names(arg: str) -> list[str]:
    if arg == "all":
        names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
        return [n for n in names if n not in NOT_CONFIGS and hasattr(importlib.import_module(f"configs.{n}"), "get_config")]
    return [n.strip() for n in arg.split(",") if n.strip()]


def load_config(name: str):
    """configs/<name>.py's config; ValueError naming the choices when there is no such file."""
    path = os.path.join(ROOT, "configs", f"{name}.py")
    mod = importlib.import_module(f"configs.{name}") if os.path.exists(path) else None
    if mod is None or not hasattr(mod, "get_config"):
        raise UsageError(f"no config file configs/{name}.py: choose one of {', '.join(config_names('all'))} or 'all'")
    return mod.get_config()


# ------------------------------------------------------------------------------- the machine's limit
def matmul_gflops(n: int, min_time: float = 1.0) -> float:
    """GFLOP/s of an n x n x n float32 matmul (2 n^3 FLOPs), median over calls."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a, b = jax.random.normal(k1, (n, n)), jax.random.normal(k2, (n, n))
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    times, t_end = [], time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 3:
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9


class Matmul:
    """One n x n x n float32 matmul per call, interleaved with the timed chunks: on a shared machine
    the limit is measured in the same seconds as the rate it is compared with."""

    def __init__(self, n: int):
        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        self.a, self.b, self.flops = jax.random.normal(k1, (n, n)), jax.random.normal(k2, (n, n)), 2 * n**3
        self.f = jax.jit(lambda x, y: x @ y)
        self(0)

    def __call__(self, i):
        self.f(self.a, self.b).block_until_ready()


def update_flops(tr, stage_name: str, data, num_steps: int, prepare=lambda state: state) -> float:
    """FLOPs of one update of the stage (one member), averaged over its first ``num_steps`` updates.

    Each update is traced with its step as a known number under ``jax.disable_jit``, so every
    ``lax.cond`` on the step resolves to the branch that step takes; XLA's cost analysis of the
    lowered update then counts what that step computes. ``prepare`` gives the state what the stage
    finds in a real run (ARQ's support table)."""
    stage = next(s for s in tr.stages if s.name == stage_name)
    carry = tr.init(jax.random.PRNGKey(0))
    carry = carry._replace(state=prepare(carry.state))
    total = 0.0
    n = max(1, min(num_steps, stage.num_steps or num_steps))
    for step in range(n):
        def one(state, key, data, step=step):
            k_batch, k_update = jax.random.split(key)
            return stage.update(state, sample(k_batch, data, stage.batch_size), k_update, step)

        with jax.disable_jit():
            closed = jax.make_jaxpr(one)(carry.state, carry.key, data)
        args = jax.tree_util.tree_leaves((carry.state, carry.key, data))
        lowered = jax.jit(jax.extend.core.jaxpr_as_fun(closed)).lower(*args)
        cost = lowered.cost_analysis()
        if cost is None:  # the GPU backend analyses compiled programs only
            cost = lowered.compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        if not cost:
            return float("nan")
        total += float(cost.get("flops", 0.0))
    return total / n


# ------------------------------------------------------------------------------- minimal TD3+BC
def _mlp_init(key, sizes):
    layers = []
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        kw, kb = jax.random.split(k)
        bound = 1.0 / np.sqrt(fan_in)  # PyTorch's nn.Linear initialisation
        layers.append((jax.random.uniform(kw, (fan_in, fan_out), minval=-bound, maxval=bound),
                       jax.random.uniform(kb, (fan_out,), minval=-bound, maxval=bound)))
    return layers


def _mlp(layers, x):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i + 1 < len(layers):
            x = jax.nn.relu(x)
    return x


def minimal_td3bc(obs_dim: int, act_dim: int, hidden: int = 256, batch_size: int = 256):
    """(init(key) -> state, run(state, data, start, length) -> state): TD3+BC as the paper's code
    (two critics, policy noise 0.2 clipped at 0.5, actor and targets every 2nd step, alpha 2.5,
    lr 3e-4, tau 0.005, discount 0.99), written directly in jax.numpy; the yardstick for offrl's
    runtime overhead."""
    opt = optax.adam(3e-4)

    def pi(p, s):
        return jnp.tanh(_mlp(p, s))

    def q(p, s, a):
        return _mlp(p, jnp.concatenate([s, a], -1))[:, 0]

    def init(key):
        ka, k1, k2, key = jax.random.split(key, 4)
        actor = _mlp_init(ka, [obs_dim, hidden, hidden, act_dim])
        critic = (_mlp_init(k1, [obs_dim + act_dim, hidden, hidden, 1]), _mlp_init(k2, [obs_dim + act_dim, hidden, hidden, 1]))
        return dict(actor=actor, critic=critic, actor_t=actor, critic_t=critic, opt_a=opt.init(actor),
                    opt_c=opt.init(critic), key=key)

    def step(st, i, data):
        key, k_idx, k_noise = jax.random.split(st["key"], 3)
        idx = jax.random.randint(k_idx, (batch_size,), 0, data.observations.shape[0])
        s, a, r, s2, d = (jnp.take(x, idx, axis=0) for x in
                          (data.observations, data.actions, data.rewards, data.next_observations, data.terminals))
        noise = jnp.clip(0.2 * jax.random.normal(k_noise, a.shape), -0.5, 0.5)
        a2 = jnp.clip(pi(st["actor_t"], s2) + noise, -1.0, 1.0)
        c1t, c2t = st["critic_t"]
        y = jax.lax.stop_gradient(r + 0.99 * (1.0 - d) * jnp.minimum(q(c1t, s2, a2), q(c2t, s2, a2)))

        def critic_loss(c):
            return ((q(c[0], s, a) - y) ** 2).mean() + ((q(c[1], s, a) - y) ** 2).mean()

        g = jax.grad(critic_loss)(st["critic"])
        upd, opt_c = opt.update(g, st["opt_c"], st["critic"])
        critic = optax.apply_updates(st["critic"], upd)

        def actor_step(x):
            actor, opt_a, actor_t, critic_t = x

            def actor_loss(p):
                pa = pi(p, s)
                qv = q(critic[0], s, pa)
                return -(2.5 / jax.lax.stop_gradient(jnp.abs(qv).mean())) * qv.mean() + ((pa - a) ** 2).mean()

            upd, opt_a = opt.update(jax.grad(actor_loss)(actor), opt_a, actor)
            actor = optax.apply_updates(actor, upd)
            polyak = lambda t, o: jax.tree_util.tree_map(lambda u, v: 0.995 * u + 0.005 * v, t, o)  # noqa: E731
            return actor, opt_a, polyak(actor_t, actor), polyak(critic_t, critic)

        x = (st["actor"], st["opt_a"], st["actor_t"], st["critic_t"])
        actor, opt_a, actor_t, critic_t = jax.lax.cond(i % 2 == 0, actor_step, lambda x: x, x)
        return dict(actor=actor, critic=critic, actor_t=actor_t, critic_t=critic_t, opt_a=opt_a, opt_c=opt_c, key=key), None

    def run(st, data, start, length):
        steps = jnp.asarray(start, jnp.int32) + jnp.arange(length, dtype=jnp.int32)
        return jax.lax.scan(lambda c, i: step(c, i, data), st, steps)[0]

    return init, run


# ------------------------------------------------------------------------------- timing
def time_calls(fns: list, min_time: float) -> list[list[float]]:
    """Seconds per call of each of ``fns`` (argument: call index), called in turn A B A B ... so
    that they share the machine's state; at least 3 rounds and ``min_time`` seconds."""
    times = [[] for _ in fns]
    t_end = time.perf_counter() + min_time
    i = 0
    while time.perf_counter() < t_end or i < 3:
        for j, f in enumerate(fns):
            t = time.perf_counter()
            f(i)
            times[j].append(time.perf_counter() - t)
        i += 1
    return times


class Chunked:
    """A compiled, seed-vmapped chunk of one stage, called repeatedly on its own carry."""

    def __init__(self, run, carry, data, stage, chunk):
        self.data, self.chunk = data, chunk
        t = time.perf_counter()
        self.compiled = run.lower(carry, data, stage, 0, chunk).compile()
        self.compile_s = time.perf_counter() - t
        self.carry = unaliased(carry)  # one buffer cannot be donated twice
        self(0)  # warm-up

    def __call__(self, i):
        self.carry, m = self.compiled(self.carry, self.data, (i + 1) * self.chunk)
        jax.block_until_ready((self.carry, m))


class MinimalChunked(Chunked):
    def __init__(self, run, carry, data, chunk):
        self.data, self.chunk = data, chunk
        t = time.perf_counter()
        self.compiled = jax.jit(jax.vmap(run, in_axes=(0, None, None, None)), static_argnums=3).lower(
            carry, data, 0, chunk).compile()
        self.compile_s = time.perf_counter() - t
        self.carry = carry
        self(0)

    def __call__(self, i):
        self.carry = self.compiled(self.carry, self.data, (i + 1) * self.chunk)
        jax.block_until_ready(self.carry)


def config_stages(name: str, data):
    """(cfg, algo, tr, init, run, [(stage, prepare)]): config ``name``'s runtime (its chunks donate their
    carry, as the runner's) and the stages with updates that ``--stages`` selects, each with what its
    state needs first (``prepare``: ARQ's later stages get a support table, ``synthetic_support``)."""
    cfg = load_config(name)
    algo = get_algorithm(cfg.algo)
    algo.validate(cfg)
    tr = make_train(algo, cfg, data)
    init, run = tr.vmapped(donate=True)
    wanted = {s.strip() for s in FLAGS.stages.split(",") if s.strip()}  # checked in main
    stages = []
    for st in tr.stages:
        if not st.num_steps or (wanted and st.name not in wanted):
            continue
        prepare = lambda state: state  # noqa: E731
        if needs_support(cfg, tr.stages, st.name):
            prepare = lambda state: synthetic_support(state, data, cfg)  # noqa: E731
        stages.append((st, prepare))
    return cfg, algo, tr, init, run, stages


def bench_config(name: str, data, seeds: list[int], out: list):
    cfg, algo, tr, init, run, stages = config_stages(name, data)
    hidden = {k: tuple(v) for k, v in cfg.agent.items() if k.endswith("hidden_dims")}
    listed = ', '.join(f"{s.name} ({s.num_steps} updates, batch {s.batch_size or 'all'})" for s in tr.stages)
    print(f"\n{name} ({algo.variant_name(cfg)}): stages {listed}; "
          f"networks {hidden}", flush=True)
    baseline = FLAGS.baseline and name == "td3bc"
    if baseline:
        m_init, m_run = minimal_td3bc(data.observations.shape[-1], data.actions.shape[-1],
                                      tuple(cfg.agent.hidden_dims)[0], cfg.batch_size)
    for st, prepare in stages:
        if needs_support(cfg, tr.stages, st.name):
            print(f"{name} {st.name}: support table of pre-generation's layout with synthetic values (bench.synthetic_support)",
                  flush=True)
        flops = update_flops(tr, st.name, data, FLAGS.flops_steps, prepare) if FLAGS.flops_steps > 0 else float("nan")
        for n in seeds:
            carry = init(seed_keys(0, n))
            a = Chunked(run, carry._replace(state=prepare(carry.state)), data, st.name, FLAGS.chunk)
            mm = Matmul(FLAGS.matmul)
            fns = [a, mm]
            if baseline:
                b = MinimalChunked(m_run, jax.vmap(m_init)(seed_keys(0, n)), data, FLAGS.chunk)
                fns.append(b)
            times = time_calls(fns, FLAGS.min_time)
            if FLAGS.profile_dir:  # kernels and their times, e.g. why 16 seeds cost more than one on a GPU
                with jax.profiler.trace(os.path.join(FLAGS.profile_dir, f"{name}_{st.name}_{n}")):
                    for i in range(2):
                        a(10_000 + i)
            ups = FLAGS.chunk / float(np.median(times[0]))
            gflops = flops * ups * n / 1e9
            peak = mm.flops / float(np.median(times[1])) / 1e9  # the limit, measured between the chunks
            row = dict(config=name, stage=st.name, seeds=n, compile_s=a.compile_s, updates_per_s=ups,
                       seed_updates_per_s=ups * n, gflop_per_update=flops / 1e9, gflops=gflops, matmul_gflops=peak,
                       share=gflops / peak)
            ratio = ""
            if baseline:
                r = np.median(np.asarray(times[2]) / np.asarray(times[0]))
                row.update(minimal_updates_per_s=FLAGS.chunk / float(np.median(times[2])), ratio=float(r),
                           minimal_compile_s=b.compile_s)
                ratio = f"{r:.2f} (minimal {row['minimal_updates_per_s']:.0f}/s)"
            out.append(row)
            print(f"| {name} | {st.name} | {n} | {a.compile_s:.1f} | {ups:.1f} | {ups * n:.1f} | {flops / 1e9:.3f} | "
                  f"{gflops:.1f} | {peak:.0f} | {100 * gflops / peak:.0f}% | {ratio} |", flush=True)
    return cfg, algo


_SHAPE = re.compile(r"\b(pred|[subf]\d+)\[([0-9,]*)\]")


def _shape_bytes(text: str) -> int:
    """Bytes of every array shape written in ``text`` (an HLO instruction: its output and operands)."""
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        size = 1 if dtype == "pred" else max(int(dtype[1:]) // 8, 1)
        total += size * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


_NOT_KERNELS = ("", "parameter", "get-tuple-element", "tuple", "constant", "bitcast")
_PARTIAL_READS = ("gather", "dynamic-slice", "slice")  # read only the part they return of their first operand
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?(%[\w.\-]+) = (.*?)\s([a-z\-]+)\(([^)]*)\)")


def _instructions(lines: list[str]) -> list[tuple[str, str, str, list[str], str]]:
    """A computation's instructions: (name, output shape, opcode, operand names, the line)."""
    out = []
    for line in lines:
        m = _INSTRUCTION.match(line)
        if m:
            operands = re.sub(r"/\*.*?\*/", "", m.group(4))  # the printer marks every fifth operand /*index=5*/
            out.append((m.group(1), m.group(2), m.group(3), [o.strip() for o in operands.split(",") if o.strip()], line))
    return out


def _partial_reads(lines: list[str]) -> dict[int, int]:
    """Of a fused computation's parameters, those it only indexes (a gather, a dynamic or static slice,
    through bitcasts): parameter number -> the bytes of the parts it reads. A gather's whole operand
    (the dataset, ARQ's per-seed table of candidates) is not what it reads."""
    ins = {name: rest for name, *rest in _instructions(lines)}
    users = {}
    for name, (_, _, operands, _) in ins.items():
        for i, o in enumerate(operands):
            users.setdefault(o, []).append((name, i))

    def read(name):  # bytes read of ``name`` if only parts of it are, else None
        total = 0
        for user, i in users.get(name, []):
            shape, op, _, _ = ins[user]
            if op == "bitcast":
                part = read(user)
            elif op in _PARTIAL_READS and i == 0:
                part = _shape_bytes(shape)
            else:
                return None
            if part is None:
                return None
            total += part
        return total

    out = {}
    for name, (_, op, _, line) in ins.items():
        if op == "parameter":
            part = read(name)
            if part is not None:
                out[int(re.search(r"parameter\((\d+)\)", line).group(1))] = part
    return out


def update_kernels(hlo: str) -> tuple[float, int, float]:
    """(MB, kernels, MB of copies) of one update's top-level instructions (module docstring, ``--traffic``): the
    compiled chunk's last ``while`` in ENTRY is the scan over updates, its body is one update. MB: what
    each instruction reads and writes (its operands and output; of an operand it only indexes, a
    gather's or slice's, the part it reads); kernels: the instructions that run as one (a fusion, a
    library call, a copy), not the ones that only name a buffer; MB of copies: the bytes of its
    ``copy`` kernels, which move a buffer and compute nothing (a layout change, or a value the loop's
    carry cannot alias). A nested loop's body counts once; a ``conditional`` counts its costlier
    branch, for each figure separately."""
    comps, cur = {}, None
    for line in hlo.split("\n"):
        head = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head:
            cur = comps.setdefault("ENTRY" if head.group(1) else head.group(2), [])
        elif cur is not None:
            cur.append(line)

    def body(name: str) -> tuple[int, int, int]:
        total, kernels, copies = 0, 0, 0
        # the printed program names its operands without their shapes: look them up
        instructions = _instructions(comps[name])
        shapes = {out: shape for out, shape, _, _, _ in instructions}
        for _, shape, op, operands, line in instructions:
            rhs = line.split(" = ", 1)[1].split(", metadata=")[0]
            if op in _NOT_KERNELS:
                continue
            if op == "while":
                b, k, c = body(re.search(r"body=%?([\w.\-]+)", rhs).group(1))
            elif op == "conditional":
                branches = re.findall(r"%([\w.\-]+)", rhs.split("branch_computations=")[-1]) if "branch_computations" in rhs \
                    else re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", rhs)
                b, k, c = (max(figure) for figure in zip(*(body(b) for b in branches)))
            else:
                out = _shape_bytes(shape)
                partial = {0: out} if op in _PARTIAL_READS else {}
                called = re.search(r"calls=%?([\w.\-]+)", rhs) if op == "fusion" else None
                if called:
                    partial = _partial_reads(comps[called.group(1)])
                b = out + sum(partial.get(i, _shape_bytes(shapes[o])) for i, o in enumerate(operands))
                k, c = 1, b if op == "copy" else 0
            total, kernels, copies = total + b, kernels + k, copies + c
        return total, kernels, copies

    scan = [line for line in comps["ENTRY"] if " while(" in line][-1]
    total, kernels, copies = body(re.search(r"body=%?([\w.\-]+)", scan).group(1))
    return total / 1e6, kernels, copies / 1e6


# What XLA's GPU compiler asks of a device it does not see (``--gpu_target``): NVIDIA's published figures
# for the SXM Hopper parts (compute capability 9.0, 132 SMs, 50 MiB of L2; CUDA's per-SM and per-block
# limits for sm_90), which differ only in their memory.
_HOPPER = dict(threads_per_block_limit=1024, threads_per_warp=32, shared_memory_per_block=48 * 1024,
               shared_memory_per_core=228 * 1024, shared_memory_per_block_optin=227 * 1024, threads_per_core_limit=2048,
               core_count=132, fpus_per_core=128, block_dim_limit_x=2**31 - 1, block_dim_limit_y=65535,
               block_dim_limit_z=65535, l2_cache_size=50 * 2**20, clock_rate_ghz=1.98, registers_per_core_limit=65536,
               registers_per_block_limit=65536)
GPU_TARGETS = {
    "h100": ("NVIDIA H100 80GB HBM3", dict(_HOPPER, memory_bandwidth=3_350_000_000_000, device_memory_size=80 * 2**30)),
    "h200": ("NVIDIA H200", dict(_HOPPER, memory_bandwidth=4_800_000_000_000, device_memory_size=141 * 10**9)),
}


def gpu_target_config(name: str) -> str:
    """The GPU ``name`` (a ``GPU_TARGETS`` key) as XLA's target configuration (``GpuTargetConfigProto``, text)."""
    desc, info = GPU_TARGETS[name]
    fields = "".join(f"  {k}: {v}\n" for k, v in info.items())
    return (f"gpu_device_info {{\n{fields}  cuda_compute_capability {{ major: 9 minor: 0 }}\n}}\n"
            f'platform_name: "CUDA"\ndevice_description_str: "{desc}"\n')


@functools.lru_cache(maxsize=None)  # main checks it first; each config's --traffic reuses it
def gpu_target_device(name: str):
    """A compile-only device for the GPU ``name``: XLA compiles for it (fusion, library calls) without one
    present. Needs the jax CUDA plugin (``pip install jax-cuda12-plugin==<jax's version>``) and
    ``JAX_PLATFORMS=cpu``, so that the plugin registers on a machine without CUDA."""
    from jax.experimental import topologies

    if name not in GPU_TARGETS:
        raise UsageError(f"--gpu_target={name}: choose one of {', '.join(GPU_TARGETS)}")
    if jax.config.jax_platforms != "cpu":
        raise UsageError("--gpu_target compiles for a GPU that is not here: run with JAX_PLATFORMS=cpu")
    try:
        topo = topologies.get_topology_desc("offrl", "cuda", target_config=gpu_target_config(name), topology="1x1x1")
    except NotImplementedError:
        raise UsageError(f"--gpu_target needs the jax CUDA plugin: pip install jax-cuda12-plugin=={jax.__version__}") from None
    return topo.devices[0]


def on_device(tree, device):
    """``tree``'s arrays as shapes placed on ``device`` (jax.ShapeDtypeStruct): lowered, never allocated."""
    sharding = jax.sharding.SingleDeviceSharding(device)
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def bench_traffic(name: str, data, seeds: list[int]) -> None:
    """--traffic: XLA's cost analysis of each stage's compiled chunk at each seed count (module docstring)."""
    _, _, _, init, run, stages = config_stages(name, data)
    device = gpu_target_device(FLAGS.gpu_target) if FLAGS.gpu_target else None
    bandwidth = FLAGS.bandwidth or (GPU_TARGETS[FLAGS.gpu_target][1]["memory_bandwidth"] / 1e9 if device else 0.0)
    for st, prepare in stages:
        last = None
        for n in seeds:
            carry = init(seed_keys(0, n))
            carry = carry._replace(state=prepare(carry.state))
            if device is None:
                compiled = run.lower(carry, data, st.name, 0, FLAGS.chunk).compile()
            else:  # the same program, compiled for the GPU --gpu_target names
                compiled = run.trace(on_device(carry, device), on_device(data, device), st.name, 0, FLAGS.chunk).lower(
                    lowering_platforms=("cuda",)).compile()
            cost = compiled.cost_analysis()  # none for a compile-only device
            cost = (cost[0] if isinstance(cost, list) else cost) or {}
            flop, mb = cost.get("flops", float("nan")) / 1e9, cost.get("bytes accessed", float("nan")) / 1e6
            ins, kernels, copies = update_kernels(compiled.as_text())
            prev, last = last, (n, mb, ins)  # each seed count against the one before it
            per_seed = (mb - prev[1]) / (n - prev[0]) if prev else float("nan")
            ins_seed = (ins - prev[2]) / (n - prev[0]) if prev else float("nan")
            floor = "" if not bandwidth or not prev else \
                f"{1e3 * per_seed * n / bandwidth:.1f} / {1e3 * ins_seed * n / bandwidth:.1f}"
            print(f"| {name} | {st.name} | {n} | {flop:.3f} | {mb:.1f} | {per_seed:.1f} | {ins:.1f} | {ins_seed:.1f} "
                  f"| {floor} | {kernels} | {copies:.1f} |", flush=True)


def bench_support(name: str, data, seeds: list[int]):
    """ARQ's pre-generation: candidates/s (PC sampler) and likelihoods/s (probability-flow ODE) of the
    functions ``arq.pregenerate`` calls, vmapped over seeds, at each ``--sampler_states`` count."""
    from offrl.algos import arq

    cfg = load_config(name)
    if cfg.algo != "arq":
        raise UsageError(f"--sampler times ARQ's pre-generation: configs/{name}.py is algo {cfg.algo!r}, use --config=arq")
    ag = cfg.agent
    ag.sampler_steps = FLAGS.sampler_steps or ag.sampler_steps
    algo = get_algorithm(cfg.algo)
    algo.validate(cfg)
    init, run = make_train(algo, cfg, data).vmapped()
    traces = [t.strip() for t in FLAGS.sampler_traces.split(",") if t.strip()]
    for t in traces:
        if t not in arq.TRACE_ESTIMATORS:
            raise UsageError(f"--sampler_traces: unknown estimator {t!r}, choose from {arq.TRACE_ESTIMATORS}")

    def timed(f, *args):
        t = time.perf_counter()
        out = jax.block_until_ready(f(*args))
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(FLAGS.sampler_repeats):
            out = jax.block_until_ready(f(*args))
        return out, first, (time.perf_counter() - t) / max(FLAGS.sampler_repeats, 1)

    print(f"\n{name} pre-generation: ScoreNet {tuple(ag.score_hidden_dims)} x {ag.num_score_models}, "
          f"{ag.num_candidates} candidates per state, {ag.sampler_steps} PC steps, ODE Dopri5 rtol={ag.ode_rtol} "
          f"atol={ag.ode_atol}; score model after {FLAGS.sampler_train} DSM updates (batch {ag.score_batch_size})", flush=True)
    print("| seeds | states/call | rows/call | what | first call (s, with compile) | s per call | rows/s | ODE steps |")
    print("|---|---|---|---|---|---|---|---|")
    for n in seeds:
        carry, _ = run(init(seed_keys(0, n)), data, "standardize", 0, 1)
        carry, m = run(carry, data, "score", 0, FLAGS.sampler_train)
        states = carry.state
        for s in [int(x) for x in FLAGS.sampler_states.split(",")]:
            obs, rows = data.observations[:s], n * s * ag.num_candidates
            keys = jax.random.split(jax.random.PRNGKey(1), n)
            sampler = jax.jit(jax.vmap(lambda st, k: arq.sample_candidates(st, obs, k, cfg)))
            cand, first, per = timed(sampler, states, keys)
            print(f"| {n} | {s} | {rows} | candidates | {first:.1f} | {per:.2f} | {rows / per:.1f} | |", flush=True)
            for trace in traces:
                ag.trace = trace  # read when the next function is traced
                lik = jax.jit(jax.vmap(lambda st, a, k: arq.candidate_log_lik(st, obs, a, k, cfg, with_steps=True)))
                (ll, steps), first_l, per_l = timed(lik, states, cand, keys)
                what = f"likelihoods ({trace}" + (f", {ag.num_probes} probes)" if trace == "hutchinson" else ")")
                print(f"| {n} | {s} | {rows} | {what} | {first_l:.1f} | {per_l:.2f} | {rows / per_l:.1f} | "
                      f"{int(np.max(steps))} |", flush=True)
                print(f"| {n} | {s} | {rows} | candidates with likelihoods ({trace}) | | {per + per_l:.2f} | "
                      f"{rows / (per + per_l):.1f} | |", flush=True)
            inside = float(np.mean(np.asarray(ll) > ag.threshold))
        print(f"score loss {float(np.mean(m['score_loss'])):.3f} over the training chunk; {100 * inside:.0f}% of the last "
              f"call's candidates above the log-likelihood threshold {ag.threshold}; the paper: ~25 candidates with "
              f"likelihoods per second (90k per hour, GTX 1080 Ti)", flush=True)


def bench_eval(name: str, data) -> None:
    """One evaluation of config ``name``'s policies at each ``--eval_workers`` value (module docstring)."""
    import ast
    import dataclasses

    import gymnasium as gym

    from offrl.envpool import make_envs
    from offrl.evaluation import evaluate, make_policy_fn
    from offrl.data.preprocess import Preprocessing

    cfg = load_config(name)
    algo = get_algorithm(cfg.algo)
    env_id, _, kw = FLAGS.eval_env.partition(":")
    kwargs = {k: ast.literal_eval(v) for k, v in (x.split("=", 1) for x in kw.split(",") if x)}
    spec = dataclasses.replace(gym.spec(env_id), kwargs={**gym.spec(env_id).kwargs, **kwargs})
    tr = make_train(algo, cfg, data)
    init, _ = tr.vmapped()
    states = init(seed_keys(0, cfg.num_seeds)).state
    pre = Preprocessing(np.zeros(11, np.float32), np.ones(11, np.float32), -np.ones(3, np.float32), np.ones(3, np.float32))
    policy_fn = make_policy_fn(algo, cfg)
    n = cfg.num_seeds * cfg.eval_episodes
    evals = sum(-(-st.num_steps // cfg.eval_interval) for st in tr.stages if st.evaluate and st.num_steps)
    for w in [int(x) for x in FLAGS.eval_workers.split(",")]:
        t = time.perf_counter()
        envs = make_envs(spec, n, w)
        start = time.perf_counter() - t
        try:
            times = []
            for i in range(2):  # the first call compiles the policy
                t = time.perf_counter()
                res = evaluate(policy_fn, states, spec, cfg.eval_episodes, cfg.eval_seed, pre, envs=envs)
                times.append(time.perf_counter() - t)
        finally:
            envs.close()
        steps = int(res.lengths.sum())
        print(f"| {name} | {cfg.num_seeds} x {cfg.eval_episodes} | {w} ({envs.workers}) | "
              f"{start:.1f} | {times[1]:.2f} | {steps / times[1]:.0f} | {evals} | {evals * times[1]:.0f} |", flush=True)


def memory_report(name: str, seeds: list[int]):
    """Compiled memory of the config's last stage's chunk for an AntMaze-sized dataset (shapes only)."""
    cfg = load_config(name)
    algo = get_algorithm(cfg.algo)
    n, obs_dim, act_dim = 2_000_000, 111, 8
    shapes = dataset_shapes(n, obs_dim, act_dim)
    ds_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes))
    tr = make_train(algo, cfg, shapes)
    init, run = tr.vmapped()
    stage = tr.stages[-1].name
    print(f"\nmemory, {name} stage {stage}: dataset {n} x ({obs_dim}-d obs, {act_dim}-d act) = {ds_bytes / 2**20:.0f} MiB, "
          f"chunk of {FLAGS.chunk} updates (XLA memory analysis of the compiled program)")
    print("| seeds | arguments (MiB) | outputs (MiB) | temporaries (MiB) | peak estimate (MiB) | per-member growth of temporaries (MiB) |")
    print("|---|---|---|---|---|---|")
    prev = None
    for s in seeds:
        carry = jax.eval_shape(init, jax.ShapeDtypeStruct((s, 2), jnp.uint32))
        ma = run.lower(carry, shapes, stage, 0, FLAGS.chunk).compile().memory_analysis()
        mib = lambda b: b / 2**20  # noqa: E731
        args, outs, temp = ma.argument_size_in_bytes, ma.output_size_in_bytes, ma.temp_size_in_bytes
        peak = args + outs + temp - ma.alias_size_in_bytes
        growth = "" if prev is None else f"{mib(temp - prev[1]) / (s - prev[0]):.1f}"
        print(f"| {s} | {mib(args):.0f} | {mib(outs):.1f} | {mib(temp):.1f} | {mib(peak):.0f} | {growth} |", flush=True)
        prev = (s, temp)
    if FLAGS.memory_run:
        rng = np.random.default_rng(0)
        big = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.standard_normal(x.shape).astype(x.dtype)) if x.dtype == jnp.float32
                                     else jnp.zeros(x.shape, x.dtype), shapes)
        s = seeds[-1]
        carry, m = run(init(seed_keys(0, s)), big, stage, 0, FLAGS.chunk)
        jax.block_until_ready(carry)
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            print(f"ran one chunk at {s} seeds: device peak {stats['peak_bytes_in_use'] / 2**20:.0f} MiB")
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
            print(f"ran one chunk at {s} seeds: process peak RSS {rss:.0f} MiB (the CPU device reports no memory stats)")


def run_isolated(names: list[str], stages: dict | None = None) -> list[str]:
    """Each config in its own process (this script with ``--config=<name> --noheader``), stopped after
    ``--config_timeout`` seconds: a hung compile or call (one iql 4-seed run once waited on a futex for
    15 minutes) is reported with its stacks and the table goes on. Returns the configs that did not finish."""
    keep = [a for a in sys.argv[1:] if not a.startswith(("--config=", "--config_timeout=", "--header", "--noheader", "--stages="))]
    failed = []
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), f"--config={name}", "--config_timeout=0", "--noheader", *keep]
        if stages:  # --stages: the ones this config has
            cmd.append(f"--stages={','.join(stages[name])}")
        t = time.perf_counter()
        proc = subprocess.Popen(cmd)
        try:
            rc = proc.wait(timeout=FLAGS.config_timeout)
        except subprocess.TimeoutExpired:
            print(f"\n{name}: no result after {FLAGS.config_timeout:.0f}s; its stacks (faulthandler, on stderr):", flush=True)
            proc.send_signal(signal.SIGUSR1)
            if shutil.which("py-spy"):  # native frames too (XLA threads), where ptrace is allowed
                subprocess.run(["py-spy", "dump", "--native", "--pid", str(proc.pid)], timeout=60, check=False)
            time.sleep(5)
            proc.kill()
            proc.wait()
            print(f"| {name} | stopped after {FLAGS.config_timeout:.0f}s (--config_timeout) |", flush=True)
            failed.append(name)
            continue
        if rc != 0:
            print(f"| {name} | failed: exit {rc} after {time.perf_counter() - t:.0f}s (its error is above) |", flush=True)
            failed.append(name)
    return failed


def seed_counts() -> list[int]:
    """--seeds as a list of ints; UsageError unless each is an integer >= 1."""
    try:
        seeds = [int(s) for s in FLAGS.seeds.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 1:
        raise UsageError(f"--seeds={FLAGS.seeds}: give comma-separated seed counts of at least 1, e.g. --seeds=1,4")
    return seeds


def main(_):
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>` prints every thread's stack
    seeds = seed_counts()
    for name, least in (("chunk", 1), ("size", 1), ("matmul", 1), ("sampler_repeats", 1), ("min_time", 0),
                        ("flops_steps", 0), ("sampler_steps", 0), ("sampler_train", 0), ("config_timeout", 0),
                        ("bandwidth", 0)):
        if FLAGS[name].value < least:
            raise UsageError(f"--{name}={FLAGS[name].value}: give a value of at least {least}")
    names = config_names(FLAGS.config)
    wanted, have = {s.strip() for s in FLAGS.stages.split(",") if s.strip()}, {}
    for n in names:  # every name checked before anything runs
        cfg = load_config(n)
        have[n] = [s.name for s in get_algorithm(cfg.algo).stages(cfg)]
    unknown = wanted - {s for v in have.values() for s in v}
    if unknown:
        raise UsageError(f"--stages: no config here has a stage {', '.join(sorted(unknown))}; their stages: "
                         + "; ".join(f"{n}: {', '.join(v)}" for n, v in have.items()))
    if wanted:
        names = [n for n in names if wanted & set(have[n])]
    if FLAGS.gpu_target and not FLAGS.traffic:
        raise UsageError("--gpu_target compiles without running: use it with --traffic")
    if FLAGS.gpu_target:
        device = gpu_target_device(FLAGS.gpu_target)  # checked before anything runs
        print(f"compiling for {device.device_kind} (--gpu_target={FLAGS.gpu_target}: deviceless, nothing runs on it; "
              f"memory bandwidth {GPU_TARGETS[FLAGS.gpu_target][1]['memory_bandwidth'] / 1e12:.2f} TB/s)")
    if FLAGS.header:
        print(f"machine: {machine()}")
        peak0 = matmul_gflops(FLAGS.matmul)
        print(f"dense {FLAGS.matmul}^3 float32 matmul: {peak0:.1f} GFLOP/s at the start (each row's limit is measured between its chunks)")
        print(f"dataset: synthetic {FLAGS.size} x (11-d obs, 3-d act), 1000-step episodes; {FLAGS.chunk} updates per compiled call; "
              f"FLOPs averaged over each stage's first {FLAGS.flops_steps} updates")
        if FLAGS.eval:
            print(f"evaluation: {FLAGS.eval_env}, {available_cores()} cores")
            print("| config | seeds x episodes | eval_workers (processes) | start-up (s) | s per evaluation | env steps/s "
                  "| evaluations per run | evaluation per run (s) |")
            print("|---|---|---|---|---|---|---|---|", flush=True)
        elif FLAGS.traffic:
            print("| config | stage | seeds | GFLOP/update | MB accessed/update (XLA) | MB per added seed (XLA) "
                  "| MB/update by instruction | MB per added seed by instruction "
                  "| seeds x MB per added seed, µs at --bandwidth (XLA / by instruction) | kernels/update "
                  "| MB of copies/update |")
            print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
        elif not FLAGS.sampler:
            print("| config | stage | seeds | compile (s) | updates/s per seed | seed-updates/s | GFLOP/update | GFLOP/s | matmul GFLOP/s "
                  "| share of matmul | vs minimal TD3+BC |")
            print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    failed = []
    if FLAGS.config_timeout > 0:
        failed = run_isolated(names, {n: [s for s in have[n] if s in wanted] for n in names} if wanted else None)
    else:
        data = synthetic(FLAGS.size)
        rows = []
        for n in names:
            if FLAGS.eval:
                bench_eval(n, data)
            elif FLAGS.sampler:
                bench_support(n, data, seeds)
            elif FLAGS.traffic:
                bench_traffic(n, data, seeds)
            else:
                bench_config(n, data, seeds, rows)
    if FLAGS.header:
        peak1 = matmul_gflops(FLAGS.matmul)
        print(f"\ndense matmul again at the end: {peak1:.1f} GFLOP/s (start {peak0:.1f}; a large drift means a noisy machine)")
    if failed:
        print(f"not finished: {', '.join(failed)}")
        sys.exit(1)
    if FLAGS.config_timeout > 0:
        return  # --memory ran in each config's process
    if FLAGS.memory:
        for n in names:
            memory_report(n, seeds)
    if not FLAGS.header:  # a per-config process: skip jax's exit-time cache clearing (seen taking over 20 s)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def one_line_errors(entry):
    """``entry`` (an absl main) with a bad flag or name (UsageError) as one line, exit status 2."""
    def run(argv):
        try:
            return entry(argv)
        except UsageError as e:
            fail(str(e))

    return run


if __name__ == "__main__":
    app.run(one_line_errors(main))
