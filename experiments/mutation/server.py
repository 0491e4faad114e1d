"""A warm test process for mutation testing: on each request, reload the mutated module from disk and call the
selected test functions directly (collected once by pytest), stopping at the first failure.

usage: python server.py SOCKET MODULE -- PYTEST_ARGS...   (cwd = the mutation copy)
No bytecode is written or read, so a same-size edit within the same second is still seen. The tests must
not use fixtures (parametrize is fine): tests/test_equations.py and the NumPy tests of test_plugins.py don't."""
import importlib, os, socket, sys, time, traceback

sys.dont_write_bytecode = True
sock_path, module = sys.argv[1], sys.argv[2]
pytest_args = sys.argv[sys.argv.index("--") + 1:]
sys.path.insert(0, os.getcwd())
import pytest  # noqa: E402

importlib.import_module(module)


class Collect:
    items = []

    def pytest_collection_finish(self, session):
        self.items = list(session.items)


col = Collect()
pytest.main(pytest_args + ["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[col])
tests = [(it.nodeid, it.module.__name__, it.originalname, dict(getattr(it, "callspec", None).params) if hasattr(it, "callspec") else {})
         for it in col.items]
print(f"collected {len(tests)} tests", flush=True)


def run_all():
    for nodeid, modname, name, params in tests:
        fn = getattr(sys.modules[modname], name)
        try:
            fn(**params)
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
    try:
        importlib.reload(sys.modules[module])
        rc = run_all()
    except BaseException as e:  # a mutant that fails to load is killed
        print("mutant failed to load:", repr(e)[:200], flush=True)
        rc = 3
    print(f"rc={rc} {time.time() - t:.1f}s", flush=True)
    conn.sendall(str(rc).encode())
    conn.close()
