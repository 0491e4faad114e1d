"""Every notebook runs top to bottom with tiny settings (code cells executed in order, in a subprocess)."""
import glob
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
TINY = dict(OFFRL_NB_DATASET="test/hopper/tiny-v0", OFFRL_NB_SEEDS="2", OFFRL_NB_STEPS="20",
            OFFRL_NB_CHUNK="10", OFFRL_NB_HIDDEN="16,16", OFFRL_NB_EPISODES="2", MPLBACKEND="Agg")


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(tiny_dataset, path, tmp_path):
    nb = json.load(open(path))
    source = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    script = tmp_path / "nb.py"
    script.write_text(source)
    proc = subprocess.run([sys.executable, str(script)], cwd=os.path.dirname(path), capture_output=True, text=True,
                          env=dict(os.environ, **TINY, PYTHONPATH=ROOT, OFFRL_NB_WORKDIR=str(tmp_path / "runs")),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final:" in proc.stdout


def test_tutorial_is_committed_with_its_outputs():
    cells = [c for c in json.load(open(os.path.join(ROOT, "notebooks", "tutorial.ipynb")))["cells"] if c["cell_type"] == "code"]
    text = "".join("".join(o.get("text", [])) for c in cells for o in c.get("outputs", []))
    figures = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert "final:" in text and "normalised score" in text and len(figures) >= 4
