"""The notebook under nbval, papermill and `sweepbook run`: real kernels, real stores."""
import json
import os
import re
import sys
from pathlib import Path

import mlflow.pytorch
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run

TRAIN = ROOT / "notebooks" / "train.ipynb"
COMPARE = ROOT / "notebooks" / "compare.ipynb"
BIN = Path(sys.executable).parent


def only_run(client, expname):
    experiment = client.get_experiment_by_name(expname)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def assert_complete_run(client, recorded):
    run_id = recorded.info.run_id
    assert recorded.info.status == "FINISHED"
    assert recorded.data.metrics["test_acc"] > 0.5
    steps = client.get_metric_history(run_id, "train_loss")
    epochs = client.get_metric_history(run_id, "val_acc")
    assert len(steps) > len(epochs) == int(recorded.data.params["training.epochs"])
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/learning_curves.png", "figures/confusion_matrix.png",
                       "figures/sample_predictions.png"}
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    import torch
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_train_notebook_passes_nbval_and_records_a_run(kernel_env, client, tmp_path):
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                "--nbval-current-env", str(TRAIN)], cwd=tmp_path, env=kernel_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_complete_run(client, only_run(client, "debug"))


@pytest.mark.slow
def test_papermill_from_another_folder_applies_overrides(kernel_env, client, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    overrides = '["model=mlp", "optimizer.lr=0.02", "+note=from papermill"]'
    done = run([str(BIN / "papermill"), str(TRAIN), "out.ipynb", "-p", "overrides", overrides,
                "--no-progress-bar"], cwd=elsewhere, env=kernel_env)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = only_run(client, "debug")
    assert recorded.data.params["model"] == "mlp"
    assert recorded.data.params["model._target_"] == "sweepbook.models.MLP"
    assert recorded.data.params["optimizer.lr"] == "0.02"
    assert recorded.data.params["note"] == "from papermill"
    assert recorded.info.run_name == "model=mlp,lr=0.02,note=from papermill,debug=default"
    assert_complete_run(client, recorded)
    assert (elsewhere / "out.ipynb").is_file()


@pytest.mark.slow
def test_sweepbook_run_prints_the_result(kernel_env, client, tmp_path):
    done = run([str(BIN / "sweepbook"), "run", str(TRAIN), "model=mlp", "--quiet",
                "--output", str(tmp_path / "executed.ipynb")], cwd=tmp_path, env=kernel_env)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = only_run(client, "debug")
    assert f"run id: {recorded.info.run_id} (FINISHED)" in done.stdout
    assert f"test_acc: {recorded.data.metrics['test_acc']:.4f}" in done.stdout
    assert f"test_loss: {recorded.data.metrics['test_loss']:.4f}" in done.stdout
    assert "make ui" in done.stdout
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"]["overrides"] == ["model=mlp"]


@pytest.mark.slow
def test_failing_notebook_run_is_recorded_failed_with_its_notebook(kernel_env, client,
                                                                   tmp_path):
    done = run([str(BIN / "sweepbook"), "run", str(TRAIN), "data=mnist",
                f"paths.data_dir={tmp_path / 'nothing'}", "--quiet",
                "--output", str(tmp_path / "failed.ipynb")], cwd=tmp_path, env=kernel_env)
    assert done.returncode == 1
    assert "the notebook failed" in done.stderr and "DatasetNotFound" in done.stderr
    recorded = only_run(client, "debug")
    assert recorded.info.status == "FAILED"
    assert "MNIST not found" in recorded.data.tags["sweepbook.error"]
    assert "An Exception was encountered" in (tmp_path / "failed.ipynb").read_text()
    logged = [a.path for a in client.list_artifacts(recorded.info.run_id)]
    assert "failed.ipynb" in logged  # the job's own record holds its executed notebook


def _outputs(notebook: Path) -> str:
    """Everything the executed notebook shows as text (streams and plain results)."""
    cells = json.loads(notebook.read_text())["cells"]
    texts = []
    for output in (o for cell in cells for o in cell.get("outputs", [])):
        texts.append("".join(output.get("text", "")))
        texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def _images(notebook: Path) -> int:
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_compare_notebook_under_papermill_ranks_reloads_and_promotes(swept, tmp_path):
    """The store comes from the config here, as for a user: no MLFLOW_TRACKING_URI."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    out = tmp_path / "compare.ipynb"
    done = run([str(BIN / "papermill"), str(COMPARE), str(out), "-p", "sweep_id",
                swept.sweep_id, "-p", "metric", "val_loss", "-p", "register_as", "digits",
                "-p", "overrides", f'["tracking.uri={swept.uri}"]', "--no-progress-bar"],
               cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()  # MLflow's cwd-relative default stays unused
    shown = _outputs(out)
    assert f"sweep {swept.sweep_id}: 4 runs in {swept.uri}" in shown
    assert ("swept: model, model.channels, model.hidden, optimizer.lr; ranked by val_loss (min)"
            in shown)
    client = MlflowClient(swept.uri)
    champion = client.get_model_version_by_alias("digits", "champion")
    best = client.get_run(champion.run_id)
    parent = best.data.tags["mlflow.parentRunId"]
    children = client.search_runs([best.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent}'")
    assert best.data.metrics["val_loss"] == min(r.data.metrics["val_loss"] for r in children)
    logged = best.data.metrics["test_acc"]
    assert re.search(rf"re-evaluated on \d+ test samples: acc {logged:.4f} \(logged: "
                     rf"{logged:.4f}\)", shown), shown
    assert _images(out) == 4  # metric vs params, learning curves, parallel coords, confusion
