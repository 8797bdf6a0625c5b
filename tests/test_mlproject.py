"""`mlflow run` on the MLproject file: the notebook's run becomes a child of the project run."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_mlflow_run_trains_in_a_child_without_param_clashes(store, client, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path}"}
    done = subprocess.run(
        ["mlflow", "run", str(ROOT), "-e", "train", "-P", "overrides=model=mlp optimizer.lr=0.02",
         "--env-manager", "local", "--experiment-name", "debug"],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name("debug").experiment_id])
    [project] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    [notebook] = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert project.info.status == notebook.info.status == "FINISHED"
    assert notebook.data.tags["mlflow.parentRunId"] == project.info.run_id
    assert notebook.data.params["model.name"] == "mlp"
    assert notebook.data.params["optimizer.lr"] == "0.02"
    assert "overrides" not in notebook.data.params
    assert "test_acc" in notebook.data.metrics
    executed = ROOT / "outputs" / "mlproject" / f"train-{project.info.run_id}.ipynb"
    assert executed.is_file()
    executed.unlink()
