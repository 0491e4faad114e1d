"""Online SAC in JAX: trains the behaviour policies the local dataset suites are collected with.

Soft actor-critic (Haarnoja et al., 2018) with twin critics, target critics
updated by Polyak averaging and an automatically tuned entropy temperature
(target entropy -|A|). Standard hyperparameters: 256x256 MLPs, Adam 3e-4,
batch 256, discount 0.99, tau 0.005, uniform-random warm-up steps first.

The environment runs on the host with a NumPy copy of the actor (one small MLP
per step is faster in NumPy than a device round trip). Every ``chunk`` env
steps the same number of updates runs in one jitted ``lax.scan`` call over
minibatches drawn on the host (policy lag of at most ``chunk`` steps, as in
Spinning Up's "update_every"). Every ``ckpt_every`` steps the actor is
evaluated and written as a small msgpack checkpoint (see :func:`save_actor`).

    python -m offrl.data.sac --env=Hopper-v5 --steps=300000 --out=/tmp/sac_hopper

Actions are learned in [-1, 1] and rescaled to the environment's box.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct
from flax.training.train_state import TrainState

from offrl import nets

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


# --------------------------------------------------------------------------- networks / state
def actor_net(act_dim: int, hidden_dims: Sequence[int] = (256, 256)) -> nets.GaussianPolicy:
    return nets.GaussianPolicy(act_dim, tuple(hidden_dims), log_std_min=LOG_STD_MIN, log_std_max=LOG_STD_MAX)


class SACState(struct.PyTreeNode):
    actor: TrainState
    critic: TrainState
    critic_target: dict
    log_alpha: TrainState
    target_entropy: float = struct.field(pytree_node=False)
    discount: float = struct.field(pytree_node=False)
    tau: float = struct.field(pytree_node=False)


def init_sac(key, obs_dim: int, act_dim: int, hidden_dims=(256, 256), lr=3e-4, discount=0.99, tau=0.005,
             init_temperature: float = 1.0) -> SACState:
    ka, kc = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    a_net, c_net = actor_net(act_dim, hidden_dims), nets.critic_ensemble(2, hidden_dims)
    actor = TrainState.create(apply_fn=a_net.apply, params=a_net.init(ka, obs)["params"], tx=optax.adam(lr))
    critic = TrainState.create(apply_fn=c_net.apply, params=c_net.init(kc, obs, act)["params"], tx=optax.adam(lr))
    log_alpha = TrainState.create(
        apply_fn=None, params={"log_alpha": jnp.asarray(np.log(init_temperature), jnp.float32)}, tx=optax.adam(lr)
    )
    return SACState(actor, critic, critic.params, log_alpha, float(-act_dim), discount, tau)


def update(state: SACState, batch: dict, key) -> tuple[SACState, dict]:
    """One SAC step on a batch dict (obs, act, rew, next_obs, done); actions in [-1, 1]."""
    k_next, k_pi = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha.params["log_alpha"])

    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, batch["next_obs"])
    next_a, next_logp, _ = nets.tanh_gaussian_sample(k_next, mean, log_std)
    q_next = state.critic.apply_fn({"params": state.critic_target}, batch["next_obs"], next_a).min(0)
    target = batch["rew"] + state.discount * (1.0 - batch["done"]) * (q_next - alpha * next_logp)
    target = jax.lax.stop_gradient(target)

    def critic_loss(p):
        q = state.critic.apply_fn({"params": p}, batch["obs"], batch["act"])
        return ((q - target[None]) ** 2).mean(1).sum(), q.mean()

    (c_loss, q_mean), c_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=c_grads)

    def actor_loss(p):
        m, ls = state.actor.apply_fn({"params": p}, batch["obs"])
        a, logp, _ = nets.tanh_gaussian_sample(k_pi, m, ls)
        q = state.critic.apply_fn({"params": critic.params}, batch["obs"], a).min(0)
        return (alpha * logp - q).mean(), logp.mean()

    (a_loss, logp_mean), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=a_grads)

    def alpha_loss(la):
        return -(la["log_alpha"] * jax.lax.stop_gradient(logp_mean + state.target_entropy))

    al_grads = jax.grad(alpha_loss)(state.log_alpha.params)
    log_alpha = state.log_alpha.apply_gradients(grads=al_grads)
    new = state.replace(
        actor=actor, critic=critic, log_alpha=log_alpha,
        critic_target=nets.polyak(state.critic_target, critic.params, state.tau),
    )
    return new, dict(critic_loss=c_loss, actor_loss=a_loss, q=q_mean, alpha=alpha, entropy=-logp_mean)


@jax.jit
def update_many(state: SACState, batches: dict, key) -> tuple[SACState, dict]:
    """``len(batches[*])`` updates in one compiled call (batches stacked on axis 0); mean metrics."""
    keys = jax.random.split(key, batches["obs"].shape[0])

    def body(s, xs):
        b, k = xs
        return update(s, b, k)

    state, metrics = jax.lax.scan(body, state, (batches, keys))
    return state, jax.tree_util.tree_map(jnp.mean, metrics)


# --------------------------------------------------------------------------- numpy actor
class NumpyActor:
    """The Gaussian actor's forward pass in NumPy (float32); same maths as ``actor_net``."""

    def __init__(self, params: dict, action_low: np.ndarray, action_high: np.ndarray):
        p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
        mlp = p["MLP_0"]
        self.hidden = [(mlp[f"Dense_{i}"]["kernel"], mlp[f"Dense_{i}"]["bias"]) for i in range(len(mlp))]
        self.mean = (p["Dense_0"]["kernel"], p["Dense_0"]["bias"])
        self.log_std = (p["Dense_1"]["kernel"], p["Dense_1"]["bias"])
        self.low = np.asarray(action_low, np.float32)
        self.high = np.asarray(action_high, np.float32)

    def dist(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.asarray(obs, np.float32)
        for w, b in self.hidden:
            h = np.maximum(h @ w + b, 0.0)
        mean = h @ self.mean[0] + self.mean[1]
        log_std = np.clip(h @ self.log_std[0] + self.log_std[1], LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std

    def unit_action(self, obs, rng: Optional[np.random.Generator], deterministic: bool = False) -> np.ndarray:
        """Action in [-1, 1]: tanh(mean) or tanh(mean + std * N(0, 1))."""
        mean, log_std = self.dist(obs)
        if deterministic or rng is None:
            return np.tanh(mean)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape).astype(np.float32))

    def scale(self, unit: np.ndarray) -> np.ndarray:
        return (self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def policy(self, deterministic: bool = False):
        """A ``policy(obs, rng) -> env action`` for :func:`offrl.data.collect.collect_episodes`."""
        return lambda obs, rng: self.scale(self.unit_action(obs, rng, deterministic))


# --------------------------------------------------------------------------- checkpoints
def save_actor(path: str, params, obs_dim: int, act_dim: int, env_id: str, step: int,
               mean_return: float, hidden_dims=(256, 256), extra: Optional[dict] = None) -> None:
    """Write an actor checkpoint: msgpack of {params, obs_dim, act_dim, hidden_dims, env_id, step, return}."""
    blob = {
        "params": jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), jax.device_get(params)),
        "meta": json.dumps(
            dict(obs_dim=int(obs_dim), act_dim=int(act_dim), hidden_dims=list(hidden_dims), env_id=env_id,
                 step=int(step), mean_return=float(mean_return), **(extra or {}))
        ),
    }
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(serialization.msgpack_serialize(blob))
    os.replace(tmp, path)


def load_actor(path: str) -> tuple[dict, dict]:
    """(params as a nested dict of float32 arrays, meta dict) from :func:`save_actor`'s file."""
    with open(path, "rb") as f:
        raw = serialization.msgpack_restore(f.read())
    return raw["params"], json.loads(raw["meta"])


def numpy_actor_from_checkpoint(path: str, env=None) -> tuple[NumpyActor, dict]:
    import gymnasium as gym

    params, meta = load_actor(path)
    own = env is None
    env = gym.make(meta["env_id"]) if own else env
    actor = NumpyActor(params, env.action_space.low, env.action_space.high)
    if own:
        env.close()
    return actor, meta


def evaluate(env, policy, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` rollouts, episode i reset with ``seed + i``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, ret = False, 0.0
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs, rng))
            ret += float(r)
            done = term or trunc
        out.append(ret)
    return np.asarray(out)


# --------------------------------------------------------------------------- resume state
def _unwrap_with(env, attr: str):
    """The innermost wrapper (or env) in ``env``'s chain that has ``attr`` as its own attribute."""
    e, found = env, None
    while True:
        if attr in vars(e):
            found = e
        if not hasattr(e, "env"):
            return found
        e = e.env


def env_snapshot(env) -> dict:
    """Everything needed to continue a MuJoCo Gymnasium episode exactly: simulator state (qpos, qvel,
    act, ctrl, time, the solver's warm start), the TimeLimit step count and the env's reset RNG."""
    u = env.unwrapped
    d = u.data
    tl = _unwrap_with(env, "_elapsed_steps")
    return dict(
        sim={k: np.array(getattr(d, k)) for k in ("qpos", "qvel", "act", "ctrl", "qacc_warmstart")},
        time=float(d.time), elapsed_steps=None if tl is None else tl._elapsed_steps,
        np_random=u.np_random.bit_generator.state,
    )


def env_restore(env, snap: dict) -> None:
    """Inverse of :func:`env_snapshot` on a freshly made env of the same id."""
    import mujoco

    env.reset(seed=0)  # wrappers' "reset before step" flags; everything below is then overwritten
    u = env.unwrapped
    d = u.data
    for k, v in snap["sim"].items():
        getattr(d, k)[...] = v
    d.time = snap["time"]
    mujoco.mj_forward(u.model, d)
    d.qacc_warmstart[...] = snap["sim"]["qacc_warmstart"]
    tl = _unwrap_with(env, "_elapsed_steps")
    if tl is not None:
        tl._elapsed_steps = snap["elapsed_steps"]
    u.np_random.bit_generator.state = snap["np_random"]


RESUME_DIR = "resume"


def save_resume(out: str, t: int, n: int, state: SACState, buf: dict, loop: dict) -> None:
    """Atomically write ``out/resume/``: ``state.msgpack`` (networks, targets, optimiser moments,
    temperature; ~3 MB at 256x256), ``loop.pkl`` (env step ``t``, host RNG, JAX key, env snapshot,
    episode bookkeeping; a few kB) and ``buffer.npz`` (the replay buffer's ``n`` filled rows; ~170 MB
    at 1M steps). The previous resume point is replaced only once the new one is complete."""
    import pickle

    final = os.path.join(out, RESUME_DIR)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "state.msgpack"), "wb") as f:
        f.write(serialization.to_bytes(jax.device_get(state)))
    np.savez(os.path.join(tmp, "buffer.npz"), **{k: v[:n] for k, v in buf.items()})
    with open(os.path.join(tmp, "loop.pkl"), "wb") as f:
        pickle.dump(dict(loop, t=t, n=n), f)
    old = final + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def load_resume(out: str, template: SACState, buf: dict) -> Optional[dict]:
    """Restore :func:`save_resume`'s files into ``template`` (returned as loop["state"]) and ``buf`` (in
    place); None when ``out`` has no resume point. Without ``buffer.npz`` (a resume point carried in
    git, where the buffer is too big) loop["n"] is 0 and the caller refills the buffer."""
    import pickle

    final = os.path.join(out, RESUME_DIR)
    if not os.path.isfile(os.path.join(final, "loop.pkl")):
        if os.path.isfile(os.path.join(final + ".old", "loop.pkl")):  # killed between the two renames
            final = final + ".old"
        else:
            return None
    with open(os.path.join(final, "loop.pkl"), "rb") as f:
        loop = pickle.load(f)
    with open(os.path.join(final, "state.msgpack"), "rb") as f:
        loop["state"] = serialization.from_bytes(template, f.read())
    bpath = os.path.join(final, "buffer.npz")
    if os.path.isfile(bpath):
        with np.load(bpath) as z:
            for k in buf:
                buf[k][: loop["n"]] = z[k]
    else:
        loop["n"] = 0
    return loop


# --------------------------------------------------------------------------- training loop
def train(env_id: str, steps: int, out: str, seed: int = 0, warmup: int = 5000, chunk: int = 50,
          batch_size: int = 256, hidden_dims=(256, 256), lr: float = 3e-4, ckpt_every: int = 10000,
          eval_episodes: int = 5, log_every: int = 5000, resume_every: int = 50000,
          stop_after: Optional[int] = None, log=print) -> list[dict]:
    """Train SAC for ``steps`` env steps; write ``actor_<step>.msgpack`` and ``progress.jsonl`` into ``out``.

    Every ``resume_every`` steps (a multiple of ``ckpt_every``) a resume point is written to
    ``out/resume/``; calling ``train`` again with the same arguments and ``out`` continues from the
    last one (the run then is the same as an uninterrupted one: same networks, same data, same
    checkpoints; tested bit-for-bit in tests/test_build.py). If the resume point has no
    ``buffer.npz`` (only the small files were kept), the run continues from the saved networks,
    optimisers, RNGs and env state with an empty replay buffer: updates pause until the current
    policy has collected ``warmup`` new transitions (not uniform ones), then go on as before, with
    the older transitions lost; this is not the same as an uninterrupted run and is logged as such.
    A different configuration for an existing ``out`` is an error. ``stop_after``: return after that many env steps (for tests and
    time budgets; the resume point is written first).
    """
    import gymnasium as gym

    from offrl.checks import Checks
    from offrl.data.build import check_env

    check = Checks(dict(steps=steps, warmup=warmup, chunk=chunk, batch_size=batch_size, ckpt_every=ckpt_every,
                        eval_episodes=eval_episodes, log_every=log_every), "sac")
    check.integer(1, "steps", "chunk", "batch_size", "ckpt_every", "eval_episodes", "log_every")
    check.integer(0, "warmup")
    check_env(env_id)  # an unknown id is one line (ValueError), before anything is written
    if resume_every % ckpt_every or resume_every <= 0:
        raise ValueError(f"resume_every ({resume_every}) must be a positive multiple of ckpt_every ({ckpt_every})")
    os.makedirs(out, exist_ok=True)
    env, eval_env = gym.make(env_id), gym.make(env_id)
    obs_dim = int(np.prod(env.observation_space.shape))
    act_dim = int(np.prod(env.action_space.shape))
    low, high = env.action_space.low.astype(np.float32), env.action_space.high.astype(np.float32)
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    state = init_sac(k_init, obs_dim, act_dim, hidden_dims, lr)
    buf = dict(
        obs=np.zeros((steps, obs_dim), np.float32), act=np.zeros((steps, act_dim), np.float32),
        rew=np.zeros((steps,), np.float32), next_obs=np.zeros((steps, obs_dim), np.float32),
        done=np.zeros((steps,), np.float32),
    )
    config = dict(env_id=env_id, steps=steps, seed=seed, warmup=warmup, chunk=chunk, batch_size=batch_size,
                  hidden_dims=list(hidden_dims), lr=lr, ckpt_every=ckpt_every, eval_episodes=eval_episodes,
                  resume_every=resume_every)
    cfg_path = os.path.join(out, "config.json")
    loop = load_resume(out, state, buf)
    if loop is not None:
        with open(cfg_path) as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in config.items() if k != "resume_every" and old.get(k) != v}
        if diff:
            raise ValueError(f"{out} holds a SAC run with another configuration {diff} (old, new); "
                             f"resume with the same arguments or use a new --out")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    progress_path = os.path.join(out, "progress.jsonl")
    history: list[dict] = []
    if loop is None:
        t_start, obs = 0, env.reset(seed=seed)[0]
        ep_ret, ep_returns, metrics, n_updates, t_upd, wall0, n = 0.0, [], {}, 0, 0.0, 0.0, 0
        open(progress_path, "w").close()
    else:
        state, t_start, obs = loop["state"], loop["t"], loop["obs"]
        rng.bit_generator.state = loop["rng"]
        key = jnp.asarray(loop["key"])
        env_restore(env, loop["env"])
        ep_ret, ep_returns, metrics = loop["ep_ret"], loop["ep_returns"], loop["metrics"]
        n_updates, t_upd, wall0, n = loop["n_updates"], loop["t_upd"], loop["wall_s"], loop["n"]
        with open(progress_path) as f:  # drop evaluations written after the resume point
            history = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= t_start]
        with open(progress_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in history)
        log(f"[sac {env_id}] resumed from step {t_start} ({out}/{RESUME_DIR})" + (
            "" if n else f"; NO replay buffer saved: refilling {warmup} transitions with the current policy "
                         "before updating again (not identical to an uninterrupted run)"), flush=True)
    actor = NumpyActor(state.actor.params, low, high)
    t0 = time.time() - wall0
    t_run0, s_run0 = time.time(), t_start
    meta_extra = dict(seed=seed, warmup=warmup, chunk=chunk, ckpt_every=ckpt_every)
    progress = open(progress_path, "a")
    for t in range(t_start, steps):
        if t < warmup:
            unit = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            unit = actor.unit_action(obs, rng).astype(np.float32)
        nobs, r, term, trunc, _ = env.step(actor.scale(unit))
        buf["obs"][n], buf["act"][n], buf["rew"][n], buf["next_obs"][n], buf["done"][n] = obs, unit, r, nobs, term
        n += 1
        ep_ret += float(r)
        obs = nobs
        if term or trunc:
            ep_returns.append(ep_ret)
            ep_ret = 0.0
            obs, _ = env.reset()
        if (t + 1) % chunk == 0 and t + 1 >= warmup and n >= warmup:
            idx = rng.integers(0, n, size=(chunk, batch_size))
            batches = {k: v[idx] for k, v in buf.items()}
            key, k = jax.random.split(key)
            tu = time.time()
            state, metrics = update_many(state, batches, k)
            actor = NumpyActor(state.actor.params, low, high)  # blocks until the updates are done
            t_upd += time.time() - tu
            n_updates += chunk
        if (t + 1) % ckpt_every == 0:
            rets = evaluate(eval_env, actor.policy(deterministic=False), eval_episodes, seed=10_000 + t)
            det = evaluate(eval_env, actor.policy(deterministic=True), max(1, eval_episodes // 2), seed=20_000 + t)
            path = os.path.join(out, f"actor_{t + 1:07d}.msgpack")
            save_actor(path, state.actor.params, obs_dim, act_dim, env_id, t + 1, float(rets.mean()),
                       hidden_dims, extra=dict(meta_extra, deterministic_return=float(det.mean())))
            rec = dict(step=t + 1, eval_return=float(rets.mean()), eval_return_std=float(rets.std()),
                       deterministic_return=float(det.mean()), checkpoint=os.path.basename(path),
                       train_return=float(np.mean(ep_returns[-10:])) if ep_returns else None,
                       wall_s=time.time() - t0, **{k: float(v) for k, v in metrics.items()})
            history.append(rec)
            progress.write(json.dumps(rec) + "\n")
            progress.flush()
        stopping = stop_after is not None and t + 1 >= stop_after
        if (t + 1) % resume_every == 0 or stopping:
            save_resume(out, t + 1, n, state, buf, dict(
                obs=obs, rng=rng.bit_generator.state, key=np.asarray(key), env=env_snapshot(env), ep_ret=ep_ret,
                ep_returns=ep_returns, metrics={k: float(v) for k, v in metrics.items()}, n_updates=n_updates,
                t_upd=t_upd, wall_s=time.time() - t0))
        if (t + 1) % log_every == 0:
            el = time.time() - t0
            rate = (t + 1 - s_run0) / max(time.time() - t_run0, 1e-9)  # this process's rate, for the ETA
            ups = n_updates / max(t_upd, 1e-9)
            last = history[-1]["eval_return"] if history else float("nan")
            recent = np.mean(ep_returns[-10:]) if ep_returns else float("nan")
            log(f"[sac {env_id}] step {t + 1}/{steps} | {rate:.0f} env steps/s, {ups:.0f} updates/s (update time) | "
                f"train return(10) {recent:.1f} | last eval {last:.1f} | "
                f"alpha {float(metrics.get('alpha', np.nan)):.3f} | elapsed {el / 60:.1f} min, "
                f"ETA {(steps - t - 1) / rate / 60:.1f} min", flush=True)
        if stopping:
            break
    progress.close()
    return history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", required=True)
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=5000)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--ckpt_every", type=int, default=10000)
    p.add_argument("--eval_episodes", type=int, default=5)
    p.add_argument("--log_every", type=int, default=5000)
    p.add_argument("--resume_every", type=int, default=50000,
                   help="write a resume point (networks, optimisers, replay buffer, RNGs, env state) every N steps; "
                        "rerunning the same command continues from the last one")
    p.add_argument("--stop_after", type=int, default=None, help="write a resume point and exit after N env steps")
    a = p.parse_args(argv)
    try:
        train(a.env, a.steps, a.out, seed=a.seed, warmup=a.warmup, chunk=a.chunk, batch_size=a.batch_size,
              ckpt_every=a.ckpt_every, eval_episodes=a.eval_episodes, log_every=a.log_every,
              resume_every=a.resume_every, stop_after=a.stop_after)
    except ValueError as e:
        from offrl.launch import fail

        fail(str(e))


if __name__ == "__main__":
    main()
