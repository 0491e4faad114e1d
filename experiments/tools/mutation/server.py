"""A warm test process for mutation testing: on each request, reload the mutated module from disk and call the
selected test functions directly (collected once by pytest), stopping at the first failure.

usage: python server.py SOCKET MODULE[,DEPENDENT,...] -- PYTEST_ARGS...   (cwd = the mutation copy)
DEPENDENTs are modules reloaded after MODULE, in order, because they bound its names at import
(``from offrl.diffusion import pc_sample``); the selected test modules are reloaded after them for the
same reason. No bytecode is written or read, so a same-size edit within the same second is still seen.
A request that runs past ``$MUTATION_TIMEOUT`` seconds (default: 10x the first, unmutated request, at least
60 s) is stopped by an alarm and answered 5: a mutant that loops forever (``while not done or ...``) counts
as killed by a timeout, as mutmut counts it, instead of hanging the run.
Tests without fixtures (parametrize is fine) are called directly; when any selected test uses a fixture
(module-scoped models, tmp_path, capsys), each request runs ``pytest.main`` in this process instead, so
every fixture is rebuilt from the mutated code (slower by a collection per mutant)."""
import importlib
import os
import signal
import socket
import sys
import time
import traceback

sys.dont_write_bytecode = True
sock_path, modules = sys.argv[1], sys.argv[2].split(",")
module = modules[0]
pytest_args = sys.argv[sys.argv.index("--") + 1:]
sys.path.insert(0, os.getcwd())
import pytest  # noqa: E402

for m in modules:
    importlib.import_module(m)


class Collect:
    items = []

    def pytest_collection_finish(self, session):
        self.items = list(session.items)


col = Collect()
pytest.main(pytest_args + ["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[col])
tests = [(it.nodeid, it.module.__name__, it.originalname, dict(getattr(it, "callspec", None).params) if hasattr(it, "callspec") else {})
         for it in col.items]
fixtures = sorted({f for it in col.items for f in getattr(it, "fixturenames", ())
                   if f not in (dict(it.callspec.params) if hasattr(it, "callspec") else {}) and f != "request"})
test_modules = sorted({modname for _, modname, _, _ in tests})
print(f"collected {len(tests)} tests" + (f"; fixtures {fixtures}: pytest.main per request" if fixtures else ""), flush=True)


class MutantTimeout(BaseException):
    """Raised by the alarm in whatever the request is running (not an Exception: tests do not catch it)."""


def _alarm(*_):
    raise MutantTimeout()


signal.signal(signal.SIGALRM, _alarm)
limit = float(os.environ["MUTATION_TIMEOUT"]) if os.environ.get("MUTATION_TIMEOUT") else None


def run_all():
    if fixtures:
        return int(pytest.main(pytest_args + ["-x", "-q", "-p", "no:cacheprovider"]))
    for nodeid, modname, name, params in tests:
        fn = getattr(sys.modules[modname], name)
        try:
            fn(**params)
        except MutantTimeout:
            raise
        except BaseException:
            print("FAILED", nodeid, traceback.format_exc().strip().splitlines()[-1][:200], flush=True)
            return 1
    return 0


if os.path.exists(sock_path):
    os.unlink(sock_path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sock_path)
srv.listen(1)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    conn.recv(16)
    t = time.time()
    if limit is not None:
        signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        for m in modules + test_modules:
            importlib.reload(sys.modules[m])
        rc = run_all()
    except MutantTimeout:
        print(f"timeout after {limit:.0f}s", flush=True)
        rc = 5
    except BaseException as e:  # a mutant that fails to load is killed
        print("mutant failed to load:", repr(e)[:200], flush=True)
        rc = 3
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if limit is None:  # the first request is the unmutated baseline
        limit = max(60.0, 10 * (time.time() - t))
    print(f"rc={rc} {time.time() - t:.1f}s", flush=True)
    conn.sendall(str(rc).encode())
    conn.close()
