"""Shared fixtures: real SQLite MLflow stores in temporary folders, never the user's mlflow.db."""
import shutil
from pathlib import Path

import matplotlib
import mlflow
import pytest
from mlflow.tracking import MlflowClient

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["debug=default"]  # tiny, fast runs in their own experiment


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An initialized, empty store: the ~70 schema migrations are paid once per session."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def store(tmp_path, store_template, monkeypatch) -> str:
    """A fresh store of this test's own, made the tracking URI through MLFLOW_TRACKING_URI."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(store_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # start_run() in an earlier test set MLflow's global URI
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return uri


@pytest.fixture
def client(store) -> MlflowClient:
    return MlflowClient(store)


@pytest.fixture
def output_override(tmp_path) -> str:
    """Keeps per-run local files out of the checkout's outputs/."""
    return f"paths.output_dir={tmp_path / 'outputs'}"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
