"""Shared fixtures: real SQLite MLflow stores in temporary folders, never the user's mlflow.db."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from sweepbook.tracking.location import sqlite_file

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["debug=default"]  # tiny, fast runs in their own experiment
SWEEPBOOK = str(Path(sys.executable).parent / "sweepbook")
SWEPT = ["model=cnn,mlp", "optimizer.lr=1e-3,1e-2"]  # the sweep comparison tests read


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An initialized, empty store: the ~70 schema migrations are paid once per session."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def _use_copy(db: Path, folder: Path, monkeypatch) -> str:
    """Copy store `db` into `folder` and make it the tracking URI, for MLflow and children."""
    folder.mkdir()
    shutil.copy(db, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # start_run() in an earlier test set MLflow's global URI
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri


@pytest.fixture
def store(tmp_path, store_template, monkeypatch) -> str:
    """A fresh store of this test's own, made the tracking URI through MLFLOW_TRACKING_URI."""
    return _use_copy(store_template, tmp_path / "store", monkeypatch)


@dataclass
class Swept:
    uri: str  # the store holding the sweep
    sweep_id: str
    experiment: str  # the smoke preset's experiment


def smoke_store(folder: Path, store_template: Path):
    """A copy of the fresh store in `folder`, and the environment of a user's shell whose
    commands record smoke runs there: (its URI, that environment)."""
    shutil.copy(store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={folder / 'outputs'}"}
    env.pop("MLFLOW_RUN_ID", None)
    return uri, env


@pytest.fixture(scope="session")
def swept_template(tmp_path_factory, store_template) -> Swept:
    """A store holding one real 4-job smoke sweep of train.ipynb, made once per session with
    the command a user types."""
    uri, env = smoke_store(tmp_path_factory.mktemp("swept"), store_template)
    done = subprocess.run([SWEEPBOOK, "sweep", str(ROOT / "notebooks" / "train.ipynb"), *SWEPT,
                           "--workers", "2", "--quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return Swept(uri, re.search(r"^sweep (\w+): 4 finished", done.stdout, re.M).group(1),
                 "debug")


@pytest.fixture
def swept(tmp_path, swept_template, monkeypatch) -> Swept:
    """A copy of the swept store for this test alone (artifacts stay shared, read-only)."""
    uri = _use_copy(sqlite_file(swept_template.uri), tmp_path / "swept", monkeypatch)
    return Swept(uri, swept_template.sweep_id, swept_template.experiment)


def run(command, cwd, env) -> subprocess.CompletedProcess:
    """A command as a user runs it, its output captured."""
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def kernel_env(store, tmp_path):
    """The tests' store for a kernel, and the smoke preset through $SWEEPBOOK_OVERRIDES."""
    return {**os.environ, "MLFLOW_TRACKING_URI": store,
            "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'outputs'}"}


@pytest.fixture
def client(store) -> MlflowClient:
    return MlflowClient(store)


@pytest.fixture
def output_override(tmp_path) -> str:
    """Keeps per-run local files out of the checkout's outputs/."""
    return f"paths.output_dir={tmp_path / 'outputs'}"


def pytest_collection_modifyitems(items):
    """A test on the `swept` store waits for a real sweep (once per session): slow."""
    for item in items:
        if "swept" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@dataclass
class TrackingServer:
    """`sweepbook server` of a project of its own (conf/ and notebooks/ copied), and what every
    command run on it printed."""
    root: Path
    env: dict  # SWEEPBOOK_ROOT names the project; no MLFLOW_TRACKING_URI
    outputs: list  # the stdout and stderr of each command
    uri: str = ""
    started: subprocess.CompletedProcess = None  # `sweepbook server start`

    def sweepbook(self, *args) -> subprocess.CompletedProcess:
        done = run([SWEEPBOOK, *args], self.root, self.env)
        self.outputs += [done.stdout, done.stderr]
        return done

    def state(self) -> dict:
        return json.loads((self.root / ".sweepbook" / "server" / "state.json").read_text())


def _server_processes(root: Path, state: dict) -> list:
    """Every live process of the server: the PIDs it recorded, their descendants, MLflow's
    process group, and any process whose command line names the project."""
    import psutil

    found = {}
    for pid in (state["mlflow_pid"], state["postgres_pid"]):
        try:
            process = psutil.Process(pid)
            found.update({p.pid: p for p in [process, *process.children(recursive=True)]})
        except psutil.NoSuchProcess:
            pass
    for process in psutil.process_iter(["cmdline"]):
        try:
            if (os.getpgid(process.pid) == state["mlflow_pid"]
                    or str(root) in " ".join(process.info["cmdline"] or ())):
                found[process.pid] = process
        except (OSError, psutil.Error):
            pass
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(scope="session")
def tracking_server() -> TrackingServer:
    """One real tracking server (PostgreSQL + mlflow server) for the session, started and
    stopped with the commands a user types; stopping it must leave no process behind."""
    root = Path(tempfile.mkdtemp(prefix="sweepbook-server-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as `postgres`: it must reach its data folder
    for folder in ("conf", "notebooks"):
        shutil.copytree(ROOT / folder, root / folder)
    env = {**os.environ, "SWEEPBOOK_ROOT": str(root)}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "SWEEPBOOK_STUDY_STORAGE"):
        env.pop(name, None)
    server = TrackingServer(root, env, [])
    server.started = server.sweepbook("server", "start", "--port", "0")
    assert server.started.returncode == 0, server.started.stdout + server.started.stderr
    server.uri = re.search(r"^tracking server running at (\S+)$", server.started.stdout,
                           re.M).group(1)
    try:
        yield server
    finally:
        state = server.state()
        running = _server_processes(root, state)
        stopped = server.sweepbook("server", "stop")
        left = _server_processes(root, state)
        shutil.rmtree(root, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stopped the tracking server at {server.uri}" in stopped.stdout
        assert len(running) >= 5 and left == []


STARTED_DRIVERS = []  # sweep or search drivers a test started: killed at its end if it failed


@pytest.fixture(autouse=True)
def _stop_leftover_drivers():
    yield
    while STARTED_DRIVERS:
        driver = STARTED_DRIVERS.pop()
        if driver.poll() is None:
            driver.kill()  # its jobs die with it
            driver.wait()


def start_driver(command: str, notebook: str, *args, env: dict, options=("--quiet",),
                 **extra_env) -> subprocess.Popen:
    """`sweepbook sweep|tune NOTEBOOK ARGS --workers 2 OPTIONS` in the background, its output
    piped; killed at the end of the test if it still runs."""
    driver = subprocess.Popen([SWEEPBOOK, command, notebook, *args, "--workers", "2", *options],
                              env={**env, **extra_env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    STARTED_DRIVERS.append(driver)
    return driver
