"""The in-process papermill engine, through papermill's own command line (a fresh process)."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

PAPERMILL = str(Path(sys.executable).parent / "papermill")


def write_notebook(path, *sources, parameters="x = 1"):
    cells = [new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(source) for source in sources]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "language": "python", "display_name": "Python 3"}}), path)


def execute(tmp_path, *args):
    return subprocess.run([PAPERMILL, "in.ipynb", "out.ipynb", "--engine", "sweepbook",
                           "--no-progress-bar", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def outputs(tmp_path):
    """Code cells' outputs by source (papermill may add cells: injected parameters, banners)."""
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    return {"".join(c["source"]): c["outputs"] for c in cells if c["cell_type"] == "code"}


def test_parameters_prints_and_inline_figures_land_in_the_notebook(tmp_path):
    write_notebook(tmp_path / "in.ipynb", "print(x * 2)",
                   "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])",
                   "import sys; print('warned', file=sys.stderr)")
    done = execute(tmp_path, "-p", "x", "21")
    assert done.returncode == 0, done.stderr
    cells = outputs(tmp_path)
    assert cells["print(x * 2)"] == [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]
    plotted = cells["%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])"]
    assert any("image/png" in out.get("data", {}) for out in plotted)
    warned = cells["import sys; print('warned', file=sys.stderr)"]
    assert warned[0]["name"] == "stderr" and "warned" in "".join(warned[0]["text"])


def test_an_error_stops_the_notebook_and_fails_like_papermill(tmp_path):
    write_notebook(tmp_path / "in.ipynb", "raise ValueError('bad lr')", "print('never')")
    done = execute(tmp_path)
    assert done.returncode != 0
    assert "ValueError" in done.stderr and "bad lr" in done.stderr
    cells = outputs(tmp_path)
    error = cells["raise ValueError('bad lr')"][-1]
    assert (error["output_type"], error["ename"], error["evalue"]) == ("error", "ValueError",
                                                                        "bad lr")
    assert cells["print('never')"] == []
    assert "An Exception was encountered" in (tmp_path / "out.ipynb").read_text()
