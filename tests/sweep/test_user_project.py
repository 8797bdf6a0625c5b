"""Bring your own model and resolver, as a new user does: a project folder of their own
(conf/ and notebooks/ copied from this checkout, one model class, one YAML file, one resolver),
pointed at with $SWEEPBOOK_ROOT and driven with the real `sweepbook` command.
Nothing under lib/sweepbook is touched. Bad input exits 2 before any store is created."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
from mlflow.tracking import MlflowClient
from torch import nn

from sweepbook.cli import main
from sweepbook.config import compose
from sweepbook.params import config_params
from sweepbook.tracking.record import run_name

from conftest import ROOT, SWEEPBOOK

TRAIN = str(ROOT / "notebooks" / "train.ipynb")
LIB = ROOT / "lib" / "sweepbook"

USER_MODEL = '''\
"""The user's own model: no sweepbook import, no registration anywhere."""
import math

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, input_shape, num_classes, hidden=16, dropout=0.0):
        super().__init__()
        self.dropout_p = dropout
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)
'''
TINY_YAML = "_target_: user_models.TinyNet\nhidden: 8\ndropout: 0.2\n"
RESOLVERS = ('from omegaconf import OmegaConf\n\n'
             'OmegaConf.register_new_resolver("isdist", lambda x: len(x) > 1, replace=True)\n')


@pytest.fixture
def project(tmp_path) -> Path:
    """A user's project folder outside the checkout: the checkout's conf/ and train notebook,
    plus the user's model, its one YAML file and a custom resolver."""
    folder = tmp_path / "project"
    shutil.copytree(ROOT / "conf", folder / "conf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "train.ipynb", folder / "notebooks" / "train.ipynb")
    (folder / "notebooks" / "user_models.py").write_text(USER_MODEL)
    (folder / "conf" / "model" / "tiny.yaml").write_text(TINY_YAML)
    (folder / "conf" / "resolvers.py").write_text(RESOLVERS)
    return folder


def user_env(tmp_path, tracking_uri: str, project: Path = None) -> dict:
    """The environment a user's shell has: their project (if any), a store, smoke overrides."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri,
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'outputs'}"}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("SWEEPBOOK_ROOT", None)
    if project is not None:
        env["SWEEPBOOK_ROOT"] = str(project)
    return env


def sweepbook(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPBOOK, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=env.get("SWEEPBOOK_ROOT", str(ROOT)))


@pytest.fixture
def unborn(tmp_path) -> Path:
    """A store that does not exist yet: refused input must not create it."""
    return tmp_path / "never" / "mlflow.db"


def assert_refused(done: subprocess.CompletedProcess, db: Path, *names: str) -> str:
    """Exit 2, `sweepbook: error:` naming every one of `names`, and no store created."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert re.search(r"^sweepbook: error:", done.stderr, re.M), output
    for name in names:
        assert re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", done.stderr), (name, output)
    assert not db.exists() and not db.parent.exists(), output
    return done.stderr


def lib_mentions(word: str):
    return [p for p in LIB.rglob("*.py") if word in p.read_text()]


# --- the user's own model and resolver, end to end ---

@pytest.mark.slow
def test_run_builds_the_users_model_with_every_key_of_its_yaml(project, store, tmp_path):
    done = sweepbook("run", str(project / "notebooks" / "train.ipynb"), "model=tiny", "--quiet",
                     env=user_env(tmp_path, store, project))
    assert done.returncode == 0, done.stdout + done.stderr
    finished = re.search(r"^run id: (\w+) \(FINISHED\)", done.stdout, re.M)
    assert finished, done.stdout
    run_id = finished.group(1)
    run = MlflowClient(store).get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model"] == "tiny"
    assert params["model._target_"] == "user_models.TinyNet"
    assert params["model.hidden"] == "8" and params["model.dropout"] == "0.2"
    assert "model.channels" not in params  # the checkout's default model left no trace
    assert run.data.tags["sweepbook.config_name"] == "train"

    folder = str(project / "notebooks")
    sys.path.insert(0, folder)  # as the notebook's kernel had it: the class unpickles
    try:
        model = mlflow.pytorch.load_model(f"runs:/{run_id}/model", map_location="cpu")
    finally:
        sys.path.remove(folder)
        sys.modules.pop("user_models", None)
    assert type(model).__name__ == "TinyNet" and type(model).__module__ == "user_models"
    assert model.dropout_p == 0.2  # the extra key reached the class
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2]
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [8, 10]
    # nothing in the package knows the user's model: the project alone brought it
    assert lib_mentions("TinyNet") == [] and lib_mentions("user_models") == []
    assert not (ROOT / "conf" / "model" / "tiny.yaml").exists()


@pytest.mark.slow
def test_sweep_of_the_users_model_with_a_custom_resolver(project, store, tmp_path):
    done = sweepbook("sweep", str(project / "notebooks" / "train.ipynb"), "model=tiny",
                     "model.hidden=4,8", "+distributed=${isdist:[0,1]}", "--workers", "2",
                     "--quiet", env=user_env(tmp_path, store, project))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.search(r"^sweep (\w+): 2 finished; parent run (\w+)$", done.stdout, re.M)
    assert summary, done.stdout
    client = MlflowClient(store)
    parent = client.get_run(summary.group(2))
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2
    assert all(child.info.status == "FINISHED" for child in children)
    assert sorted(child.data.params["model.hidden"] for child in children) == ["4", "8"]
    for child in children:
        params = child.data.params
        assert params["distributed"] == "True"  # the project's resolver ran in every job
        assert params["model"] == "tiny" and params["model._target_"] == "user_models.TinyNet"
        assert params["model.dropout"] == "0.2"


# --- a misspelt key, a missing value: refused before any run exists ---

COMMANDS = {
    "run": lambda notebook, overrides: ["run", notebook, *overrides, "--quiet"],
    "sweep": lambda notebook, overrides: ["sweep", notebook, *overrides, "training.epochs=1,2",
                                          "--workers", "2", "--quiet"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_misspelt_key_of_the_users_model_is_refused(project, unborn, tmp_path, command):
    argv = COMMANDS[command](str(project / "notebooks" / "train.ipynb"),
                             ["model=tiny", "+model.dropuot=0.1"])
    done = sweepbook(*argv, env=user_env(tmp_path, f"sqlite:///{unborn}", project))
    error = assert_refused(done, unborn, "model.dropuot")
    valid = re.search(r"valid: (.*)", error)
    assert valid, error
    listed = [name.strip() for name in valid.group(1).split(",")]
    assert "hidden" in listed and "dropout" in listed, error


def _mandatory_seed(project: Path) -> None:
    primary = project / "conf" / "train.yaml"
    text, count = re.subn(r"^seed: .*$", "seed: ???", primary.read_text(), flags=re.M)
    assert count == 1
    primary.write_text(text)


def _mandatory_hidden(project: Path) -> None:
    tiny = project / "conf" / "model" / "tiny.yaml"
    tiny.write_text(TINY_YAML.replace("hidden: 8", "hidden: ???"))


MANDATORY = {  # what the user leaves `???`, the overrides, the key the error must name
    "seed": (_mandatory_seed, ["model=mlp"], "seed"),
    "model.hidden": (_mandatory_hidden, ["model=tiny"], "model.hidden"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("missing", sorted(MANDATORY))
def test_a_mandatory_value_left_missing_is_refused(project, unborn, tmp_path, command, missing):
    leave_missing, overrides, key = MANDATORY[missing]
    leave_missing(project)
    argv = COMMANDS[command](str(project / "notebooks" / "train.ipynb"), overrides)
    done = sweepbook(*argv, env=user_env(tmp_path, f"sqlite:///{unborn}", project))
    error = assert_refused(done, unborn, key)
    assert re.search(rf"(?<![\w.]){re.escape(key)}\b.*(\?\?\?|missing)", error), error


@pytest.mark.slow
def test_a_sweep_that_gives_every_job_the_mandatory_value_runs(project, store, tmp_path):
    """`seed: ???` in the primary config, and the sweep sets seed in every job: each job is
    valid, so the sweep runs (nothing may compose the config without the sweep's values)."""
    _mandatory_seed(project)
    done = sweepbook("sweep", str(project / "notebooks" / "train.ipynb"), "model=mlp",
                     "seed=1,2", "--workers", "2", "--quiet",
                     env=user_env(tmp_path, store, project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^sweep \w+: 2 finished; parent run \w+$", done.stdout, re.M), done.stdout


@pytest.mark.slow
def test_a_sweep_of_a_notebook_whose_primary_config_is_not_train(project, store, tmp_path):
    """The notebook names its primary config (conf/mine.yaml); no conf/train.yaml exists."""
    (project / "conf" / "train.yaml").rename(project / "conf" / "mine.yaml")
    notebook = project / "notebooks" / "mine.ipynb"
    cells = json.loads((project / "notebooks" / "train.ipynb").read_text())
    parameters = [c for c in cells["cells"] if "parameters" in c["metadata"].get("tags", [])]
    source = "".join(parameters[0]["source"])
    assert source.count('config_name = "train"') == 1
    parameters[0]["source"] = source.replace('config_name = "train"', 'config_name = "mine"')
    notebook.write_text(json.dumps(cells))
    done = sweepbook("sweep", str(notebook), "model=tiny", "seed=1,2", "--workers", "2",
                     "--quiet", env=user_env(tmp_path, store, project))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^sweep \w+: 2 finished; parent run \w+$", done.stdout, re.M), done.stdout


# --- values out of range: refused with the key's name, in the checkout's own project ---

BAD_VALUES = [
    (["data.test_fraction=0"], "data.test_fraction"),
    (["training.epochs=-3"], "training.epochs"),
    (["optimizer.lr=-1"], "optimizer.lr"),
    (["training.batch_size=0"], "training.batch_size"),
    (["data.val_fraction=1.5"], "data.val_fraction"),
    (["model=mlp", "model.hidden=-5"], "model.hidden"),
    (["data.limit=0"], "data.limit"),
    (["training.device=bogus"], "training.device"),
]
BAD_IDS = [" ".join(overrides) for overrides, _ in BAD_VALUES]


@pytest.mark.slow  # each a fresh `sweepbook` process: 3 to 8 s on 2 cores
@pytest.mark.parametrize("overrides, key", BAD_VALUES, ids=BAD_IDS)
def test_a_bad_value_exits_2_naming_the_key(unborn, tmp_path, overrides, key):
    done = sweepbook("run", TRAIN, *overrides, env=user_env(tmp_path, f"sqlite:///{unborn}"))
    assert_refused(done, unborn, key)


@pytest.mark.slow
def test_a_bad_value_among_swept_values_refuses_the_whole_sweep(unborn, tmp_path):
    done = sweepbook("sweep", TRAIN, "model=mlp", "training.epochs=2,-3", "--quiet",
                     env=user_env(tmp_path, f"sqlite:///{unborn}"))
    error = assert_refused(done, unborn, "training.epochs")
    assert "1 of 2 jobs are invalid" in error, error


@pytest.mark.parametrize("overrides, key", BAD_VALUES, ids=BAD_IDS)
def test_a_bad_value_is_refused_by_the_cli_in_process(unborn, tmp_path, monkeypatch, capsys,
                                                      overrides, key):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{unborn}")
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES", f"debug=default paths.output_dir={tmp_path}")
    monkeypatch.delenv("SWEEPBOOK_ROOT", raising=False)
    assert main(["run", TRAIN, *overrides]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sweepbook: error:"), error
    assert re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", error), error
    assert not unborn.exists() and not unborn.parent.exists()


# --- what a config records: plain choices, only the chosen options' keys ---

def test_interpolated_choices_are_plain_strings(monkeypatch):
    monkeypatch.delenv("SWEEPBOOK_ROOT", raising=False)
    overrides = ["runname=${hydra:runtime.choices.model}-lr${optimizer.lr}"]
    cfg = compose(overrides)
    assert cfg.runname == "cnn-lr0.005" and type(cfg.runname) is str
    assert run_name(cfg, overrides, {}) == "cnn-lr0.005"  # the MLflow run's name
    other = compose(["model=mlp", "optimizer=sgd", "optimizer.lr=0.01",
                     "runname=${hydra:runtime.choices.model}-${hydra:runtime.choices.optimizer}"
                     "-lr${optimizer.lr}"])
    assert other.runname == "mlp-sgd-lr0.01"
    params = config_params(other)
    assert params["runname"] == "mlp-sgd-lr0.01"
    assert params["model"] == "mlp" and params["optimizer"] == "sgd"
    assert not [v for v in params.values() if "Name." in v or "<" in v], params


@pytest.mark.parametrize("overrides, logged, absent", [
    (["model=cnn"], ["model", "model._target_", "model.channels"], ["model.hidden"]),
    (["model=mlp"], ["model", "model._target_", "model.hidden"], ["model.channels"]),
    (["optimizer=adam"], ["optimizer.lr", "optimizer.weight_decay"], ["optimizer.momentum"]),
    (["optimizer=sgd"], ["optimizer.lr", "optimizer.momentum"], []),
])
def test_only_the_chosen_options_keys_are_logged(monkeypatch, overrides, logged, absent):
    monkeypatch.delenv("SWEEPBOOK_ROOT", raising=False)
    params = config_params(compose(overrides))
    assert [key for key in logged if key not in params] == [], sorted(params)
    assert [key for key in absent if key in params] == [], sorted(params)
    group, _, option = overrides[0].partition("=")
    assert params[group] == option
