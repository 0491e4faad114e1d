"""ARQ's cost centre: PC-sampler candidates/s and ODE log-likelihoods/s at the paper's settings.

    python experiments/bench_arq.py [--states=64] [--repeats=2] [--sampler_steps=500] [--trace=hutchinson]

One device call draws ``--states`` x 30 candidates (configs/arq.py: 500 PC steps, full-size
ScoreNet 3 x 256) and, separately, solves their probability-flow ODE (Dopri5, rtol = atol = 1e-5,
10 Rademacher probes, all rows as one system); Hopper shapes (11-d states, 3-d actions). The
score model is trained for ``--train_steps`` DSM updates on a synthetic two-mode behaviour first
(the ODE's step count depends on how smooth the learned field is; it is printed). Reports
compile time and steady-state rates with the machine it ran on.
"""
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from configs.arq import get_config  # noqa: E402
from offrl.algos import Spec, arq  # noqa: E402
from offrl.data.dataset import Transitions, sample  # noqa: E402
from offrl.diffusion import log_likelihood, make_score_fn  # noqa: E402

flags.DEFINE_integer("states", 64, "States per device call (each gets num_candidates candidates).")
flags.DEFINE_integer("repeats", 2, "Timed calls after the compiling one.")
flags.DEFINE_integer("sampler_steps", 500, "PC sampler steps (the paper: 500).")
flags.DEFINE_string("trace", "hutchinson", "Divergence estimator: hutchinson (10 probes) or exact.")
flags.DEFINE_integer("train_steps", 2000, "DSM updates before timing (0: random weights).")
FLAGS = flags.FLAGS


def machine() -> str:
    d = jax.devices()[0]
    return (f"{len(jax.devices())} x {d.device_kind} ({d.platform}), host {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, jax {jax.__version__}")


def synthetic(n=20_000, obs_dim=11, act_dim=3, seed=0):
    """States ~ N(0, I); actions: tanh of one of two state-dependent modes (a multi-modal behaviour)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, act_dim)).astype(np.float32) / np.sqrt(obs_dim)
    a = np.tanh(s @ w + np.where(rng.random((n, 1)) < 0.5, 0.8, -0.8) + 0.1 * rng.normal(size=(n, act_dim))).astype(np.float32)
    z = jnp.zeros(n)
    return Transitions(jnp.asarray(s), jnp.asarray(a), z, jnp.asarray(s), z, z, jnp.asarray(a), z, jnp.zeros(n, jnp.int32))


def timed(fn, *args):
    t = time.time()
    out = jax.block_until_ready(fn(*args))
    compile_s = time.time() - t
    t = time.time()
    for _ in range(FLAGS.repeats):
        out = jax.block_until_ready(fn(*args))
    return out, compile_s, (time.time() - t) / FLAGS.repeats


def main(_):
    cfg = get_config()
    ag = cfg.agent
    ag.sampler_steps, ag.trace = FLAGS.sampler_steps, FLAGS.trace
    data = synthetic()
    state = arq.init(jax.random.PRNGKey(0), Spec(11, 3), cfg)
    state, _ = arq.standardize_update(state, sample(jax.random.PRNGKey(1), data, 20_000), None, 0, cfg)
    if FLAGS.train_steps:
        def body(st, k):
            k_b, k_u = jax.random.split(k)
            return arq.score_update(st, sample(k_b, data, ag.score_batch_size), k_u, 0, cfg)
        t = time.time()
        state, m = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, FLAGS.train_steps)))(state, jax.random.PRNGKey(2))
        print(f"score model: {FLAGS.train_steps} DSM updates in {time.time() - t:.0f}s, loss {float(m['score_loss'][-100:].mean()):.3f}")
    obs = data.observations[: FLAGS.states]
    n = FLAGS.states * ag.num_candidates
    print(f"machine: {machine()}")
    print(f"ARQ support: {FLAGS.states} states x {ag.num_candidates} candidates = {n} rows per call; "
          f"{ag.sampler_steps} PC steps; ODE Dopri5 rtol=atol={ag.ode_rtol}, {ag.trace} trace"
          + (f" ({ag.num_probes} probes)" if ag.trace == "hutchinson" else ""))
    cand, c_compile, c_time = timed(jax.jit(lambda k: arq.sample_candidates(state, obs, k, cfg)), jax.random.PRNGKey(3))
    score = make_score_fn(state.score.apply_fn, arq._sde(cfg))
    x = state.std.actions(cand.reshape(n, -1))
    c = jnp.repeat(state.std.states(obs), ag.num_candidates, axis=0)
    lik = jax.jit(lambda k: log_likelihood(lambda xx, cc, t: score(state.score_ema, xx, cc, t), x, c, k, arq._sde(cfg),
                                           ag.num_probes, ag.trace, ag.ode_t0, ag.ode_rtol, ag.ode_atol, ag.ode_step_limit,
                                           with_steps=True))
    (ll, steps), l_compile, l_time = timed(lik, jax.random.PRNGKey(4))
    print("| what | compile (s) | s per call | per second |")
    print("|---|---|---|---|")
    print(f"| candidates (PC sampler) | {c_compile:.1f} | {c_time:.2f} | {n / c_time:.0f} |")
    print(f"| likelihoods (ODE, {int(steps)} steps) | {l_compile:.1f} | {l_time:.2f} | {n / l_time:.0f} |")
    print(f"| candidates with likelihoods | | {c_time + l_time:.2f} | {n / (c_time + l_time):.0f} |")
    print(f"in support (log-lik > {ag.threshold}): {100 * float(np.mean(np.asarray(ll) > ag.threshold)):.1f}%; "
          f"paper: ~25 candidates/s with likelihoods (90k per hour, GTX 1080 Ti)")


if __name__ == "__main__":
    app.run(main)
