"""Execute a notebook top to bottom and store its outputs (text and figures), without Jupyter.

    python notebooks/execute.py notebooks/tutorial.ipynb      # with the knobs' defaults
    OFFRL_NB_STEPS=20 python notebooks/execute.py notebooks/tutorial.ipynb   # tiny, like the tests

Code cells run in order in one namespace, from the notebook's directory; each cell's stdout,
stderr and every figure shown (``plt.show()``) become its outputs. The tests execute the
notebooks themselves (tests/test_notebooks.py); this script refreshes the committed outputs.
"""
import base64
import io
import json
import os
import sys
import time
import traceback


class _Stream(io.TextIOBase):
    """A text stream that collects into whatever buffer the current cell set."""

    def __init__(self):
        self.buffer_ = io.StringIO()

    def write(self, s):
        return self.buffer_.write(s)

    def flush(self):
        pass


def execute(path: str) -> None:
    with open(path) as f:
        nb = json.load(f)
    os.chdir(os.path.dirname(os.path.abspath(path)))
    os.environ.setdefault("MPLBACKEND", "Agg")
    out, err = _Stream(), _Stream()
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    figures = []

    import matplotlib.pyplot as plt

    def show(*args, **kwargs):
        for num in plt.get_fignums():
            buf = io.BytesIO()
            plt.figure(num).savefig(buf, format="png", dpi=80)
            figures.append(base64.b64encode(buf.getvalue()).decode())
        plt.close("all")

    plt.show = show
    namespace = {"__name__": "__main__"}
    count = 0
    try:
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            count += 1
            out.buffer_, err.buffer_, figures[:] = io.StringIO(), io.StringIO(), []
            t, cpu = time.time(), time.process_time()
            try:
                exec(compile("".join(cell["source"]), f"<cell {count}>", "exec"), namespace)
                failed = None
            except Exception:
                failed = traceback.format_exc()
            outputs = []
            for name, stream in (("stdout", out), ("stderr", err)):
                text = stream.buffer_.getvalue()
                if text:
                    outputs.append({"name": name, "output_type": "stream", "text": text.splitlines(keepends=True)})
            for png in figures:
                outputs.append({"data": {"image/png": png, "text/plain": ["<Figure>"]}, "metadata": {},
                                "output_type": "display_data"})
            cell["outputs"], cell["execution_count"] = outputs, count
            print(f"cell {count}: {time.time() - t:.0f}s wall, {time.process_time() - cpu:.0f}s CPU", file=real_err, flush=True)
            if failed:
                print(failed, file=real_err)
                raise SystemExit(f"cell {count} failed; {path} left unchanged")
    finally:
        sys.stdout, sys.stderr = real_out, real_err
    with open(os.path.basename(path), "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        execute(p)
