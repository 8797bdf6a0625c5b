"""`mlflow run` on the MLproject file: the notebook's run becomes a child of the project run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweepbook.tracking.location import sqlite_file

from conftest import ROOT


@pytest.mark.slow
def test_mlflow_run_trains_in_a_child_without_param_clashes(store, client, tmp_path):
    """`mlflow run .` as the MLproject comment says: its `main` entry point. Without
    --experiment-name: `mlflow run` would create that experiment with a cwd-relative artifact
    folder (./mlruns), and the notebook's artifacts would land there."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path}"}
    done = subprocess.run(
        ["mlflow", "run", str(ROOT), "-P", "overrides=model=mlp optimizer.lr=0.02",
         "--env-manager", "local"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [project] = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    [notebook] = client.search_runs([client.get_experiment_by_name("debug").experiment_id])
    assert project.info.status == notebook.info.status == "FINISHED"
    assert notebook.data.tags["mlflow.parentRunId"] == project.info.run_id
    assert notebook.data.params["model"] == "mlp"
    assert notebook.data.params["optimizer.lr"] == "0.02"
    assert "overrides" not in notebook.data.params
    assert "test_acc" in notebook.data.metrics
    store_folder = sqlite_file(store).parent
    assert notebook.info.artifact_uri.startswith((store_folder / "mlartifacts").as_uri())
    assert not (ROOT / "mlruns").exists()
    executed = ROOT / "outputs" / "mlproject" / f"train-{project.info.run_id}.ipynb"
    assert executed.is_file()
    executed.unlink()
