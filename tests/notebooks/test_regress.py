"""notebooks/regress.ipynb: a second notebook with its own primary config (conf/regress.yaml),
its own model module (notebooks/regressors.py) and a minimized metric (test RMSE), used the
ways a user uses it: papermill, `sweepbook run`, `sweepbook sweep`, `sweepbook runs`."""
import os
import re
import sys
from pathlib import Path

import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from conftest import ROOT, SWEEPBOOK, run
from sweepbook.compare import direction_for
from sweepbook.config import ConfigError, compose, importable_from
from sweepbook.data import load_diabetes

NOTEBOOKS = ROOT / "notebooks"
REGRESS = NOTEBOOKS / "regress.ipynb"
BIN = Path(sys.executable).parent


def runs_of(client, expname):
    experiment = client.get_experiment_by_name(expname)
    assert experiment is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([experiment.experiment_id])


def load_regressor(run_id):
    """The logged model: its class lives in notebooks/regressors.py, importable only from there."""
    try:
        with importable_from(NOTEBOOKS):
            return mlflow.pytorch.load_model(f"runs:/{run_id}/model")
    finally:
        sys.modules.pop("regressors", None)


def test_regression_errors_are_minimized():
    assert direction_for("test_rmse") == "min"
    assert direction_for("val_mse") == "min" and direction_for("test_mae") == "min"
    assert direction_for("test_acc") == "max"


def test_regress_yaml_sets_its_own_learning_rate_and_the_command_line_wins():
    with importable_from(NOTEBOOKS):
        default = compose([], "regress")
        overridden = compose(["optimizer.lr=0.1", "regressor=linear"], "regress")
        smoke = compose(["debug=default"], "regress")
    assert default.optimizer._target_ == "torch.optim.Adam"
    assert default.optimizer.lr == 0.05  # regress.yaml's own key over conf/optimizer/adam.yaml
    assert overridden.optimizer.lr == 0.1
    assert dict(overridden.regressor) == {"_target_": "regressors.Linear"}
    assert (smoke.expname, smoke.training.epochs, smoke.data.limit) == ("debug", 3, 400)


def test_regressor_ranges_are_checked_from_the_users_own_module():
    with importable_from(NOTEBOOKS), pytest.raises(ConfigError) as refused:
        compose(["regressor.dropout=1.0", "regressor.depth=0"], "regress")
    assert "regressor.dropout=1.0 is out of range: must be >= 0 and < 1" in str(refused.value)
    assert "regressor.depth=0 is out of range: must be >= 1" in str(refused.value)


def test_regressors_predict_one_value_per_sample_starting_at_the_mean():
    try:
        with importable_from(NOTEBOOKS):
            from regressors import Linear, MLPRegressor
    finally:
        sys.modules.pop("regressors", None)
    x = torch.zeros(5, 10)
    assert Linear(10, target_mean=150.0)(x).tolist() == [[150.0]] * 5
    deep = MLPRegressor(10, hidden=8, depth=3, dropout=0.5, target_mean=150.0)
    assert deep(x).shape == (5, 1)
    assert sum(isinstance(layer, torch.nn.Linear) for layer in deep.modules()) == 4


@pytest.mark.slow
def test_papermill_from_another_folder_records_a_loadable_linear_model(kernel_env, client,
                                                                       tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run([str(BIN / "papermill"), str(REGRESS), "out.ipynb", "--cwd", str(NOTEBOOKS),
                "-p", "overrides", '["regressor=linear"]', "--no-progress-bar"],
               cwd=elsewhere, env=kernel_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (elsewhere / "out.ipynb").is_file()
    [recorded] = runs_of(client, "debug")
    run_id, params = recorded.info.run_id, recorded.data.params
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "regressor=linear,debug=default"
    assert recorded.data.tags["sweepbook.config_name"] == "regress"
    assert params["regressor"] == "linear"
    assert params["regressor._target_"] == "regressors.Linear"
    assert "regressor.hidden" not in params
    assert params["data._target_"] == "sweepbook.data.load_diabetes"
    epochs = client.get_metric_history(run_id, "val_rmse")
    assert [m.step for m in epochs] == list(range(int(params["training.epochs"])))
    assert "val_acc" not in recorded.data.metrics and "test_acc" not in recorded.data.metrics
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/learning_curves.png", "figures/predicted_vs_true.png"}

    model = load_regressor(run_id)
    assert type(model).__name__ == "Linear" and type(model).__module__ == "regressors"
    data = load_diabetes(int(params["seed"]), float(params["data.val_fraction"]),
                         float(params["data.test_fraction"]), int(params["data.limit"]))
    with torch.no_grad():
        predicted = model(data.test.x)
    assert predicted.shape == (len(data.test), 1)
    rmse = (predicted.squeeze(1) - data.test.y).pow(2).mean().sqrt().item()
    assert rmse == pytest.approx(recorded.data.metrics["test_rmse"], rel=1e-4)


@pytest.mark.slow
def test_default_run_reaches_a_good_rmse(store, tmp_path):
    """No smoke preset: the defaults of conf/regress.yaml, as `sweepbook run` runs them."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store,
           "SWEEPBOOK_OVERRIDES": f"paths.output_dir={tmp_path / 'outputs'}"}
    done = run([SWEEPBOOK, "run", str(REGRESS), "--quiet", "--output",
                str(tmp_path / "executed.ipynb")], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    [recorded] = runs_of(MlflowClient(store), "regress")
    assert f"run id: {recorded.info.run_id} (FINISHED)" in done.stdout
    assert recorded.data.params["regressor._target_"] == "regressors.MLPRegressor"
    assert 40 < recorded.data.metrics["test_rmse"] < 60  # predicting the mean scores ~75


@pytest.mark.slow
def test_sweep_over_regressors_ranks_lowest_rmse_first(kernel_env, client, tmp_path):
    done = run([SWEEPBOOK, "sweep", str(REGRESS), "regressor=linear,mlp",
                "optimizer.lr=1e-2,3e-2", "--workers", "2", "--metric", "test_rmse", "--quiet"],
               cwd=tmp_path, env=kernel_env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweep_id = re.search(r"^sweep (\w+): 4 finished;", done.stdout, re.M).group(1)
    children = [r for r in runs_of(client, "debug") if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    assert {(r.data.params["regressor"], r.data.params["optimizer.lr"]) for r in children} == {
        ("linear", "0.01"), ("linear", "0.03"), ("mlp", "0.01"), ("mlp", "0.03")}

    shown = run([SWEEPBOOK, "runs", "--sweep", sweep_id, "--metric", "test_rmse"],
                cwd=tmp_path, env=kernel_env)
    assert shown.returncode == 0, shown.stderr
    assert f"sweep {sweep_id}: 4 runs in {kernel_env['MLFLOW_TRACKING_URI']}, best first by " \
           "test_rmse (min)" in shown.stdout
    ascending = [r.info.run_id for r in sorted(children, key=lambda r: r.data.metrics["test_rmse"])]
    positions = [shown.stdout.index(run_id) for run_id in ascending]
    assert positions == sorted(positions), shown.stdout


@pytest.mark.parametrize("overrides, named", [
    (["model.channels=8,16"], "model.channels"),  # train.yaml's group: not in regress.yaml
    (["regressor=mlp", "regressor.hidden=0"], "regressor.hidden=0 is out of range"),
], ids=["unknown_group", "out_of_range"])
def test_sweep_validates_against_the_notebooks_own_config(overrides, named, tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'outputs'}"}
    done = run([SWEEPBOOK, "sweep", str(REGRESS), *overrides, "--quiet"], cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "\nsweepbook: error: " in done.stderr  # after the job count
    assert named in done.stderr and "conf/regress.yaml" in done.stderr
    assert not db.exists() and not (tmp_path / "store").exists()
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()
