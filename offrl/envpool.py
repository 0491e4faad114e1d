"""The environments an evaluation steps: in this process, or split over worker processes.

An evaluation of ``S`` seeds x ``E`` episodes steps ``S * E`` independent environments, and on
MuJoCo tasks the simulation and Gymnasium's Python around it are most of its time (Hopper-v5:
about 130 us per environment step on one core, against about 140 us for the whole batched policy
call). ``ProcessEnvs`` gives each of ``workers`` spawned processes a contiguous slice of the
environments, so a step costs one message per worker and the slices run in parallel. Threads
would not do: MuJoCo releases the GIL while it simulates, but Gymnasium's Python (health checks,
observations, rewards) holds it for about half of each step.

Each environment is reset with its own seed and stepped only while its episode runs, so the
results are the same for any number of workers. This module imports no JAX: a spawned worker
imports only Gymnasium, NumPy and the environment's own package.
"""
from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import traceback
from typing import Callable

import gymnasium as gym
import numpy as np

ENVS_PER_WORKER = 4  # auto mode: fewer environments per process than this are stepped in fewer processes


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_workers(n: int) -> int:
    """Worker processes for ``n`` environments: one per core but one, each with at least
    ``ENVS_PER_WORKER`` environments; 1 (this process) for a small evaluation, e.g. a test's, and on
    2 cores. The spare core is the caller's: on a 2-core machine shared with other work, 2 workers
    were 1.12x slower than none (their wake-ups wait for a core), though 1.6-1.8x faster on the
    same machine idle (docs/performance.md)."""
    return max(1, min(available_cores() - 1, n // ENVS_PER_WORKER))


class Envs:
    """``n`` environments stepped one after another in this process."""

    workers = 1  # processes stepping them, for reports

    def __init__(self, make: Callable[[], gym.Env], n: int):
        self.envs = [make() for _ in range(n)]
        self.obs = None

    def reset(self, seeds) -> np.ndarray:
        self.obs = np.stack([e.reset(seed=int(s))[0] for e, s in zip(self.envs, seeds)])
        return self.obs.copy()

    def step(self, actions: np.ndarray, active: np.ndarray):
        """(observations, rewards, terminated, truncated) of all ``n``; only the ``active`` ones are
        stepped, the others keep their last observation with reward 0 and no termination."""
        n = len(self.envs)
        rew, term, trunc = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
        for i in np.flatnonzero(active):
            self.obs[i], rew[i], term[i], trunc[i], _ = self.envs[i].step(actions[i])
        return self.obs.copy(), rew, term, trunc

    def close(self) -> None:
        for e in self.envs:
            e.close()


def _serve(inp, out) -> None:
    """A worker's loop over pickled messages: ("init", make, n) first, then ("reset", seeds) |
    ("step", actions, active) | ("close",). Each is answered ("ok", result); a failure is answered
    ("error", traceback) and ends the worker."""
    envs = None
    try:
        while True:
            msg = pickle.load(inp)
            if msg[0] == "close":
                break
            if msg[0] == "init":
                envs, result = Envs(*msg[1:]), None
            elif msg[0] == "reset":
                result = envs.reset(msg[1])
            else:
                result = envs.step(msg[1], msg[2])
            pickle.dump(("ok", result), out, pickle.HIGHEST_PROTOCOL)
            out.flush()
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    except BaseException:  # noqa: BLE001 - the parent re-raises it with the worker's traceback
        pickle.dump(("error", traceback.format_exc()), out)
        out.flush()
    finally:
        if envs is not None:
            envs.close()


class ProcessEnvs:
    """``n`` environments split into contiguous slices over ``workers`` processes, each a fresh
    ``python -m offrl.envpool`` talking over its stdin/stdout. (multiprocessing's spawn would run the
    caller's main script again in every worker, so a script without a ``__main__`` guard would fail.)"""

    def __init__(self, make: Callable[[], gym.Env], n: int, workers: int):
        import offrl

        root = os.path.dirname(os.path.dirname(os.path.abspath(offrl.__file__)))  # where offrl is importable from
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        self.slices = [s for s in np.array_split(np.arange(n), workers) if len(s)]
        self.workers = len(self.slices)
        self.procs = []
        try:
            for s in self.slices:
                self.procs.append(subprocess.Popen([sys.executable, "-m", "offrl.envpool"], stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, env=env))
                self._send(self.procs[-1], ("init", make, len(s)))
            for p in self.procs:
                self._answer(p)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _send(proc, msg) -> None:
        pickle.dump(msg, proc.stdin, pickle.HIGHEST_PROTOCOL)
        proc.stdin.flush()

    @staticmethod
    def _answer(proc):
        try:
            msg = pickle.load(proc.stdout)
        except EOFError:
            raise RuntimeError("an evaluation worker process died (its error is above); run with "
                               "config.eval_workers=1 to step the environments in this process") from None
        if msg[0] == "error":
            raise RuntimeError(f"an evaluation worker failed:\n{msg[1]}")
        return msg[1]

    def reset(self, seeds) -> np.ndarray:
        seeds = np.asarray(seeds)
        for p, s in zip(self.procs, self.slices):
            self._send(p, ("reset", seeds[s]))
        return np.concatenate([self._answer(p) for p in self.procs])

    def step(self, actions: np.ndarray, active: np.ndarray):
        for p, s in zip(self.procs, self.slices):
            self._send(p, ("step", actions[s], active[s]))
        parts = [self._answer(p) for p in self.procs]
        return tuple(np.concatenate(x) for x in zip(*parts))

    def close(self) -> None:
        for p in self.procs:
            try:
                self._send(p, ("close",))
            except (BrokenPipeError, OSError, ValueError):
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout):
                f.close()
        self.procs = []


def make_envs(env, n: int, workers: int = 0):
    """``n`` environments of ``env`` (an id or an EnvSpec): in this process when ``workers`` is 1 (or
    ``auto_workers(n)`` is, for ``workers=0``), else over that many worker processes."""
    make = functools.partial(gym.make, gym.spec(env) if isinstance(env, str) else env)  # a spec: no registry lookup in a worker
    workers = min(auto_workers(n) if workers == 0 else workers, n)
    if workers > 1:
        try:
            pickle.dumps(make)
        except Exception:  # noqa: BLE001 - e.g. an EnvSpec whose entry point is a local class
            workers = 1
    return ProcessEnvs(make, n, workers) if workers > 1 else Envs(make, n)


if __name__ == "__main__":  # a ProcessEnvs worker: messages on stdin, answers on the original stdout
    _out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything an environment prints goes to stderr, not into the answers
    _serve(sys.stdin.buffer, _out)
