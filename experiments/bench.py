"""Throughput of the seed-vmapped runtime: TD3+BC updates per second at 1, 2, 4, 8 seeds.

    python experiments/bench.py [--seeds=1,2,4,8] [--chunk=1000] [--repeats=3] [--algo=td3bc]

Uses a synthetic dataset with Hopper's shapes (11-d observations, 3-d actions,
1M transitions) and the algorithm's full-size default networks (batch 256), so
the numbers are what a real run gets per update. Reports compile time (first
chunk) and steady-state seed-updates/s, with the machine it ran on.
"""
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import importlib  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from offrl.algos import get_algorithm  # noqa: E402
from offrl.data.dataset import Transitions  # noqa: E402
from offrl.train import make_train, seed_keys  # noqa: E402

flags.DEFINE_string("seeds", "1,2,4,8", "Comma-separated numbers of vmapped seeds.")
flags.DEFINE_integer("chunk", 1000, "Updates per compiled call (lax.scan length).")
flags.DEFINE_integer("repeats", 3, "Timed calls per seed count (after the compiling one).")
flags.DEFINE_integer("size", 1_000_000, "Synthetic dataset size.")
flags.DEFINE_string("algo", "td3bc", "Algorithm (its configs/<algo>.py supplies the settings).")
FLAGS = flags.FLAGS


def synthetic(n, obs_dim=11, act_dim=3, seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *s: jax.numpy.asarray(rng.standard_normal(s).astype(np.float32))
    return Transitions(
        observations=f(n, obs_dim), actions=jax.numpy.tanh(f(n, act_dim)), rewards=f(n),
        next_observations=f(n, obs_dim), terminals=jax.numpy.zeros(n), timeouts=jax.numpy.zeros(n),
        next_actions=jax.numpy.tanh(f(n, act_dim)), returns=f(n), episode_ids=jax.numpy.zeros(n, jax.numpy.int32),
    )


def machine() -> str:
    d = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    return f"{len(jax.devices())} x {d.device_kind} ({d.platform}), host {cpu}, {os.cpu_count()} cores, jax {jax.__version__}"


def main(_):
    cfg = importlib.import_module(f"configs.{FLAGS.algo}").get_config()
    algo = get_algorithm(FLAGS.algo)
    data = synthetic(FLAGS.size)
    print(f"machine: {machine()}")
    print(f"{FLAGS.algo}: batch {cfg.batch_size}, hidden {tuple(cfg.agent.get('hidden_dims', ()))}, "
          f"{FLAGS.chunk} updates per compiled call, dataset {FLAGS.size} x (11 obs, 3 act)")
    print("| seeds | compile (s) | updates/s (per seed) | seed-updates/s |")
    print("|---|---|---|---|")
    for n in [int(s) for s in FLAGS.seeds.split(",")]:
        tr = make_train(algo, cfg, data)
        init, run = tr.vmapped()
        carry = init(seed_keys(0, n))
        t = time.time()
        stage = tr.stages[-1].name  # the main (last) stage
        compiled = run.lower(carry, data, stage, 0, FLAGS.chunk).compile()
        compile_s = time.time() - t
        carry, m = compiled(carry, data, 0)  # warm-up call
        jax.block_until_ready(carry)
        t = time.time()
        for i in range(FLAGS.repeats):
            carry, m = compiled(carry, data, (i + 1) * FLAGS.chunk)
        jax.block_until_ready(carry)
        ups = FLAGS.repeats * FLAGS.chunk / (time.time() - t)
        print(f"| {n} | {compile_s:.1f} | {ups:.0f} | {ups * n:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
