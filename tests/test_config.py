import os
import warnings

import pytest

from sweepbook.config import ConfigError, as_override_list, compose, project_root

from conftest import ROOT


def test_default_config_composes_with_absolute_paths():
    cfg = compose()
    assert cfg.data.name.value == "digits"
    assert cfg.model.name.value == "cnn"
    assert cfg.optimizer.name.value == "adam"
    assert cfg.paths.root_dir == str(ROOT)
    assert os.path.isabs(cfg.paths.output_dir)


def test_compose_from_any_cwd_many_times_without_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = compose(["model=mlp"])
        second = compose(["optimizer=sgd", "optimizer.lr=0.1"])
    assert first.model.name.value == "mlp"
    assert second.optimizer.name.value == "sgd" and second.optimizer.lr == 0.1
    assert [str(w.message) for w in caught] == []
    assert capsys.readouterr() == ("", "")


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError) as error:
        compose(["training.epochs=abc"])
    message = str(error.value)
    assert "training.epochs" in message and "abc" in message and "Integer" in message


def test_unknown_group_option_lists_valid_models():
    with pytest.raises(ConfigError) as error:
        compose(["model=nope"])
    message = str(error.value)
    assert "model/nope" in message
    for valid in ("cnn", "mlp", "resnet18"):
        assert valid in message


def test_invalid_enum_value_lists_valid_values():
    with pytest.raises(ConfigError, match=r"expected one of \[adam, sgd\]"):
        compose(["optimizer.name=rmsprop"])


def test_unknown_key_is_refused_but_plus_adds_user_keys():
    with pytest.raises(ConfigError, match="trainig"):
        compose(["trainig.epochs=3"])
    cfg = compose(["+note=first try", "+extra.depth=3"])
    assert cfg.note == "first try" and cfg.extra.depth == 3


def test_parse_error_names_override_and_points_at_it():
    with pytest.raises(ConfigError) as error:
        compose(["model=[a"])
    assert "model=[a" in str(error.value)
    with pytest.raises(ConfigError, match=r"optimizer.lr=1e-3;\s+\^"):
        compose(["optimizer.lr=1e-3;"])
    with pytest.raises(ConfigError, match=r"(?s)invalid overrides \['model=3'\].*string"):
        compose(["model=3"])


def test_presets_apply_their_groups():
    experiment = compose(["experiment=digits_mlp"])
    assert experiment.model.name.value == "mlp" and experiment.expname == "digits-mlp"
    debug = compose(["debug=default"])
    assert debug.expname == "debug" and debug.training.epochs <= 3 and debug.data.limit


def test_command_line_overrides_beat_presets():
    cfg = compose(["debug=default", "training.epochs=3", "expname=mine"])
    assert cfg.training.epochs == 3 and cfg.expname == "mine"


def test_mlflow_tracking_uri_environment_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert compose(["tracking=server"]).tracking.uri == "sqlite:////tmp/elsewhere.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert compose().tracking.uri == f"sqlite:///{ROOT}/mlflow.db"


@pytest.mark.parametrize("value, expected", [
    (None, []),
    ([], []),
    (["model=mlp"], ["model=mlp"]),
    ('["model=mlp", "optimizer.lr=1e-2"]', ["model=mlp", "optimizer.lr=1e-2"]),
    ("model=mlp 'runname=my run'", ["model=mlp", "runname=my run"]),
])
def test_overrides_arrive_as_list_or_papermill_string(value, expected):
    assert as_override_list(value) == expected


def test_non_string_overrides_are_refused():
    with pytest.raises(ConfigError, match="must be strings"):
        as_override_list([1, 2])


def test_project_root_not_found_says_what_to_set(tmp_path, monkeypatch):
    import sweepbook.config

    monkeypatch.setattr(sweepbook.config, "__file__", str(tmp_path / "lib" / "sb" / "config.py"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot find conf/train.yaml .*; set SWEEPBOOK_ROOT"):
        project_root()


def test_project_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="holds no conf/train.yaml"):
        project_root()
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(ROOT))
    assert project_root() == ROOT
