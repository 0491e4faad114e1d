"""Build D4RL-style dataset suites for a Gymnasium environment, offline, from committed behaviour policies.

    python -m offrl.data.build --env=Hopper-v5 \
        --levels=random,medium,expert,medium-replay,medium-expert,expert-random-30,expert-cloned-30 \
        --size=1000000 --seed=0

writes Minari datasets ``offrl/<env>/<level>-v0`` (``<env>`` = the id lower-cased
without its version, e.g. ``offrl/hopper/medium-v0``) into MINARI_DATASETS_PATH.

Levels (``n`` = ``--size`` transitions, all collected with ``offrl.data.collect``):

- ``random``         uniform actions in the action box.
- ``medium``         the first SAC checkpoint whose return is about 1/3 of the expert's (within 20%), stochastic.
- ``expert``         the best SAC checkpoint, sampling actions from its tanh-Gaussian (as D4RL did).
- ``medium-replay``  a reconstruction of SAC's replay buffer up to the medium checkpoint: the
                     uniform warm-up steps, then for each saved checkpoint up to medium, as many
                     transitions as SAC collected between it and the previous one, rolled out by
                     that checkpoint with its exploration noise (the buffer itself is too big for
                     git). It has min(n, medium step) transitions (segments scaled down if n is smaller).
- ``cloned``         a BC policy (MSE, 256x256, fitted to ``bc_episodes`` expert episodes) plus
                     Gaussian action noise ``cloned_noise``.
- ``medium-expert``  medium then expert (2n transitions).
- ``expert-random-X`` / ``expert-cloned-X``  expert with its final X% of transitions replaced by the
                     first X% of random / the last X% of cloned, as the TD3BC++ reference script
                     (``offrl.data.mixtures``), exact to the transition.

Reference scores (every dataset of an environment carries the same ones): ref_min_score = mean
return of the uniform policy, ref_max_score = mean return of the expert policy, both measured
once when the behaviour policies were selected and stored in ``behavior/<env>/manifest.json``.

Determinism: every level's collection is seeded from (seed, level name), so the same seed gives
byte-identical arrays, and the first k transitions of a level are the same however many are
collected (which is what the mixtures rely on). Resumability: each dataset is written into a
hidden staging directory inside the datasets root and renamed into place only when complete;
``--resume`` skips levels already built. Without it, building into an existing id is an error
and nothing is touched.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import time
import zlib
from typing import Callable, Optional, Sequence

import numpy as np

from offrl.data import mixtures
from offrl.data.collect import collect_episodes, uniform_policy
from offrl.data.minari_io import datasets_root, local_dataset_exists, write_minari
from offrl.data.scores import normalized_score

BEHAVIOR_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "behavior")
BASE_LEVELS = ("random", "medium", "expert", "medium-replay", "cloned", "medium-expert")
MIXTURE_RE = re.compile(r"^expert-(random|cloned)-(\d{1,3})$")
DEFAULT_LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "expert-random-30",
                  "expert-cloned-30")
NEEDS_POLICY = {"medium", "expert", "medium-replay", "cloned", "medium-expert"}


class UnknownLevelError(ValueError):
    pass


class UnknownEnvError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Knobs of the recipe that are not the level list, size or seed (defaults are the documented recipe)."""

    bc_episodes: int = 5  # expert episodes the cloned policy is fitted to
    bc_steps: int = 5000
    bc_batch_size: int = 256
    bc_lr: float = 1e-3
    bc_hidden_dims: tuple = (256, 256)
    cloned_noise: float = 0.1  # std of the Gaussian noise added to the BC action (in [-1, 1] units)


# --------------------------------------------------------------------------- names
def env_name(env_id: str) -> str:
    """``Hopper-v5`` -> ``hopper``; ``ALE/Pong-v5`` -> ``pong``."""
    base = env_id.split("/")[-1]
    return re.sub(r"-v\d+$", "", base).lower()


DEFAULT_SIZE = 1_000_000  # transitions per level, as D4RL's locomotion datasets


def dataset_id(env_id: str, level: str) -> str:
    return f"offrl/{env_name(env_id)}/{level}-v0"


def sized_id(did: str, size: int) -> str:
    """Where ``offrl/<env>/<level>-v0`` built with a size other than the default one lives:
    ``offrl/<env>/size-<size>/<level>-v0``, so that sizes of one dataset coexist."""
    env, level = parse_dataset_id(did)
    return f"offrl/{env}/size-{int(size)}/{level}-v0"


def stored_id(did: str, size: int = DEFAULT_SIZE) -> str:
    """The Minari id under which the suite dataset ``did`` built with ``size`` transitions per level is
    (or will be) stored: ``did`` itself when nothing is there yet or it holds that size (or one it did
    not record), else :func:`sized_id`. So the first size built of a dataset keeps its plain id and
    every other size lives beside it; a dataset is found again from its id and size alone."""
    on_disk = built_size(did)
    if not local_dataset_exists(did) or on_disk is None or on_disk == size:
        return did
    return sized_id(did, size)


def built_size(did: str) -> Optional[int]:
    """The size a suite dataset on disk was built with (its description records it), or None."""
    path = os.path.join(datasets_root(), did, "data", "metadata.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        m = re.search(r"\bsize=(\d+)\b", json.load(f).get("description", ""))
    return int(m.group(1)) if m else None


def parse_level(level: str) -> tuple[str, Optional[str], Optional[int]]:
    """(level, mixture source or None, percent or None); raises UnknownLevelError."""
    level = level.strip()
    if level in BASE_LEVELS:
        return level, None, None
    m = MIXTURE_RE.match(level)
    if m and 0 < int(m.group(2)) < 100:
        return level, m.group(1), int(m.group(2))
    raise UnknownLevelError(
        f"unknown level '{level}': choose from {', '.join(BASE_LEVELS)}, expert-random-X or expert-cloned-X "
        f"with X an integer percentage in 1..99 (e.g. expert-random-30)"
    )


def check_env(env_id: str):
    import gymnasium as gym

    try:
        return gym.spec(env_id)
    except Exception as e:
        raise UnknownEnvError(
            f"unknown Gymnasium environment '{env_id}' ({type(e).__name__}: {e}); pass a registered id such as "
            f"Hopper-v5 (see gymnasium.pprint_registry())"
        ) from e


def level_seed(seed: int, name: str) -> int:
    """A per-(seed, name) collection seed: levels never share reset seeds or noise streams."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]).generate_state(1)[0] >> 2)


# --------------------------------------------------------------------------- behaviour policies
def behavior_dir_for(env_id: str, behavior_dir: Optional[str] = None) -> str:
    return behavior_dir or os.path.join(BEHAVIOR_ROOT, env_name(env_id))


def load_manifest(env_id: str, behavior_dir: Optional[str] = None) -> dict:
    d = behavior_dir_for(env_id, behavior_dir)
    path = os.path.join(d, "manifest.json")
    if not os.path.exists(path):
        have = sorted(x for x in (os.listdir(BEHAVIOR_ROOT) if os.path.isdir(BEHAVIOR_ROOT) else [])
                      if os.path.exists(os.path.join(BEHAVIOR_ROOT, x, "manifest.json")))
        training = os.path.join(d, "training")
        hint = (f"A SAC run for it is under way: its snapshot is in {training} (see "
                f"offrl/data/behavior/README.md to resume and select it). " if os.path.isdir(training) else "")
        raise FileNotFoundError(
            f"no behaviour policies for {env_id} (looked for {path}; committed: {', '.join(have) or 'none'}). "
            f"Only the 'random' level can be built without them. {hint}Train SAC "
            f"(python -m offrl.data.sac --env={env_id} --steps=1000000 --out=DIR), then select checkpoints "
            f"(python -m offrl.data.build --env={env_id} --select_from=DIR)"
        )
    with open(path) as f:
        man = json.load(f)
    man["_dir"] = d
    return man


def write_manifest(dest: str, env_id: str, expert: str, medium: str, replay: Sequence[dict], warmup: int,
                   ref_min_score: float, ref_max_score: float, **extra) -> dict:
    """Write ``dest/manifest.json``. ``replay``: [{file, step}] of the checkpoints up to and including medium."""
    os.makedirs(dest, exist_ok=True)
    man = dict(env_id=env_id, expert=expert, medium=medium, replay=list(replay), warmup=int(warmup),
               ref_min_score=float(ref_min_score), ref_max_score=float(ref_max_score), **extra)
    with open(os.path.join(dest, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    return man


def _actor(man: dict, file: str):
    from offrl.data.sac import numpy_actor_from_checkpoint

    return numpy_actor_from_checkpoint(os.path.join(man["_dir"], file))[0]


def select_behavior(sac_dir: str, env_id: str, dest: Optional[str] = None, eval_episodes: int = 10,
                    random_episodes: int = 100, seed: int = 12345, reevaluate_top: Optional[int] = None,
                    log=print) -> dict:
    """Pick expert / medium / replay checkpoints from a SAC run and copy them into the behaviour directory.

    Checkpoints are re-evaluated (stochastic policy, ``eval_episodes`` episodes): all of them, or
    with ``reevaluate_top=k`` only the k best by the return recorded during training (the others
    keep that return). Expert = best mean return; medium = the earliest checkpoint before it whose
    return is within 20% of a third of the expert's (else the closest one; re-evaluated for the
    record); replay = every checkpoint up to medium. The reference scores are measured here.
    """
    import gymnasium as gym

    from offrl.data.sac import evaluate, load_actor, numpy_actor_from_checkpoint

    dest = behavior_dir_for(env_id, dest)
    files = sorted(f for f in os.listdir(sac_dir) if f.startswith("actor_") and f.endswith(".msgpack"))
    if not files:
        raise FileNotFoundError(f"no actor_*.msgpack checkpoints in {sac_dir}")
    with open(os.path.join(sac_dir, "config.json")) as f:
        cfg = json.load(f)
    env = gym.make(env_id)
    rets, metas = {}, {f: load_actor(os.path.join(sac_dir, f))[1] for f in files}
    for f in files:
        rets[f] = (metas[f]["step"], float(metas[f]["mean_return"]), float("nan"), "training eval")

    def reeval(f):
        actor, meta = numpy_actor_from_checkpoint(os.path.join(sac_dir, f), env)
        r = evaluate(env, actor.policy(), eval_episodes, seed)
        rets[f] = (meta["step"], float(r.mean()), float(r.std()), f"{eval_episodes} episodes")
        log(f"  {f}: step {meta['step']}, return {r.mean():.1f} +- {r.std():.1f} ({eval_episodes} episodes)")

    order = sorted(files, key=lambda f: -rets[f][1])
    for f in order[: reevaluate_top or len(files)]:
        reeval(f)
    expert = max(files, key=lambda f: rets[f][1])
    target = rets[expert][1] / 3.0
    before = [f for f in files if rets[f][0] < rets[expert][0]]
    # as D4RL stopped training when the policy first reached about a third of the expert's return:
    # the earliest checkpoint within 20% of that target, else the closest one
    near = [f for f in before if abs(rets[f][1] - target) <= 0.2 * abs(target)]
    medium = near[0] if near else min(before, key=lambda f: abs(rets[f][1] - target))
    if rets[medium][3] == "training eval":
        reeval(medium)
    replay = [dict(file=f, step=rets[f][0], eval_return=rets[f][1]) for f in files if rets[f][0] <= rets[medium][0]]
    expert_r = evaluate(env, numpy_actor_from_checkpoint(os.path.join(sac_dir, expert), env)[0].policy(),
                        max(20, eval_episodes), seed + 1000)
    random_r = evaluate(env, uniform_policy(env.action_space), random_episodes, seed + 2000)
    env.close()
    os.makedirs(dest, exist_ok=True)
    for f in {expert, medium, *[r["file"] for r in replay]}:
        shutil.copy(os.path.join(sac_dir, f), os.path.join(dest, f))
    man = write_manifest(
        dest, env_id, expert, medium, replay, cfg["warmup"], float(random_r.mean()), float(expert_r.mean()),
        expert_return=dict(mean=float(expert_r.mean()), std=float(expert_r.std()), episodes=len(expert_r)),
        medium_return=dict(mean=rets[medium][1], std=rets[medium][2], episodes=eval_episodes),
        random_return=dict(mean=float(random_r.mean()), std=float(random_r.std()), episodes=len(random_r)),
        expert_step=rets[expert][0], medium_step=rets[medium][0], sac_config=cfg,
        evaluations={f: dict(step=s, mean=m, std=sd, how=how) for f, (s, m, sd, how) in rets.items()},
    )
    log(f"selected expert {expert} ({expert_r.mean():.1f}), medium {medium} ({rets[medium][1]:.1f}), "
        f"{len(replay)} replay checkpoints; random return {random_r.mean():.1f}; wrote {dest}/manifest.json")
    return man


# --------------------------------------------------------------------------- cloned (BC) policy
def fit_bc(episodes: Sequence[dict], action_low, action_high, seed: int, opts: BuildOptions) -> dict:
    """Fit a deterministic tanh MLP to the episodes' actions (MSE in [-1, 1] units); params as NumPy."""
    import jax
    import jax.numpy as jnp
    import optax

    from offrl import nets

    low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
    obs = np.concatenate([ep["observations"][:-1] for ep in episodes]).astype(np.float32)
    act = np.concatenate([ep["actions"] for ep in episodes]).astype(np.float32)
    unit = np.clip(2.0 * (act - low) / (high - low) - 1.0, -1.0, 1.0)
    net = nets.DeterministicPolicy(unit.shape[1], tuple(opts.bc_hidden_dims))
    key = jax.random.PRNGKey(seed)
    params = net.init(key, jnp.zeros((1, obs.shape[1])))["params"]
    tx = optax.adam(opts.bc_lr)
    data_o, data_a = jnp.asarray(obs), jnp.asarray(unit)

    def step(carry, k):
        p, s = carry
        idx = jax.random.randint(k, (opts.bc_batch_size,), 0, data_o.shape[0])
        loss, g = jax.value_and_grad(lambda q: ((net.apply({"params": q}, data_o[idx]) - data_a[idx]) ** 2).mean())(p)
        upd, s = tx.update(g, s, p)
        return (optax.apply_updates(p, upd), s), loss

    run = jax.jit(lambda p, s, ks: jax.lax.scan(step, (p, s), ks))
    (params, _), losses = run(params, tx.init(params), jax.random.split(jax.random.fold_in(key, 1), opts.bc_steps))
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)


def bc_policy(params: dict, action_low, action_high, noise: float) -> Callable:
    mlp = params["MLP_0"]
    layers = [(mlp[f"Dense_{i}"]["kernel"], mlp[f"Dense_{i}"]["bias"]) for i in range(len(mlp))]
    low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)

    def act(obs, rng):
        h = np.asarray(obs, np.float32)
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i + 1 < len(layers):
                h = np.maximum(h, 0.0)
        u = np.tanh(h)
        if noise > 0:
            u = np.clip(u + noise * rng.standard_normal(u.shape).astype(np.float32), -1.0, 1.0)
        return (low + (u + 1.0) * 0.5 * (high - low)).astype(np.float32)

    return act


# --------------------------------------------------------------------------- the builder
@contextlib.contextmanager
def _staging(root: str):
    """A private, hidden directory inside ``root`` (Minari ignores hidden ones) used as MINARI_DATASETS_PATH."""
    parent = os.path.join(root, ".offrl-staging")
    if os.path.isdir(parent):  # leftovers of interrupted builds whose process is gone
        for entry in os.listdir(parent):
            try:
                os.kill(int(entry.split("-")[0]), 0)
            except (ValueError, ProcessLookupError):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            except PermissionError:
                pass
    stage = os.path.join(parent, f"{os.getpid()}-{time.time_ns()}")
    os.makedirs(stage)
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = stage
    try:
        yield stage
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
        shutil.rmtree(stage, ignore_errors=True)


def write_atomically(did: str, episodes, env_id: str, ref_min, ref_max, description: str,
                     exist_ok: bool = False, log=print) -> bool:
    """Write the dataset into a staging directory, then rename it into the datasets root in one step.

    Returns False, leaving the other copy as it is, when another process renamed the same dataset into
    place while this one was writing and ``exist_ok`` (else FileExistsError); True when this copy landed.
    """
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.dataset.minari_dataset import parse_dataset_id

    root = datasets_root()
    final = os.path.join(root, did)
    if os.path.exists(final):
        raise FileExistsError(f"dataset '{did}' already exists in {root}; it was left untouched")
    os.makedirs(root, exist_ok=True)
    with _staging(root) as stage:
        write_minari(did, episodes, env_id, ref_min, ref_max, description)
        namespace = parse_dataset_id(did)[0]
        os.environ["MINARI_DATASETS_PATH"] = root
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            os.rename(os.path.join(stage, did), final)
        except OSError:
            if not os.path.exists(final):
                raise
            if not exist_ok:  # another process finished the same dataset first: ours is dropped with the stage
                raise FileExistsError(f"dataset '{did}' was written by another process meanwhile; it was left untouched")
            log(f"[build] {did} was written by another process meanwhile; kept that copy")
            return False
    return True


class _Suite:
    """Episode sources for one (env, size, seed), collected once and shared between levels."""

    def __init__(self, env_id, size, seed, man, opts, progress, log):
        import gymnasium as gym

        self.env_id, self.size, self.seed, self.man, self.opts, self.log = env_id, size, seed, man, opts, log
        self.progress = progress
        env = gym.make(env_id)
        self.space = env.action_space
        env.close()
        self.cache: dict[str, list] = {}
        self.stats: dict[str, dict] = {}

    def _collect(self, name, policy, n):
        t = time.time()
        eps = collect_episodes(self.env_id, policy, n, seed=level_seed(self.seed, name),
                               progress=f"{env_name(self.env_id)}/{name}" if self.progress else None)
        dt = time.time() - t
        self.stats[name] = dict(collect_s=dt, steps=n, steps_per_s=n / max(dt, 1e-9))
        return eps

    def policy_for(self, name):
        if name == "random":
            return uniform_policy(self.space)
        if name in ("medium", "expert"):
            return _actor(self.man, self.man[name]).policy(deterministic=False)
        if name == "cloned":
            demos = collect_episodes(self.env_id, self.policy_for("expert"),
                                     self.opts.bc_episodes * 1000, seed=level_seed(self.seed, "cloned-demos"))
            demos = demos[: self.opts.bc_episodes]
            params = fit_bc(demos, self.space.low, self.space.high, level_seed(self.seed, "cloned-bc"), self.opts)
            return bc_policy(params, self.space.low, self.space.high, self.opts.cloned_noise)
        raise KeyError(name)

    def episodes(self, name, count=None):
        """The first ``count`` (default: all ``size``) transitions of a base level, from memory, disk or collection."""
        count = self.size if count is None else count
        if name in self.cache and mixtures.num_transitions(self.cache[name]) >= count:
            return mixtures.take_transitions(self.cache[name], count)
        did = stored_id(dataset_id(self.env_id, name), self.size)
        if name != "medium-replay" and local_dataset_exists(did):
            eps = mixtures.read_episodes(did, download=False, max_transitions=count)
            if mixtures.num_transitions(eps) >= count:
                return mixtures.take_transitions(eps, count)
        if name == "medium-replay":
            eps = self._medium_replay()
        else:
            eps = self._collect(name, self.policy_for(name), count)
        self.cache[name] = eps
        return eps

    def _medium_replay(self):
        man = self.man
        warm = int(man["warmup"])
        ckpts = sorted(man["replay"], key=lambda r: r["step"])
        bounds = [warm] + [int(r["step"]) for r in ckpts]
        segments = [("uniform warm-up", None, warm)] + [
            (r["file"], r["file"], bounds[i + 1] - bounds[i]) for i, r in enumerate(ckpts)
        ]
        total = bounds[-1]
        n = min(self.size, total)
        counts = [int(seg[2] * n // total) for seg in segments]
        counts[-1] += n - sum(counts)
        out = []
        t = time.time()
        for j, ((label, file, _), c) in enumerate(zip(segments, counts)):
            if c <= 0:
                continue
            pol = uniform_policy(self.space) if file is None else _actor(man, file).policy(deterministic=False)
            out += collect_episodes(self.env_id, pol, c, seed=level_seed(self.seed, f"medium-replay/{j}"))
        dt = time.time() - t
        self.stats["medium-replay"] = dict(collect_s=dt, steps=n, steps_per_s=n / max(dt, 1e-9))
        return out


def describe(level: str, env_id: str, size: int, seed: int, man: Optional[dict], opts: BuildOptions) -> str:
    src = f"behaviour policies offrl/data/behavior/{env_name(env_id)} (offrl SAC)" if man else ""
    what = {
        "random": "uniform random actions in the action box",
        "medium": f"the SAC checkpoint {man and man['medium']} (about 1/3 of the expert's return), actions sampled "
                  "from its tanh-Gaussian",
        "expert": f"the best SAC checkpoint {man and man['expert']}, actions sampled from its tanh-Gaussian (as D4RL)",
        "medium-replay": "reconstruction of SAC's replay buffer up to the medium checkpoint: uniform warm-up steps, "
                         "then each saved checkpoint up to medium rolled out (stochastic) for as many steps as SAC "
                         "took between it and the previous one",
        "cloned": f"a BC policy (MSE, {list(opts.bc_hidden_dims)} MLP, {opts.bc_steps} steps) fitted to "
                  f"{opts.bc_episodes} expert episodes, Gaussian action noise std {opts.cloned_noise}",
        "medium-expert": "medium-v0 followed by expert-v0",
    }
    _, src_level, pct = parse_level(level)
    body = what.get(level) or (
        f"expert-v0 with its final {pct}% of transitions replaced by the "
        f"{'first' if mixtures.part_taken(src_level or '') == 'head' else 'last'} {pct}% of {src_level}-v0 "
        f"(Appendix A of the TD3BC++ paper and its reference script; exact to the transition)"
    )
    return (f"offrl local suite for {env_id}, level {level}: {body}. size={size}, seed={seed}. {src} "
            f"Built by python -m offrl.data.build --env={env_id} --levels={level} --size={size} --seed={seed}. "
            f"ref_min_score = uniform-policy mean return, ref_max_score = expert-policy mean return.")


def build_suite(env_id: str, levels: Sequence[str] = DEFAULT_LEVELS, size: int = 1_000_000, seed: int = 0,
                resume: bool = False, behavior_dir: Optional[str] = None, options: BuildOptions = BuildOptions(),
                progress: bool = True, log=print) -> dict:
    """Build the requested levels of ``env_id``'s suite; returns {level: dict(dataset_id, built, seconds, ...)}.

    Raises UnknownLevelError / UnknownEnvError for bad input and FileExistsError when a
    requested dataset exists (unless ``resume``, which skips it); in every error case before
    building nothing on disk is modified.
    """
    levels = [lv.strip() for lv in levels if lv.strip()]
    if not levels:
        raise UnknownLevelError("no levels given")
    parsed = [parse_level(lv) for lv in levels]
    check_env(env_id)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    ids = {lv: stored_id(dataset_id(env_id, lv), size) for lv in levels}
    existing = [ids[lv] for lv in levels if local_dataset_exists(ids[lv])]
    if existing and not resume:
        raise FileExistsError(
            f"dataset(s) {', '.join(existing)} already exist in {datasets_root()}; nothing was built or changed. "
            f"Pass --resume (resume=True) to skip existing levels, or delete them first"
        )
    needs_policy = any(lv in NEEDS_POLICY or src for lv, src, _ in parsed)
    man = load_manifest(env_id, behavior_dir) if needs_policy else None
    if man is None and os.path.exists(os.path.join(behavior_dir_for(env_id, behavior_dir), "manifest.json")):
        man = load_manifest(env_id, behavior_dir)
    suite = _Suite(env_id, size, seed, man, options, progress, log)
    order = {name: i for i, name in enumerate(BASE_LEVELS)}
    todo = sorted(levels, key=lambda lv: order.get(lv, len(order)))
    report = {}
    for lv in todo:
        did = ids[lv]
        if local_dataset_exists(did):
            log(f"[build] {did} exists, skipped")
            report[lv] = dict(dataset_id=did, built=False)
            continue
        t = time.time()
        log(f"[build] building {did} ({size} transitions) into {os.path.join(datasets_root(), did)}")
        _, src, pct = parse_level(lv)
        if src is not None:
            expert = suite.episodes("expert")
            k = mixtures.replaced_count(mixtures.num_transitions(expert), pct)
            part = mixtures.part_taken(src)  # the tail of the cloned level, the head of the random one
            eps = mixtures.contaminate(expert, suite.episodes(src, k if part == "head" else None), pct, part)
        elif lv == "medium-expert":
            eps = mixtures.concatenate(suite.episodes("medium"), suite.episodes("expert"))
        else:
            eps = suite.episodes(lv)
        if man is not None:
            ref_min, ref_max = man["ref_min_score"], man["ref_max_score"]
        else:  # random level of an environment without behaviour policies: no expert reference
            ref_min, ref_max = float(np.mean([ep["rewards"].sum() for ep in eps])), None
        tw = time.time()
        if not write_atomically(did, eps, env_id, ref_min, ref_max, describe(lv, env_id, size, seed, man, options),
                                exist_ok=resume, log=log):
            report[lv] = dict(dataset_id=did, built=False)
            continue
        rets = np.array([float(np.sum(ep["rewards"])) for ep in eps])
        info = dict(dataset_id=did, built=True, seconds=time.time() - t, write_s=time.time() - tw,
                    transitions=mixtures.num_transitions(eps), episodes=len(eps), mean_return=float(rets.mean()))
        if ref_max is not None:
            info["normalized_score"] = float(normalized_score(rets.mean(), ref_min, ref_max))
        info["disk_bytes"] = _disk_bytes(os.path.join(datasets_root(), did))
        info.update({f"collect_{k}": v for k, v in suite.stats.get(lv, {}).items()})
        report[lv] = info
        log(f"[build] wrote {did}: {info['transitions']} transitions, {info['episodes']} episodes, "
            f"mean episode return {info['mean_return']:.1f}"
            + (f" (normalised {info['normalized_score']:.1f})" if "normalized_score" in info else "")
            + f", {info['seconds']:.1f}s")
    return report


def _disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def parse_dataset_id(did: str) -> tuple[str, str]:
    """``offrl/hopper/medium-v0`` -> (env name, level)."""
    m = re.match(r"^offrl/([^/]+)/(.+)-v0$", did)
    if not m:
        raise ValueError(f"'{did}' is not an offrl suite id (offrl/<env>/<level>-v0)")
    return m.group(1), m.group(2)


def env_id_for(name: str) -> str:
    """The Gymnasium id of a committed behaviour directory (``hopper`` -> ``Hopper-v5``)."""
    path = os.path.join(BEHAVIOR_ROOT, name, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)["env_id"]
    import gymnasium as gym

    matches = sorted(k for k in gym.registry if env_name(k) == name)
    if not matches:
        raise UnknownEnvError(f"no Gymnasium environment matches '{name}' and no behaviour policies are committed for it")
    return matches[-1]  # highest version


def ensure_dataset(did: str, size: int = DEFAULT_SIZE, seed: int = 0, progress: bool = False, log=print) -> str:
    """Build ``offrl/<env>/<level>-v0`` with ``size`` transitions per level from the committed behaviour
    policies if that size is not on disk; return the Minari id it is stored under (:func:`stored_id`)."""
    name, level = parse_dataset_id(did)
    parse_level(level)
    where = stored_id(did, size)
    if not local_dataset_exists(where):
        build_suite(env_id_for(name), [level], size=size, seed=seed, resume=True, progress=progress, log=log)
    return where


def main(argv=None):
    envs = sorted(json.load(open(os.path.join(BEHAVIOR_ROOT, d, "manifest.json")))["env_id"] for d in os.listdir(BEHAVIOR_ROOT)
                  if os.path.exists(os.path.join(BEHAVIOR_ROOT, d, "manifest.json")))
    p = argparse.ArgumentParser(
        description="Build offrl/<env>/<level>-v0 Minari datasets from behaviour policies, offline.",
        epilog=f"environments with committed behaviour policies: {', '.join(envs) or 'none'}. "
               f"levels: {', '.join(BASE_LEVELS)}, expert-random-X, expert-cloned-X (X an integer percentage, 1..99). "
               f"Datasets go into MINARI_DATASETS_PATH (default ~/.minari/datasets).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--env", required=True, help=f"Gymnasium id: {', '.join(envs) or 'see offrl/data/behavior'}")
    p.add_argument("--levels", default=",".join(DEFAULT_LEVELS), help="comma-separated levels (see below)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE,
                   help="transitions per level (medium-expert: twice); other sizes than the default go to offrl/<env>/size-<size>/<level>-v0")
    p.add_argument("--seed", type=int, default=0, help="collection seed")
    p.add_argument("--resume", action="store_true", help="skip levels already built instead of refusing")
    p.add_argument("--behavior_dir", default=None, help="default offrl/data/behavior/<env>")
    p.add_argument("--select_from", default=None,
                   help="a SAC output dir: select expert/medium/replay checkpoints into the behaviour dir and exit")
    p.add_argument("--reevaluate_top", type=int, default=None,
                   help="with --select_from: re-evaluate only the k best checkpoints by training-time return")
    p.add_argument("--report", default=None, help="write the build report (JSON) here")
    a = p.parse_args(argv)
    from offrl.launch import fail

    try:
        if a.select_from:
            if not os.path.isdir(a.select_from):
                fail(f"--select_from={a.select_from} is not a directory: give the --out directory of a SAC run "
                     f"(python -m offrl.data.sac --env={a.env} --out=DIR)")
            check_env(a.env)
            select_behavior(a.select_from, a.env, a.behavior_dir, reevaluate_top=a.reevaluate_top)
            return
        t = time.time()
        rep = build_suite(a.env, a.levels.split(","), a.size, a.seed, resume=a.resume, behavior_dir=a.behavior_dir)
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # unknown env or level, no policies, built already
        fail(str(e))
    print(f"[build] done in {time.time() - t:.1f}s")
    if a.report:
        with open(a.report, "w") as f:
            json.dump(dict(report=rep, wall_s=time.time() - t, argv=vars(a)), f, indent=1)


if __name__ == "__main__":
    main()
