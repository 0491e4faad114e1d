"""Local dataset suites: tiny SAC, behaviour selection, every level, determinism, errors, resumability."""
import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from offrl.data import build, sac
from offrl.data.minari_io import load_minari, local_dataset_exists

TINY = build.BuildOptions(bc_episodes=2, bc_steps=20, bc_batch_size=32, bc_hidden_dims=(16, 16))
LEVELS = list(build.DEFAULT_LEVELS) + ["cloned", "expert-random-10"]
SIZE = 300
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")


@pytest.fixture(scope="module")
def behavior(tmp_path_factory):
    """A behaviour directory of three tiny (16x16) random-init actors, replay up to the medium one."""
    d = str(tmp_path_factory.mktemp("behavior") / "hopper")
    os.makedirs(d)
    for i, step in enumerate([200, 400, 600]):
        s = sac.init_sac(jax.random.PRNGKey(i), 11, 3, hidden_dims=(16, 16))
        sac.save_actor(f"{d}/actor_{step:07d}.msgpack", s.actor.params, 11, 3, "Hopper-v5", step, 10.0 * i, (16, 16))
    build.write_manifest(d, "Hopper-v5", "actor_0000600.msgpack", "actor_0000400.msgpack",
                         [dict(file="actor_0000200.msgpack", step=200), dict(file="actor_0000400.msgpack", step=400)],
                         warmup=100, ref_min_score=-20.0, ref_max_score=1000.0)
    return d


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def arrays(did):
    data, info = load_minari(did, download=False)
    return {k: np.asarray(getattr(data, k)) for k in FIELDS}, info


def digest(did):
    a, _ = arrays(did)
    return hashlib.sha256(b"".join(a[k].tobytes() for k in FIELDS)).hexdigest()


def test_every_level_loads_back(behavior, root):
    rep = build.build_suite("Hopper-v5", LEVELS, size=SIZE, seed=0, behavior_dir=behavior, options=TINY,
                            progress=False, log=lambda *a: None)
    expected = {lv: SIZE for lv in LEVELS}
    expected["medium-expert"] = 2 * SIZE
    expected["medium-replay"] = min(SIZE, 400)
    data = {}
    for lv in LEVELS:
        did = f"offrl/hopper/{lv}-v0"
        assert rep[lv]["dataset_id"] == did and rep[lv]["built"]
        a, info = arrays(did)
        data[lv] = a
        assert a["observations"].shape == (expected[lv], 11), lv
        assert a["actions"].shape == (expected[lv], 3), lv
        assert (info.ref_min_score, info.ref_max_score) == (-20.0, 1000.0), lv
        assert info.env_id == "Hopper-v5"
        assert np.all(np.abs(a["actions"]) <= 1.0)
        # the build's report: the mean episode return of what was written, and its normalised score
        assert rep[lv]["mean_return"] == pytest.approx(info.episode_returns.mean(), rel=1e-5), lv
        assert rep[lv]["normalized_score"] == pytest.approx(100 * (info.episode_returns.mean() + 20) / 1020, rel=1e-5), lv
    # contaminated datasets: exact to the transition; the head of random, the tail of cloned (reference script)
    for src, pct in (("random", 30), ("cloned", 30), ("random", 10)):
        k = int(SIZE * pct / 100)
        mixed = data[f"expert-{src}-{pct}"]
        taken = slice(0, k) if src == "random" else slice(SIZE - k, SIZE)
        for f in ("observations", "actions", "rewards", "next_observations", "terminals"):
            np.testing.assert_array_equal(mixed[f][: SIZE - k], data["expert"][f][: SIZE - k])
            np.testing.assert_array_equal(mixed[f][SIZE - k:], data[src][f][taken])
        assert mixed["timeouts"][SIZE - k - 1] or mixed["terminals"][SIZE - k - 1]  # the cut ends an episode
    for f in ("observations", "actions", "rewards"):
        np.testing.assert_array_equal(data["medium-expert"][f], np.concatenate([data["medium"][f], data["expert"][f]]))
    # no staging leftovers, minari sees exactly the datasets built
    import minari

    assert sorted(minari.list_local_datasets()) == sorted(f"offrl/hopper/{lv}-v0" for lv in LEVELS)


def test_same_seed_byte_identical(behavior, tmp_path, monkeypatch):
    levels = ["random", "expert", "medium-replay", "expert-cloned-30"]
    digests = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / run))
        build.build_suite("Hopper-v5", levels, size=200, seed=seed, behavior_dir=behavior, options=TINY,
                          progress=False, log=lambda *a: None)
        digests.append([digest(f"offrl/hopper/{lv}-v0") for lv in levels])
    assert digests[0] == digests[1]
    assert all(x != y for x, y in zip(digests[0], digests[2]))


def test_clear_errors_and_existing_untouched(behavior, root):
    quiet = dict(behavior_dir=behavior, options=TINY, progress=False, log=lambda *a: None)
    with pytest.raises(build.UnknownLevelError, match="unknown level 'mediocre'"):
        build.build_suite("Hopper-v5", ["random", "mediocre"], size=50, **quiet)
    with pytest.raises(build.UnknownLevelError):
        build.build_suite("Hopper-v5", ["expert-random-150"], size=50, **quiet)
    with pytest.raises(build.UnknownEnvError, match="NoSuchEnv-v0"):
        build.build_suite("NoSuchEnv-v0", ["random"], size=50, **quiet)
    assert not os.path.exists(root) or not os.listdir(root)  # nothing written by the failures
    build.build_suite("Hopper-v5", ["random"], size=50, **quiet)
    before = digest("offrl/hopper/random-v0")
    stat = os.stat(os.path.join(root, "offrl/hopper/random-v0/data/main_data.hdf5"))
    with pytest.raises(FileExistsError, match="offrl/hopper/random-v0"):
        build.build_suite("Hopper-v5", ["random", "expert"], size=50, **quiet)
    assert not local_dataset_exists("offrl/hopper/expert-v0")  # refused before building anything
    after = os.stat(os.path.join(root, "offrl/hopper/random-v0/data/main_data.hdf5"))
    assert (stat.st_mtime_ns, stat.st_size) == (after.st_mtime_ns, after.st_size)
    assert digest("offrl/hopper/random-v0") == before
    # resume skips what exists and builds the rest
    rep = build.build_suite("Hopper-v5", ["random", "expert"], size=50, resume=True, **quiet)
    assert not rep["random"]["built"] and rep["expert"]["built"]
    assert digest("offrl/hopper/random-v0") == before
    # a level needing behaviour policies for an env that has none
    with pytest.raises(FileNotFoundError, match="no behaviour policies"):
        build.build_suite("InvertedPendulum-v5", ["expert"], size=50, progress=False, log=lambda *a: None)


def test_interrupted_build_leaves_nothing(behavior, root, monkeypatch):
    quiet = dict(behavior_dir=behavior, options=TINY, progress=False, log=lambda *a: None)
    real = build.write_minari

    def crash(did, *a, **k):
        if did.endswith("medium-v0"):
            real(did, *a, **k)  # the dataset is complete in staging ...
            raise KeyboardInterrupt  # ... but the process dies before the rename
        return real(did, *a, **k)

    monkeypatch.setattr(build, "write_minari", crash)
    with pytest.raises(KeyboardInterrupt):
        build.build_suite("Hopper-v5", ["random", "expert", "medium"], size=60, **quiet)
    assert local_dataset_exists("offrl/hopper/random-v0")
    assert not local_dataset_exists("offrl/hopper/expert-v0") and not local_dataset_exists("offrl/hopper/medium-v0")
    monkeypatch.setattr(build, "write_minari", real)
    rep = build.build_suite("Hopper-v5", ["random", "expert", "medium"], size=60, resume=True, **quiet)
    assert [rep[lv]["built"] for lv in ("random", "expert", "medium")] == [False, True, True]
    import minari

    assert len(minari.list_local_datasets()) == 3


def test_concurrent_build_of_the_same_dataset(behavior, root, monkeypatch):
    """Two processes building one level: the one that lands second keeps the first copy (resume) or raises."""
    quiet = dict(behavior_dir=behavior, options=TINY, progress=False, log=lambda *a: None)
    real = build.write_minari
    first = {}

    def racer(did, *a, **k):  # while this process writes into its stage, "another process" lands the same id
        stage = os.environ["MINARI_DATASETS_PATH"]
        real(did, *a, **k)
        if did not in first:
            shutil.copytree(os.path.join(stage, did), os.path.join(str(root), did))
            first[did] = sorted(os.listdir(os.path.join(str(root), did)))

    monkeypatch.setattr(build, "write_minari", racer)
    rep = build.build_suite("Hopper-v5", ["random"], size=50, resume=True, **quiet)
    assert rep["random"]["built"] is False and local_dataset_exists("offrl/hopper/random-v0")
    assert not os.listdir(os.path.join(str(root), ".offrl-staging"))  # our copy went with the stage
    with pytest.raises(FileExistsError, match="another process"):
        build.build_suite("Hopper-v5", ["expert"], size=50, **quiet)
    assert local_dataset_exists("offrl/hopper/expert-v0")


def test_ensure_dataset(behavior, root, monkeypatch):
    monkeypatch.setattr(build, "BEHAVIOR_ROOT", os.path.dirname(behavior))
    assert build.ensure_dataset("offrl/hopper/medium-v0", size=120, log=lambda *a: None) == "offrl/hopper/medium-v0"
    a, info = arrays("offrl/hopper/medium-v0")
    assert len(a["rewards"]) == 120 and info.ref_max_score == 1000.0
    stat = os.stat(os.path.join(root, "offrl/hopper/medium-v0/data/main_data.hdf5")).st_mtime_ns
    build.ensure_dataset("offrl/hopper/medium-v0", size=120)  # present: used as it is
    assert os.stat(os.path.join(root, "offrl/hopper/medium-v0/data/main_data.hdf5")).st_mtime_ns == stat
    with pytest.raises(ValueError):
        build.ensure_dataset("mujoco/hopper/medium-v0")
    with pytest.raises(build.UnknownLevelError):
        build.ensure_dataset("offrl/hopper/best-v0")
    # the package entry point goes through ensure_dataset for offrl/* ids
    from offrl.data import load_dataset

    data, info = load_dataset("offrl/hopper/random-v0", size=50)
    assert data.size == 50


def test_sac_numpy_actor_matches_flax_and_checkpoint_roundtrip(tmp_path):
    state = sac.init_sac(jax.random.PRNGKey(0), 11, 3, hidden_dims=(16, 16))
    rng = np.random.default_rng(0)
    batches = dict(obs=rng.standard_normal((3, 32, 11)).astype(np.float32),
                   act=rng.uniform(-1, 1, (3, 32, 3)).astype(np.float32),
                   rew=rng.standard_normal((3, 32)).astype(np.float32),
                   next_obs=rng.standard_normal((3, 32, 11)).astype(np.float32),
                   done=(rng.uniform(size=(3, 32)) < 0.1).astype(np.float32))
    new, metrics = sac.update_many(state, batches, jax.random.PRNGKey(1))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(new.log_alpha.params["log_alpha"]) != 0.0
    actor = sac.NumpyActor(new.actor.params, -np.ones(3), np.ones(3))
    obs = rng.standard_normal((5, 11)).astype(np.float32)
    mean, log_std = new.actor.apply_fn({"params": new.actor.params}, obs)
    m, ls = actor.dist(obs)
    np.testing.assert_allclose(m, mean, atol=1e-5)
    np.testing.assert_allclose(ls, log_std, atol=1e-5)
    path = str(tmp_path / "a.msgpack")
    sac.save_actor(path, new.actor.params, 11, 3, "Hopper-v5", 7, 12.5, (16, 16))
    params, meta = sac.load_actor(path)
    assert meta["step"] == 7 and meta["mean_return"] == 12.5 and meta["obs_dim"] == 11
    loaded, _ = sac.numpy_actor_from_checkpoint(path)
    np.testing.assert_array_equal(loaded.dist(obs)[0], m)


def test_tiny_sac_run_select_and_build(tmp_path, monkeypatch):
    """End to end: SAC writes checkpoints, select_behavior picks expert/medium, the builder uses them."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    out = str(tmp_path / "sac")
    hist = sac.train("Hopper-v5", steps=400, out=out, warmup=100, chunk=50, batch_size=32, hidden_dims=(16, 16),
                     ckpt_every=100, eval_episodes=1, log_every=200, log=lambda *a, **k: None)
    assert [h["step"] for h in hist] == [100, 200, 300, 400]
    assert len([f for f in os.listdir(out) if f.endswith(".msgpack")]) == 4
    dest = str(tmp_path / "behavior" / "hopper")
    man = build.select_behavior(out, "Hopper-v5", dest, eval_episodes=2, random_episodes=3, log=lambda *a: None)
    assert man["warmup"] == 100 and man["expert"] in os.listdir(dest)
    assert [r["step"] for r in man["replay"]][-1] == man["medium_step"] < man["expert_step"]
    with open(os.path.join(dest, "manifest.json")) as f:
        assert json.load(f)["ref_max_score"] == man["ref_max_score"]
    rep = build.build_suite("Hopper-v5", ["medium-replay", "expert"], size=150, behavior_dir=dest, options=TINY,
                            progress=False, log=lambda *a: None)
    assert rep["medium-replay"]["transitions"] == min(150, man["medium_step"])


COMMITTED = sorted(os.path.join(build.BEHAVIOR_ROOT, d, "manifest.json") for d in os.listdir(build.BEHAVIOR_ROOT)
                   if os.path.exists(os.path.join(build.BEHAVIOR_ROOT, d, "manifest.json")))


@pytest.mark.parametrize("manifest", COMMITTED, ids=[os.path.basename(os.path.dirname(m)) for m in COMMITTED])
def test_committed_behavior_policies_load(manifest):
    """Every committed suite's behaviour policies load, fit its environment and rank expert > medium > random."""
    import gymnasium as gym

    with open(manifest) as f:
        man = json.load(f)
    d = os.path.dirname(manifest)
    env = gym.make(man["env_id"])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    for file in {man["expert"], man["medium"], *[r["file"] for r in man["replay"]]}:
        assert os.path.getsize(os.path.join(d, file)) < 2_000_000
        actor, meta = sac.numpy_actor_from_checkpoint(os.path.join(d, file))
        assert meta["env_id"] == man["env_id"] and meta["obs_dim"] == obs_dim
        assert actor.unit_action(np.zeros(obs_dim, np.float32), None).shape == (act_dim,)
    assert man["ref_max_score"] > man["medium_return"]["mean"] > man["ref_min_score"]
    assert man["medium_step"] < man["expert_step"]


@pytest.mark.parametrize("manifest", [m for m in COMMITTED if "hopper" not in m],
                         ids=[os.path.basename(os.path.dirname(m)) for m in COMMITTED if "hopper" not in m])
def test_committed_suite_builds_every_level_offline(manifest, root):
    """Walker2d/HalfCheetah: every default level (the mixtures included) builds from the committed policies, offline."""
    with open(manifest) as f:
        man = json.load(f)
    levels = list(build.DEFAULT_LEVELS)  # the five levels and both mixtures
    assert {"expert-random-30", "expert-cloned-30", "medium-replay"} <= set(levels)
    rep = build.build_suite(man["env_id"], levels, size=120, seed=0, options=TINY, progress=False, log=lambda *a: None)
    name = build.env_name(man["env_id"])
    for lv in levels:
        a, info = arrays(f"offrl/{name}/{lv}-v0")
        assert rep[lv]["built"] and info.env_id == man["env_id"], lv
        assert (info.ref_min_score, info.ref_max_score) == (man["ref_min_score"], man["ref_max_score"]), lv
        assert np.all(np.abs(a["actions"]) <= 1.0), lv
    # the expert's data earn more reward per step than the medium policy's, which earn more than random's
    per_step = {lv: arrays(f"offrl/{name}/{lv}-v0")[0]["rewards"].mean() for lv in ("random", "medium", "expert")}
    assert per_step["expert"] > per_step["medium"] > per_step["random"], per_step


def test_sac_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path):
    """A run stopped mid-episode and mid-way between checkpoints, then resumed, ends bit-identical to one
    that never stopped: same networks, optimiser moments, replay data, checkpoints and progress log."""
    kw = dict(steps=500, warmup=100, chunk=50, batch_size=32, hidden_dims=(16, 16), ckpt_every=100,
              resume_every=200, eval_episodes=1, log_every=10_000, log=lambda *a, **k: None)
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    h_full = sac.train("Hopper-v5", out=full, **kw)
    sac.train("Hopper-v5", out=part, stop_after=250, **kw)  # resume point at 250, evaluations up to 200
    # a killed process leaves checkpoints/log lines after its last resume point: simulate one at 300
    with open(os.path.join(part, "progress.jsonl"), "a") as f:
        f.write(json.dumps(dict(step=300, eval_return=-1.0)) + "\n")
    h_part = sac.train("Hopper-v5", out=part, **kw)
    assert [h["step"] for h in h_part] == [h["step"] for h in h_full] == [100, 200, 300, 400, 500]
    for a, b in zip(h_full, h_part):
        assert a["eval_return"] == b["eval_return"] and a["critic_loss"] == b["critic_loss"]
    for f in sorted(x for x in os.listdir(full) if x.endswith(".msgpack")):
        pa, ma = sac.load_actor(os.path.join(full, f))
        pb, mb = sac.load_actor(os.path.join(part, f))
        jax.tree_util.tree_map(np.testing.assert_array_equal, pa, pb)
        assert ma["mean_return"] == mb["mean_return"]
    with open(os.path.join(part, "progress.jsonl")) as f:
        assert [json.loads(x)["step"] for x in f] == [100, 200, 300, 400, 500]
    with pytest.raises(ValueError, match="another configuration"):
        sac.train("Hopper-v5", out=part, **dict(kw, batch_size=64))


def test_sac_resume_without_the_buffer_refills_it_first(tmp_path):
    """A resume point kept without buffer.npz (as carried in git) continues: no update until `warmup`
    new transitions are in, then training goes on to the end."""
    kw = dict(steps=400, warmup=100, chunk=50, batch_size=32, hidden_dims=(16, 16), ckpt_every=50,
              resume_every=200, eval_episodes=1, log_every=10_000)
    out = str(tmp_path / "run")
    sac.train("Hopper-v5", out=out, stop_after=200, log=lambda *a, **k: None, **kw)
    before, _ = sac.load_actor(os.path.join(out, "actor_0000200.msgpack"))
    os.remove(os.path.join(out, "resume", "buffer.npz"))
    lines = []
    hist = sac.train("Hopper-v5", out=out, log=lambda m, **k: lines.append(m), **kw)
    assert "NO replay buffer" in lines[0] and [h["step"] for h in hist] == list(range(50, 401, 50))
    at250, _ = sac.load_actor(os.path.join(out, "actor_0000250.msgpack"))
    at300, _ = sac.load_actor(os.path.join(out, "actor_0000300.msgpack"))
    # steps 200..250 only refill the buffer (no update); at 300 it holds `warmup` rows and updates resume
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, at250)
    assert not np.array_equal(at250["Dense_0"]["kernel"], at300["Dense_0"]["kernel"])


def test_collected_episodes_replay_step_for_step_in_the_environment():
    """collect_episodes records what the environment did: replaying each episode's actions from its reset seed
    gives the same observations, rewards and ends; only an episode's last step ends it; the budget is exact and
    cuts the final episode; the same seed collects the same episodes."""
    import gymnasium as gym

    from offrl.data.collect import collect_episodes, uniform_policy

    env = gym.make("Hopper-v5")
    eps = collect_episodes("Hopper-v5", uniform_policy(env.action_space), 150, seed=5)
    assert sum(len(ep["actions"]) for ep in eps) == 150 and len(eps) > 2
    for i, ep in enumerate(eps):
        assert ep["seed"] == 5 + i
        obs, _ = env.reset(seed=ep["seed"])
        np.testing.assert_allclose(ep["observations"][0], obs, rtol=1e-6)
        for t, action in enumerate(ep["actions"]):
            assert np.all(np.abs(action) <= 1.0)
            obs, reward, term, trunc, _ = env.step(action)
            np.testing.assert_allclose(ep["observations"][t + 1], obs, rtol=1e-5, atol=1e-6)
            assert ep["rewards"][t] == pytest.approx(reward) and ep["terminations"][t] == term
            assert ep["truncations"][t] == trunc
        assert not (ep["terminations"][:-1].any() or ep["truncations"][:-1].any())
        if i < len(eps) - 1:
            assert ep["terminations"][-1] or ep["truncations"][-1]
    assert not eps[-1]["terminations"][-1]  # with seed 5 the budget cuts the last episode before it falls
    again = collect_episodes("Hopper-v5", uniform_policy(env.action_space), 150, seed=5)
    for a, b in zip(eps, again):
        for k in ("observations", "actions", "rewards"):
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("args, message", [
    (["--env=Hoper-v5"], "unknown Gymnasium environment 'Hoper-v5'"),
    (["--env=Hopper-v5", "--steps=0"], "sac.steps=0 is invalid: must be an integer >= 1"),
    (["--env=Hopper-v5", "--ckpt_every=0"], "sac.ckpt_every=0 is invalid"),
    (["--env=Hopper-v5", "--warmup=-1"], "sac.warmup=-1 is invalid: must be an integer >= 0"),
])
def test_sac_cli_refuses_bad_input_in_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "sac"
    with pytest.raises(SystemExit) as e:
        sac.main([*args, f"--out={out}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
