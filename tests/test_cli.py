import pytest

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
    assert "notebook 'nope.ipynb' not found" in capsys.readouterr().err


def test_ui_binds_loopback_on_the_configured_store():
    command = ui_command("sqlite:////x/mlflow.db", "127.0.0.1", 5000)
    assert command[-6:] == ["--backend-store-uri", "sqlite:////x/mlflow.db",
                            "--host", "127.0.0.1", "--port", "5000"]
