"""Every notebook in notebooks/ runs top to bottom under nbval, as CI runs them: a new notebook
is covered by being there, none is listed by hand."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_cells(notebook) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads(notebook.read_text())["cells"])


def test_there_are_notebooks_to_check():
    assert {"train.ipynb", "compare.ipynb", "regress.ipynb"} <= {n.name for n in NOTEBOOKS}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_passes_nbval(notebook, swept, tmp_path):
    """Against a store holding a sweep (compare.ipynb reads the latest one), with the smoke
    preset for notebooks that train. Every code cell must pass: after a cell times out nbval
    reports the later ones as xfail, and the run still exits 0."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": swept.uri,
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'outputs'}"}
    env.pop("MLFLOW_RUN_ID", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--nbval-current-env", str(notebook)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]  # '8 passed, 2 warnings in 9.1s'
    outcomes = {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", summary)}
    assert outcomes.get("passed") == code_cells(notebook), done.stdout[-2000:]
    assert set(outcomes) <= {"passed", "warning", "warnings"}, done.stdout[-2000:]
