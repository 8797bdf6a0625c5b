import re

import pytest
from mlflow.tracking import MlflowClient

from sweepbook.cli import main, ui_command

from conftest import ROOT

TRAIN = str(ROOT / "notebooks" / "train.ipynb")


@pytest.fixture
def unborn_store(tmp_path, monkeypatch):
    db = tmp_path / "never" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    return db


@pytest.mark.parametrize("override, says", [
    ("training.epochs=abc", "training.epochs"),
    ("model=nope", "resnet18"),
    ("optimizer.lr=1e-3;", "^"),
])
def test_bad_overrides_exit_2_before_anything_is_recorded(unborn_store, capsys, override, says):
    assert main(["run", TRAIN, override]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sweepbook: error: invalid overrides") and says in error
    assert not unborn_store.parent.exists()


def test_missing_notebook_exits_2(unborn_store, capsys):
    assert main(["run", "nope.ipynb"]) == 2
    assert re.search(r"notebook '.*/nope.ipynb' not found", capsys.readouterr().err)


def test_ui_binds_loopback_on_the_configured_store():
    command = ui_command("sqlite:////x/mlflow.db", "127.0.0.1", 5000)
    assert command[-6:] == ["--backend-store-uri", "sqlite:////x/mlflow.db",
                            "--host", "127.0.0.1", "--port", "5000"]


def test_runs_prints_the_sweep_best_first(swept, capsys):
    assert main(["runs", "--sweep", swept.sweep_id]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run_id", "run", "status", "test_acc", "test_loss", "model",
                              "model.channels", "model.hidden",
                              "optimizer.lr", "seconds"]
    rows = [line.split() for line in out[2:6]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    scores = [float(row[4]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert {row[2] for row in rows} == {f"model={m},lr={lr},debug=default"
                                        for m in ("cnn", "mlp") for lr in ("0.001", "0.01")}
    assert out[6].startswith(f"sweep {swept.sweep_id}: 4 runs in {swept.uri}, best first by "
                             "test_acc (max)")


def test_runs_of_an_experiment_by_a_loss(swept, capsys):
    assert main(["runs", "--experiment", swept.experiment, "--metric", "val_loss"]) == 0
    out = capsys.readouterr().out.splitlines()
    scores = [float(line.split()[4]) for line in out[2:6]]
    assert scores == sorted(scores)
    assert out[6].endswith("best first by val_loss (min)")


def test_best_registers_the_model_and_sets_the_alias(swept, capsys):
    assert main(["best", "--sweep", swept.sweep_id, "--register", "digits"]) == 0
    out = capsys.readouterr().out
    best = re.search(r"\(run (\w+)\), test_acc = ([\d.]+)", out)
    version = MlflowClient(swept.uri).get_model_version_by_alias("digits", "champion")
    assert version.run_id == best.group(1)
    assert "registered digits version 1, alias 'champion' points at it" in out
    assert "nan" not in out  # a key only the other model option has is not listed
    assert (f"load it with: mlflow.set_tracking_uri('{swept.uri}'); "
            "mlflow.pytorch.load_model('models:/digits@champion')") in out
    assert MlflowClient(swept.uri).get_run(best.group(1)).data.metrics["test_acc"] == \
        pytest.approx(float(best.group(2)), abs=1e-4)


def test_report_writes_the_html_file_it_names(swept, tmp_path, capsys):
    output = tmp_path / "r.html"
    assert main(["report", "--sweep", swept.sweep_id, "--output", str(output)]) == 0
    assert f"written to {output}" in capsys.readouterr().out
    assert output.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("argv, says", [
    (["runs", "--sweep", "nope"], "no sweep 'nope' in sqlite:///"),
    (["runs", "--experiment", "nope"], "no experiment 'nope'"),
    (["runs", "--sweep", "latest", "--metric", "acc"], "no run logged the metric 'acc'"),
    (["best", "--sweep", "latest", "--direction", "up"], "direction 'up' is not one of: max"),
    (["best", "--sweep", "latest", "--register", "a:b"], "Invalid model name 'a:b'"),
    (["report", "--sweep", "latest", "--metric", "acc"], "no run logged the metric 'acc'"),
])
def test_comparison_errors_exit_2_with_the_reason(swept, capsys, argv, says):
    assert main(argv) == 2
    assert says in capsys.readouterr().err
    assert MlflowClient(swept.uri).search_registered_models() == []


def test_comparisons_read_the_store_and_experiment_of_the_named_config(store, capsys):
    assert main(["runs", "--config-name", "regress"]) == 2
    assert "no experiment 'regress'" in capsys.readouterr().err
    assert main(["runs", "--config-name", "nope"]) == 2
    assert "no primary config 'nope'" in capsys.readouterr().err
