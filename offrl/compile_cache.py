"""JAX's persistent compilation cache for runs, and the run's compilation time.

A run compiles each stage's chunk once per process; on a CPU that takes from seconds (TD3+BC) to a
minute (BRAC+, iTRPO, CQL), on a GPU several seconds. ``config.compile_cache`` keeps the compiled
programs on disk, so a rerun, a resumed run, another seed range or a sweep's next job with the same
shapes loads them instead (a short BRAC+ run on the 2-core CPU: 39 s cold, 25 s warm; docs/performance.md).
A cached program is the same executable, so results are bit-identical with or without the cache.

JAX owns the cache (``jax.experimental.compilation_cache``): its key is the program, the compile
options, the XLA flags and the device, and XLA's CPU loader refuses a program compiled for CPU features
the host lacks (JAX then compiles it again). Only programs that took at least
``jax_persistent_cache_min_compile_time_secs`` (JAX's default: 1 s) to compile are written, and under
``jax.distributed`` only process 0 writes.
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import jax

OFF, AUTO = "off", "auto"
MAX_BYTES = 2 << 30  # offrl's own directory keeps at most this, least recently used dropped first (see use)
_bounded = False  # whether use() set jax_compilation_cache_max_size to MAX_BYTES


def default_dir() -> str:
    """Where ``auto`` puts the cache when JAX has none: ``$XDG_CACHE_HOME/offrl/xla`` (``~/.cache/offrl/xla``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "offrl", "xla")


def resolve(setting: str) -> Optional[str]:
    """The directory ``config.compile_cache`` names (None: off). ``auto`` is the directory JAX was
    already given (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``), else :func:`default_dir`."""
    if setting == OFF:
        return None
    if setting == AUTO:
        return jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir()
    return os.path.abspath(os.path.expanduser(setting))


def check(setting: str) -> Optional[str]:
    """The cache directory for ``setting``, created if need be; ValueError (one line) if it cannot be
    written. ``auto`` falls back to no cache (returns None) instead of failing the run."""
    path = resolve(setting)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
    except OSError as e:
        if setting == AUTO:
            return None
        raise ValueError(f"config.compile_cache={setting!r}: cannot write to {path} ({e.strerror or e}): "
                         f"give a writable directory, 'auto' or 'off'") from None
    return path


def use(path: Optional[str]) -> None:
    """Point this process's JAX at the cache ``path`` (None: no persistent cache). JAX decides once per
    process whether to use a cache, at its first compilation, so a change after that is made effective
    with ``reset_cache``; the setting then stays for the rest of the process.

    Only offrl's own directory (:func:`default_dir`) is bounded (``MAX_BYTES``, least recently used
    first). JAX's bounded cache reads an access-time file beside every entry, which a writer without a
    bound (JAX's default) does not leave, and then fails to write anything; so a directory JAX or the user
    named keeps JAX's own size setting, as every other JAX program writing there has it."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    global _bounded
    size = jax.config.jax_compilation_cache_max_size
    if path is None:
        if jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir:
            jax.config.update("jax_enable_compilation_cache", False)
            cc.reset_cache()
        return
    if path == default_dir() and size == -1:
        size, _bounded = MAX_BYTES, True
    elif path != default_dir() and _bounded:  # the bound this module set is for its own directory only
        size, _bounded = -1, False
    if (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir,
            jax.config.jax_compilation_cache_max_size) != (True, path, size):
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_compilation_cache_max_size", size)
        cc.reset_cache()


class CompileClock:
    """Seconds this process spends tracing, lowering and compiling (or loading from the cache), and the
    cache's hits, counted from JAX's monitoring events between :meth:`start` and :meth:`read`."""

    _lock = threading.Lock()
    _totals = {"seconds": 0.0, "programs": 0, "hits": 0, "saved": 0.0}
    _registered = False
    DURATIONS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                 "/jax/core/compile/backend_compile_duration")

    @classmethod
    def _register(cls) -> None:
        with cls._lock:
            if cls._registered:
                return
            cls._registered = True
        from jax import monitoring

        def on_duration(event: str, seconds: float, **_) -> None:
            with cls._lock:
                if event in cls.DURATIONS:
                    cls._totals["seconds"] += seconds
                    cls._totals["programs"] += event == cls.DURATIONS[-1]
                elif event == "/jax/compilation_cache/compile_time_saved_sec":
                    cls._totals["saved"] += seconds

        def on_event(event: str, **_) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                with cls._lock:
                    cls._totals["hits"] += 1

        monitoring.register_event_duration_secs_listener(on_duration)
        monitoring.register_event_listener(on_event)

    def start(self) -> "CompileClock":
        self._register()
        with self._lock:
            self._at = dict(self._totals)
        return self

    def read(self) -> dict:
        """``seconds``, ``programs`` (compiled or loaded), ``hits`` (loaded from the cache) and ``saved``
        (the compile seconds the hits saved, as JAX recorded them when it wrote the entries)."""
        with self._lock:
            return {k: self._totals[k] - self._at[k] for k in self._totals}
