from pathlib import Path

from sweepbook.config import compose
from sweepbook.naming import artifact_root, run_name, safe_name, sqlite_file


def test_run_name_comes_from_runname_or_overrides():
    assert run_name(compose(["runname=mine"]), ["runname=mine"]) == "mine"
    assert run_name(compose(), []) == "cnn-digits"
    overrides = ["model=mlp", "optimizer.lr=0.01", "tracking.uri=sqlite:///x.db"]
    assert run_name(compose(overrides[:2]), overrides) == "model=mlp,lr=0.01"
    assert run_name(compose(["+db.password=x"]), ["+db.password=x"]) == "password=***"


def test_artifacts_go_beside_a_sqlite_store_unless_configured(tmp_path):
    cfg = compose()
    assert artifact_root("sqlite:////data/store/mlflow.db", cfg) == "/data/store/mlartifacts"
    assert artifact_root("http://127.0.0.1:5000", cfg) is None
    chosen = compose([f"tracking.artifact_root={tmp_path}"])
    assert artifact_root("http://127.0.0.1:5000", chosen) == str(tmp_path)


def test_safe_names_keep_letters_digits_and_dashes():
    assert safe_name("my exp/1.0") == "my_exp_1.0"
    assert safe_name("") == "experiment"


def test_sqlite_file_only_for_sqlite_uris():
    assert sqlite_file("sqlite:////data/store/mlflow.db") == Path("/data/store/mlflow.db")
    assert sqlite_file("http://127.0.0.1:5000") is None
