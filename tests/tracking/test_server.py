"""`sweepbook server`: a real PostgreSQL and a real `mlflow server` (one for the session, the
`tracking_server` fixture, which also checks that stopping it leaves no process behind), used
the way a team would: sweeps and searches with tracking=server, nothing else typed."""
import re
import shutil
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import optuna
import psutil
import pytest
from mlflow.tracking import MlflowClient

from sweepbook.cli import main
from sweepbook.config import compose
from sweepbook.tracking.location import StoreError
from sweepbook.tracking.record import MODEL_ARTIFACT, PARENT_TAG
from sweepbook.tracking.server import EXIT_NOT_RUNNING, study_database_for
from sweepbook.tracking.store import using_tracking_uri
from sweepbook.tracking.trial import STUDY_STORAGE_ENV, study_storage

from conftest import ROOT


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project of its own with no server: SWEEPBOOK_ROOT names it."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(STUDY_STORAGE_ENV, raising=False)
    return tmp_path


@pytest.fixture
def on_server(tracking_server, monkeypatch):
    """This process in the server's project, as its commands are."""
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(tracking_server.root))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(STUDY_STORAGE_ENV, raising=False)
    return tracking_server


def _children(client: MlflowClient, stdout: str):
    parent = re.search(r"parent run (\w+)", stdout).group(1)
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], f"tags.`{PARENT_TAG}` = '{parent}'")


# --- without a server ---

def test_without_a_server_status_exits_3_and_stop_has_nothing_to_end(project, capsys):
    assert main(["server", "status"]) == EXIT_NOT_RUNNING
    assert "no tracking server running for this project" in capsys.readouterr().out
    assert main(["server", "stop"]) == 0
    assert "no tracking server was running" in capsys.readouterr().out


def test_tracking_server_falls_back_to_mlflows_usual_address_without_a_server(project):
    assert compose(["tracking=server"], check_targets=False).tracking.uri == \
        "http://127.0.0.1:5000"
    assert study_database_for("http://127.0.0.1:5000") is None
    with pytest.raises(StoreError, match=STUDY_STORAGE_ENV):  # a search has no place there
        study_storage("http://127.0.0.1:5000")


def test_start_refuses_a_port_in_use_before_starting_anything(project, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["server", "start", "--port", str(port)]) == 1
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert not (project / ".sweepbook" / "server" / "postgres").exists()


# --- one server for the session ---

@pytest.mark.slow
@pytest.mark.xdist_group("server")  # one worker: one server for all
def test_start_prints_the_uri_status_shows_what_runs_and_tracking_server_finds_it(on_server):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", on_server.uri)
    assert "database cluster made in" in on_server.started.stdout  # its first start
    with urllib.request.urlopen(f"{on_server.uri}/health", timeout=5) as response:
        assert response.status == 200
    state = on_server.state()

    status = on_server.sweepbook("server", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"tracking server running at {on_server.uri}" in status.stdout
    for shown in (f"pid {state['mlflow_pid']}", f"pid {state['postgres_pid']}",
                  f"127.0.0.1:{state['postgres_port']}", str(on_server.root / ".sweepbook")):
        assert shown in status.stdout

    again = on_server.sweepbook("server", "start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"already running at {on_server.uri}" in again.stdout
    assert on_server.state() == state

    assert compose(["tracking=server"], check_targets=False).tracking.uri == on_server.uri


@pytest.mark.slow
@pytest.mark.xdist_group("server")  # one worker: one server for all
def test_a_sweep_keeps_its_runs_and_artifacts_on_the_server(on_server, tmp_path):
    done = on_server.sweepbook("sweep", "notebooks/train.ipynb", "debug=default", "model=cnn,mlp",
                               "tracking=server", "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    sweep_id = re.search(r"^sweep (\w+): 2 finished", done.stdout, re.M).group(1)

    client = MlflowClient(on_server.uri)
    runs = _children(client, done.stdout)
    assert sorted(r.data.params["model"] for r in runs) == ["cnn", "mlp"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied by the server
        notebook = next(a.path for a in client.list_artifacts(run.info.run_id)
                        if a.path.endswith(".ipynb"))
        local = Path(client.download_artifacts(run.info.run_id, notebook, str(tmp_path)))
        assert '"cells"' in local.read_text()
    with using_tracking_uri(on_server.uri):  # MLflow finds a run's model in the global store
        model = mlflow.artifacts.download_artifacts(
            f"runs:/{runs[0].info.run_id}/{MODEL_ARTIFACT}", dst_path=str(tmp_path / "model"))
    assert (Path(model) / "MLmodel").is_file()
    assert not (on_server.root / "mlartifacts").exists()  # no local store beside the project
    assert not (on_server.root / "mlflow.db").exists()

    listed = on_server.sweepbook("runs", "--sweep", sweep_id, "tracking=server")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert all(run.info.run_id in listed.stdout for run in runs)
    assert f"2 runs in {on_server.uri}" in listed.stdout

    compared = tmp_path / "compare.ipynb"  # the comparison notebook reads the server too
    done = subprocess.run([str(Path(sys.executable).parent / "papermill"),
                           "notebooks/compare.ipynb", str(compared), "-p", "sweep_id", sweep_id,
                           "-p", "overrides", '["tracking=server"]', "--no-progress-bar"],
                          cwd=on_server.root, env=on_server.env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"sweep {sweep_id}: 2 runs in {on_server.uri}" in compared.read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("server")  # one worker: one server for all
def test_a_search_keeps_its_study_in_the_servers_optuna_database(on_server):
    done = on_server.sweepbook("tune", "notebooks/train.ipynb", "model=choice(cnn,mlp)",
                               "debug=default", "tracking=server", "--trials", "3",
                               "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    study = re.search(r"^search (\S+): 3 finished", done.stdout, re.M).group(1)

    storage = study_database_for(on_server.uri)
    assert storage.startswith("postgresql+psycopg://") and "/optuna?passfile=" in storage
    assert study_database_for(on_server.uri.replace("127.0.0.1", "localhost")) == storage
    assert study_storage(on_server.uri) == storage
    assert f"study in {storage}" in done.stdout
    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert not (on_server.root / "optuna.db").exists()
    runs = _children(MlflowClient(on_server.uri), done.stdout)
    assert sorted(r.data.tags["sweepbook.trial"] for r in runs) == ["0", "1", "2"]


@pytest.mark.slow
@pytest.mark.xdist_group("server")  # one worker: one server for all
def test_the_password_is_kept_in_its_0600_file_and_nowhere_else(on_server):
    """Last in this file: it reads what the commands of the tests before it printed."""
    folder = on_server.root / ".sweepbook" / "server"
    assert stat.S_IMODE((folder / "password").stat().st_mode) == 0o600
    password = (folder / "password").read_text().strip().rsplit(":", 1)[-1]
    assert len(password) >= 32
    status = on_server.sweepbook("server", "status")
    assert status.returncode == 0

    for output in on_server.outputs:
        assert password not in output
    files = [p for p in on_server.root.rglob("*") if p.is_file() and p != folder / "password"]
    assert folder / "mlflow.log" in files and folder / "postgres.log" in files
    assert [p for p in files if password.encode() in p.read_bytes()] == []

    client = MlflowClient(on_server.uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments):  # the sweep's and the search's
        assert password not in repr(run.data.params) + repr(run.data.tags)

    seen = 0
    for process in psutil.process_iter(["cmdline", "environ"]):
        seen += 1
        assert password not in " ".join(process.info["cmdline"] or ())
        assert password not in repr(process.info["environ"] or {})
    assert seen > 10
