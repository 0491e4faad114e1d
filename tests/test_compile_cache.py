"""config.compile_cache: which directory each setting names, and what an unusable one does."""
import os
import subprocess
import sys

import pytest

from offrl import compile_cache


@pytest.fixture
def no_jax_cache_dir(monkeypatch):
    """As if neither JAX_COMPILATION_CACHE_DIR nor jax.config named a cache directory."""
    import jax

    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_each_setting_names_its_directory(tmp_path):
    assert compile_cache.resolve("off") is None
    assert compile_cache.resolve(str(tmp_path / "x")) == str(tmp_path / "x")
    assert compile_cache.resolve("~/xla") == os.path.join(os.path.expanduser("~"), "xla")
    # auto: the directory JAX was given (conftest gives every test a private one through the environment)
    assert compile_cache.resolve("auto") == os.environ["JAX_COMPILATION_CACHE_DIR"]


def test_auto_is_offrls_own_directory_when_jax_has_none(no_jax_cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert compile_cache.resolve("auto") == str(tmp_path / "home-cache" / "offrl" / "xla")


def test_an_unwritable_directory_fails_in_one_line_unless_auto_which_runs_without(no_jax_cache_dir, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"^config.compile_cache='.*': cannot write to .*give a writable directory, 'auto' or 'off'$"):
        compile_cache.check(str(blocker / "xla"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert compile_cache.check("auto") is None
    made = compile_cache.check(str(tmp_path / "a" / "b"))
    assert made == str(tmp_path / "a" / "b") and os.path.isdir(made)


def test_only_offrls_own_directory_is_bounded(tmp_path):
    """JAX's bounded cache needs an access-time file beside every entry, which unbounded writers (JAX's
    default) do not leave; so the bound is set for offrl's own directory only, and undone for another."""
    script = """
import jax
from offrl import compile_cache as cc
own = cc.check("auto")
cc.use(own)
print(own == cc.default_dir(), jax.config.jax_compilation_cache_max_size == cc.MAX_BYTES)
cc.use(%r)
print(jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)
cc.use(None)
print(jax.config.jax_enable_compilation_cache)
""" % str(tmp_path / "other")
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(tmp_path / "home"), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["True True", f"{tmp_path / 'other'} -1", "False"]
