"""Shared fixtures: real SQLite MLflow stores in temporary folders, never the user's mlflow.db."""
import os
import re
import shutil
import subprocess
import sys
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


@pytest.fixture(scope="session")
def swept_template(tmp_path_factory, store_template) -> Swept:
    """A store holding one real 4-job smoke sweep of train.ipynb, made once per session with
    the command a user types."""
    folder = tmp_path_factory.mktemp("swept")
    shutil.copy(store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={folder / 'outputs'}"}
    env.pop("MLFLOW_RUN_ID", None)
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
