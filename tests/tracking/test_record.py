from pathlib import Path

from sweepbook.config import compose
from sweepbook.config import composition
from sweepbook.tracking.location import artifact_root, sqlite_file
from sweepbook.tracking.record import config_hash, run_name, safe_name


def name(overrides):
    cfg = compose(overrides)
    return run_name(cfg, overrides, composition(cfg).choices)


def test_run_name_comes_from_runname_or_overrides_or_the_choices():
    assert name(["runname=mine"]) == "mine"
    assert name([]) == "digits-cnn-adam"
    assert name(["model=mlp", "optimizer.lr=0.01", "tracking.uri=sqlite:///x.db"]) == \
        "model=mlp,lr=0.01"
    assert name(["+db.password=x"]) == "password=***"


def test_config_hash_follows_what_is_computed_not_where_it_lands():
    base = config_hash(compose())
    assert config_hash(compose(["paths.output_dir=/elsewhere", "runname=x"])) == base
    assert config_hash(compose(["tracking=server"])) == base
    assert config_hash(compose(["optimizer.lr=0.1"])) != base
    assert config_hash(compose(["model=mlp"])) != base
    one, two = (compose([f"+db.password={pw}"]) for pw in ("a", "b"))  # redacted alike
    assert config_hash(one) != config_hash(two)


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
