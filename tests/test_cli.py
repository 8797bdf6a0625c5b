import contextlib
import os
import re
import signal
import subprocess
import urllib.request

import psutil
import pytest
from mlflow.tracking import MlflowClient

from sweepbook.cli import main, parse_args, ui_command

from compare.test_ui import _free_port, _wait_until_up
from conftest import ROOT, SWEEPBOOK

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


LATEST_DEBUG = ["--sweep", "latest", "--experiment", "debug"]  # the swept store's experiment


@pytest.mark.parametrize("argv, says", [
    (["runs", "--sweep", "nope"], "no sweep 'nope' in sqlite:///"),
    (["runs", "--experiment", "nope"], "no experiment 'nope'"),
    (["runs", *LATEST_DEBUG, "--metric", "acc"], "no run logged the metric 'acc'"),
    (["best", *LATEST_DEBUG, "--direction", "up"], "direction 'up' is not one of: max"),
    (["best", *LATEST_DEBUG, "--register", "a:b"], "Invalid model name 'a:b'"),
    (["report", *LATEST_DEBUG, "--metric", "acc"], "no run logged the metric 'acc'"),
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


def test_ui_prints_its_store_without_the_password(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://ml:hunter2@127.0.0.1:9")
    served = []
    monkeypatch.setattr("sweepbook.cli._serve", lambda command: served.append(command) or 0)
    assert main(["ui"]) == 0
    assert capsys.readouterr().out.startswith("MLflow UI for http://ml:***@127.0.0.1:9 at ")
    assert "http://ml:hunter2@127.0.0.1:9" in served[0]  # the server itself gets the password


def test_main_puts_the_callers_environment_back(unborn_store, monkeypatch, capsys):
    """main() runs in-process too (tests, notebooks): its MLflow defaults must not stay."""
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    assert main(["run", TRAIN, "training.epochs=abc"]) == 2
    assert "MLFLOW_LOGGING_LEVEL" not in os.environ
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


@pytest.mark.slow
def test_sigterm_to_ui_stops_its_mlflow_server(store):
    """A service manager or `kill` stops `sweepbook ui` alone: its server must not go on
    serving without it."""
    port = _free_port()
    ui = subprocess.Popen([SWEEPBOOK, "ui", "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    servers = []
    try:
        _wait_until_up(url, ui)
        servers = psutil.Process(ui.pid).children(recursive=True)
        assert servers, "sweepbook ui serves through a child process"
        ui.send_signal(signal.SIGTERM)  # to the sweepbook process only
        assert ui.wait(timeout=30) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(servers, timeout=30)
        assert not alive, f"still running after SIGTERM to sweepbook ui: {alive}"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=2)
    finally:
        for process in [ui, *servers]:
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                os.killpg(process.pid, signal.SIGKILL)


def test_overrides_may_follow_options_as_in_the_readme():
    """`sweepbook sweep notebooks/train.ipynb --sweep-file lr_grid seed=0,1` (README)."""
    args = parse_args(["sweep", TRAIN, "a=1", "--sweep-file", "lr_grid", "seed=0,1", "--quiet"])
    assert (args.notebook, args.overrides, args.sweep_file) == (TRAIN, ["a=1", "seed=0,1"],
                                                                "lr_grid")
    with pytest.raises(SystemExit):
        parse_args(["sweep", TRAIN, "seed=0", "--nope"])


def test_latest_is_the_newest_sweep_of_the_configs_experiment_and_says_which(swept, capsys):
    assert main(["runs", "--sweep", "latest", "debug=default"]) == 0
    assert (f"--sweep latest: sweep {swept.sweep_id}, the newest of experiment debug"
            in capsys.readouterr().err)
    assert main(["runs", "--sweep", "latest", "--experiment", "sweepbook"]) == 2  # a debug one
    assert "no experiment 'sweepbook'" in capsys.readouterr().err


@pytest.mark.slow
def test_next_steps_printed_after_a_sweep_read_the_sweeps_own_store(tmp_path):
    """A sweep into another store (a server's stand-in: tracking.uri=...) prints commands that
    carry that store; run as printed, from elsewhere, they read the sweep's runs."""
    other = tmp_path / "elsewhere" / "other.db"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",
                                                             "MLFLOW_RUN_ID")}
    env["SWEEPBOOK_OVERRIDES"] = f"debug=default paths.output_dir={tmp_path / 'outputs'}"
    done = subprocess.run([SWEEPBOOK, "sweep", TRAIN, f"tracking.uri=sqlite:///{other}",
                           "seed=1", "--quiet"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sweep of 1 jobs: validating..." in done.stderr
    compare = re.search(r"^compare its runs: (.+?)  \(or", done.stdout, re.M).group(1)
    assert compare.startswith(f"MLFLOW_TRACKING_URI=sqlite:///{other} sweepbook runs --sweep")
    assert f"open it in the MLflow UI: MLFLOW_TRACKING_URI=sqlite:///{other} sweepbook ui" in \
        done.stdout
    shown = subprocess.run(compare.replace("sweepbook ", f"{SWEEPBOOK} ", 1), shell=True,
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    assert f"1 runs in sqlite:///{other}" in shown.stdout

