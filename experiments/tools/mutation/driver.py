"""Mutation testing with mutmut's mutation operators (mutmut 2.5.1 library: list_mutations / mutate), each
mutant checked by the warm test process of server.py. Lines marked '# pragma: no mutate' are skipped (by mutmut).

usage: python driver.py FILE SOCKET OUT.jsonl [N,N,...]      (cwd = the mutation copy; FILE is restored on exit)
Writes one JSON line per mutant: {"n", "line_number", "line", "mutant", "status": killed|timeout|survived, "seconds"}
(timeout: server.py stopped the tests at its time limit; it counts as killed)."""
import difflib
import json
import signal
import socket
import sys
import time

from mutmut import Context, list_mutations, mutate

path, sock, out = sys.argv[1:4]
only = {int(x) for x in sys.argv[4].split(",")} if len(sys.argv) > 4 else None  # recheck these mutant numbers
original = open(path).read()


def restore(*_):
    open(path, "w").write(original)
    sys.exit(1)


signal.signal(signal.SIGTERM, restore)


def ask():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"run")
    rc = int(s.recv(16).decode() or "4")
    s.close()
    return rc


try:
    t0 = time.time()
    base = ask()
    print(f"baseline rc={base} in {time.time() - t0:.0f}s", flush=True)
    if base != 0:
        raise SystemExit("the unmutated tests fail: fix them first")
    ids = list_mutations(Context(source=original, filename=path))
    print(f"{len(ids)} mutants", flush=True)
    with open(out, "w") as f:
        for n, mid in enumerate(ids):
            if only is not None and n not in only:
                continue
            mutated, count = mutate(Context(source=original, mutation_id=mid, filename=path))
            if count == 0 or mutated == original:
                continue
            new_lines = mutated.split("\n")
            changed = [line for line in difflib.unified_diff(original.split("\n"), new_lines, lineterm="", n=0)
                       if line.startswith("+") and not line.startswith("+++")]
            open(path, "w").write(mutated)
            t = time.time()
            rc = ask()
            open(path, "w").write(original)
            rec = dict(n=n, line_number=mid.line_number + 1, line=mid.line.strip(), mutant=(changed[0][1:].strip() if changed else ""),
                       status="survived" if rc == 0 else "timeout" if rc == 5 else "killed", seconds=round(time.time() - t, 1))
            f.write(json.dumps(rec) + "\n")
            f.flush()
            eta = (time.time() - t0) / (n + 1) * (len(ids) - n - 1)
            print(f"[{n + 1}/{len(ids)}] {rec['status']} line {rec['line_number']} ({rec['seconds']}s, eta {eta / 60:.0f} min)", flush=True)
finally:
    open(path, "w").write(original)
