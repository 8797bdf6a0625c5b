import os
import warnings

import pytest

from sweepbook.config import (ConfigError, as_override_list, compose, composition, config_names,
                              project_root)

from conftest import ROOT


def test_default_config_composes_with_absolute_paths():
    cfg = compose()
    assert composition(cfg).choices == {"paths": "default", "data": "digits", "model": "cnn",
                                        "optimizer": "adam", "tracking": "local"}
    assert cfg.model._target_ == "sweepbook.models.CNN"
    assert composition(cfg).config_name == "train" and composition(cfg).overrides == ()
    assert cfg.paths.root_dir == str(ROOT)
    assert os.path.isabs(cfg.paths.output_dir)


def test_compose_from_any_cwd_many_times_without_warnings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = compose(["model=mlp"])
        second = compose(["optimizer=sgd", "optimizer.lr=0.1"])
    assert first.model._target_ == "sweepbook.models.MLP"
    assert second.optimizer._target_ == "torch.optim.SGD" and second.optimizer.lr == 0.1
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


def test_a_literal_parameter_lists_its_valid_values():
    with pytest.raises(ConfigError, match=r"data.name='cifar' is not one of 'fashion_mnist', "
                                          r"'mnist'"):
        compose(["data=mnist", "data.name=cifar"])


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
    assert composition(experiment).choices["model"] == "mlp"
    assert experiment.expname == "digits-mlp" and experiment.optimizer.momentum == 0.9
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
    with pytest.raises(ConfigError, match=r"cannot find a conf/ folder with a primary config "
                                          r"from .*; set SWEEPBOOK_ROOT"):
        project_root()


def test_project_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match="holds no conf/ folder with a primary config"):
        project_root()
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(ROOT))
    assert project_root() == ROOT


def test_the_config_is_open_for_the_users_keys(tmp_path, monkeypatch):
    project = _project(tmp_path, "note: mine  # a user's key\n")
    (project / "conf" / "model" / "cnn_dropout.yaml").write_text(
        "_target_: sweepbook.models.CNN\nchannels: 8\ndropout: 0.2\n")
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(project))
    cfg = compose(["model=cnn_dropout"], check_targets=False)
    assert cfg.note == "mine" and cfg.model.dropout == 0.2


def _project(tmp_path, extra_yaml: str = ""):
    """A copy of this project's conf/ with `extra_yaml` appended to train.yaml."""
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    train = tmp_path / "conf" / "train.yaml"
    train.write_text(train.read_text() + extra_yaml)
    return tmp_path


@pytest.mark.parametrize("file, line, key", [("train.yaml", "seed: 0", "seed"),
                                             ("optimizer/adam.yaml", "lr: 0.005", "optimizer.lr")])
def test_mandatory_values_fail_with_the_keys_name(tmp_path, monkeypatch, file, line, key):
    project = _project(tmp_path)
    path = project / "conf" / file
    path.write_text(path.read_text().replace(line, line.split(":")[0] + ": ???"))
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(project))
    with pytest.raises(ConfigError, match=rf"^{key}: mandatory value missing \(\?\?\?\)"):
        compose()
    assert compose([f"{key}=1"])  # given a value, it composes


def test_primary_config_by_name_and_unknown_names_listed():
    assert "train" in config_names()
    assert composition(compose(config_name="train")).config_name == "train"
    with pytest.raises(ConfigError, match=r"no primary config 'nope' in .*conf; valid: .*train"):
        compose(config_name="nope")


def test_interpolated_choices_are_plain_strings():
    cfg = compose(["runname=${hydra:runtime.choices.model}-lr${optimizer.lr}",
                   "+note=${hydra:runtime.choices.data}"])
    assert cfg.runname == "cnn-lr0.005" and cfg.note == "digits"


def test_resolvers_in_conf_resolvers_py_work_in_every_compose(tmp_path, monkeypatch):
    project = _project(tmp_path)
    (project / "conf" / "resolvers.py").write_text(
        "from omegaconf import OmegaConf\n"
        "OmegaConf.register_new_resolver('twice', lambda x: 2 * x, replace=True)\n")
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(project))
    assert compose(["+width=${twice:21}"]).width == 42


def test_a_broken_resolvers_file_names_itself(tmp_path, monkeypatch):
    project = _project(tmp_path)
    (project / "conf" / "resolvers.py").write_text("raise RuntimeError('typo')\n")
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(project))
    with pytest.raises(ConfigError, match=r"resolvers.py failed: RuntimeError: typo"):
        compose()


def test_compose_leaves_hydras_global_state_as_it_was():
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    compose(["runname=${hydra:runtime.choices.model}"])
    assert HydraConfig.instance().cfg is None and not GlobalHydra.instance().is_initialized()


def test_deleting_a_section_sweepbook_reads_is_refused_with_its_key():
    with pytest.raises(ConfigError, match=r"~tracking: tracking is read by sweepbook .* cannot "
                                          r"be deleted; set its values instead"):
        compose(["~tracking"])
    with pytest.raises(ConfigError, match=r"~training.epochs: training.epochs is read"):
        compose(["~training.epochs"])


def test_a_callers_own_hydra_initialize_survives_compose(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    (tmp_path / "mine.yaml").write_text("x: 1\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        compose(["model=mlp"])
        assert hydra_compose(config_name="mine").x == 1
