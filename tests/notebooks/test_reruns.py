"""train.ipynb re-run the way JupyterLab users do it: one live kernel, cells in any order.

Whatever cells a user re-runs or skips, every run MLflow records must describe what it
trained: its params, tags and overrides.yaml come from the config the model was built from,
its logged model is of the class its params name, and each run trains a fresh model.
"""
import math
import os
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import yaml
from jupyter_client import KernelManager
from mlflow.tracking import MlflowClient

from sweepbook.config import compose
from sweepbook.data import load_dataset
from sweepbook.params import config_params

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
TRAIN = NOTEBOOKS / "train.ipynb"
EXPERIMENT = "debug"  # the smoke preset's experiment
CELL_TIMEOUT = 300


def code_cells(notebook: Path):
    import nbformat

    return [c for c in nbformat.read(str(notebook), as_version=4).cells if c.cell_type == "code"]


def only_cell(cells, marker: str) -> str:
    found = [c.source for c in cells if marker in c.source]
    assert len(found) == 1, f"{len(found)} code cells of {TRAIN.name} contain {marker!r}"
    return found[0]


def edited_parameters(source: str, overrides) -> str:
    """The parameters cell as a user edits it: the `overrides = []` line changed."""
    assert "\noverrides = []\n" in source, source
    return source.replace("\noverrides = []\n", f"\noverrides = {overrides!r}\n")


class Kernel:
    """Executes sources in one live kernel, as JupyterLab does cell by cell."""

    def __init__(self, client):
        self.client = client

    def run(self, source: str) -> str:
        outputs = []

        def collect(message):
            content = message["content"]
            if message["msg_type"] == "stream":
                outputs.append(content["text"])
            elif message["msg_type"] == "error":
                outputs.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(source, timeout=CELL_TIMEOUT,
                                                output_hook=collect, allow_stdin=False)
        text = "".join(outputs)
        assert reply["content"]["status"] == "ok", (
            f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}\n"
            f"--- cell ---\n{source}\n--- output ---\n{text[-5000:]}")
        return text


@pytest.fixture
def output_dir(tmp_path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
def kernel(store, output_dir):
    """A python3 ipykernel started in notebooks/ with the tests' store and the smoke preset."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={output_dir}"}
    env.pop("MLFLOW_RUN_ID", None)
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(NOTEBOOKS), env=env)
    try:
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            yield Kernel(client)
        finally:
            client.stop_channels()
    finally:
        manager.shutdown_kernel(now=True)


def new_run(client: MlflowClient, seen: set):
    """The one run recorded since `seen` (run ids), added to `seen`."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, "no run was recorded"
    fresh = [r for r in client.search_runs([experiment.experiment_id])
             if r.info.run_id not in seen]
    assert len(fresh) == 1, [(r.info.run_name, r.info.status) for r in fresh]
    seen.add(fresh[0].info.run_id)
    return fresh[0]


def logged_overrides(store: str, run_id: str):
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="overrides.yaml",
                                               tracking_uri=store)
    return yaml.safe_load(Path(path).read_text())


def values(client: MlflowClient, run_id: str, metric: str):
    return [m.value for m in sorted(client.get_metric_history(run_id, metric),
                                    key=lambda m: m.step)]


def assert_records_what_it_trained(client: MlflowClient, store: str, recorded):
    """The invariants of every run: the logged model is the class its params name; the logged
    overrides rebuild exactly its params; the metric histories have the length of a complete,
    single training of that config."""
    run_id, params, tags = recorded.info.run_id, recorded.data.params, recorded.data.tags
    assert recorded.info.status == "FINISHED", tags.get("sweepbook.error")
    mlflow.set_tracking_uri(store)
    model = mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    assert f"{type(model).__module__}.{type(model).__qualname__}" == params["model._target_"], (
        f"run {recorded.info.run_name!r} logged a {type(model).__name__} but its params say "
        f"{params['model._target_']}")
    overrides = logged_overrides(store, run_id)
    assert tags["sweepbook.overrides"] == " ".join(overrides)
    assert tags["sweepbook.config_name"] == "train"
    composed = compose(overrides, tags["sweepbook.config_name"])
    assert config_params(composed) == params  # the recorded overrides made the recorded config
    epochs, batch_size = int(params["training.epochs"]), int(params["training.batch_size"])
    assert len(client.get_metric_history(run_id, "val_acc")) == epochs
    train_size = len(load_dataset(composed.data, composed.seed).train)
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train_loss"))
    total, every = epochs * math.ceil(train_size / batch_size), int(
        params["training.log_every_n_steps"])
    assert steps == sorted({*range(every - 1, total, every), total - 1})


@pytest.mark.slow
def test_rerun_cells_in_any_order_record_what_was_trained(kernel, store, output_dir):
    client = MlflowClient(store)
    cells = code_cells(TRAIN)
    parameters = only_cell(cells, "overrides = []")
    config = only_cell(cells, "cfg = compose(")
    training = only_cell(cells, "with start_run(")
    smoke = ["debug=default", f"paths.output_dir={output_dir}"]
    seen = set()

    # Run All
    for cell in cells:
        kernel.run(cell.source)
    first = new_run(client, seen)
    assert first.data.params["model"] == "cnn"
    assert first.data.params["model._target_"] == "sweepbook.models.CNN"
    assert logged_overrides(store, first.info.run_id) == smoke

    # (a) edit overrides in the parameters cell; re-run it, the config cell and the training cell
    kernel.run(edited_parameters(parameters, ["model=mlp"]))
    kernel.run(config)
    kernel.run(training)
    mlp = new_run(client, seen)
    assert mlp.info.run_name == "model=mlp,debug=default"
    assert mlp.data.params["model"] == "mlp"
    assert mlp.data.params["model._target_"] == "sweepbook.models.MLP"
    assert mlp.data.tags["sweepbook.overrides"] == " ".join(["model=mlp", *smoke])
    assert type(mlflow.pytorch.load_model(f"runs:/{mlp.info.run_id}/model")).__name__ == "MLP"

    # (b) edit overrides again, re-run the parameters cell and the training cell, not the config
    # cell: the run is of the config cfg still holds (mlp), and says so everywhere
    kernel.run(edited_parameters(parameters, ["model=cnn", "optimizer.lr=0.02"]))
    kernel.run(training)
    stale = new_run(client, seen)
    assert stale.info.run_name == mlp.info.run_name
    assert stale.data.params == mlp.data.params
    assert stale.data.params["optimizer.lr"] != "0.02"
    assert stale.data.tags["sweepbook.overrides"] == mlp.data.tags["sweepbook.overrides"]
    assert logged_overrides(store, stale.info.run_id) == ["model=mlp", *smoke]

    # (c) re-run only the training cell, twice: two more runs, each trained from scratch
    kernel.run(training)
    again = new_run(client, seen)
    kernel.run(training)
    once_more = new_run(client, seen)
    assert again.info.run_id != once_more.info.run_id
    assert again.data.params == once_more.data.params == mlp.data.params
    for run in (stale, again, once_more):  # same config, same seed: the same training
        assert run.data.metrics["test_acc"] == mlp.data.metrics["test_acc"]
        assert (values(client, run.info.run_id, "val_loss")
                == values(client, mlp.info.run_id, "val_loss"))
        assert (values(client, run.info.run_id, "train_loss")
                == values(client, mlp.info.run_id, "train_loss"))

    recorded = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert {r.info.run_id for r in recorded} == seen and len(seen) == 5
    for run in recorded:
        assert_records_what_it_trained(client, store, run)
