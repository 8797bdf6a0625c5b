"""Comparing a search (sweepbook tune) as a user does: its trials ranked with their numbers, a
pruned one shown PRUNED and never the best, the best one registered, and the search's own
figures in the report and from search_figures."""
import base64
import dataclasses
import os
import re
import shutil
import subprocess

import matplotlib
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, SWEEPBOOK
from runs_factory import make_run
from sweepbook.compare import (SEARCH_FIGURES, best_run, load_runs, resolve_scope,
                               search_figures, summary_table)
from sweepbook.env import patched_environ

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEARCH = ["optimizer.lr=tag(log,interval(1e-4,1e-1))", "model=choice(cnn,mlp)"]
PARENT = {"sweepbook.role": "parent"}


def _experiment(client, tmp_path, name: str) -> str:
    return client.create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())


def _search_of(client, experiment_id, name, tags=None):
    """A sweep's parent run named `name` holding a search figure, with three trials: the best
    by val_acc pruned."""
    parent = make_run(client, experiment_id, name,
                      tags={**PARENT, "sweepbook.sweep_id": "s", **(tags or {})})
    client.log_text(parent, "not really a PNG", "tune/optimization_history.png")
    trials = [("FINISHED", 0.8, {}), ("KILLED", 0.95, {"sweepbook.pruned": "pruned at step 1"}),
              ("KILLED", 0.9, {"sweepbook.error": "the job timed out"})]
    for number, (status, acc, tags) in enumerate(trials):
        make_run(client, experiment_id, f"trial-{number}", {"seed": str(number)},
                 {"val_acc": [acc]}, status=status, parent=parent,
                 tags={"sweepbook.sweep_id": "s", "sweepbook.trial": str(number), **tags})
    return parent


def test_a_pruned_trial_is_pruned_and_never_the_best(store, client, tmp_path):
    _search_of(client, _experiment(client, tmp_path, "search"), "tune-s")
    scope = resolve_scope(store, sweep_id="s")
    runs = load_runs(scope)
    table = summary_table(runs, "val_acc")
    assert list(table[["trial", "status"]].itertuples(index=False, name=None)) == [
        (1, "PRUNED"), (2, "KILLED"), (0, "FINISHED")]  # a killed run without the tag stays so
    assert best_run(runs, "val_acc")["run_name"] == "trial-0"


@pytest.mark.parametrize("name, tags, search", [
    ("tune-s", {}, True), ("my-search", {"sweepbook.tune.metric": "val_acc"}, True),
    ("sweep-s", {}, False)])
def test_a_search_is_told_by_its_parent_run(store, client, tmp_path, name, tags, search):
    _search_of(client, _experiment(client, tmp_path, "search"), name, tags)
    scope = resolve_scope(store, sweep_id="s")
    assert (scope.search, scope.title) == (search, f"{'search' if search else 'sweep'} s")
    figures = search_figures(scope, tmp_path / "figures")
    assert figures == ([tmp_path / "figures" / "tune" / "optimization_history.png"] if search
                       else [])  # a figure the driver did not log is left out


def test_runs_of_a_grid_sweep_show_no_trial_column(store, client, tmp_path):
    experiment_id = _experiment(client, tmp_path, "grid")
    parent = make_run(client, experiment_id, "sweep-g", tags={**PARENT, "sweepbook.sweep_id": "g"})
    make_run(client, experiment_id, "lr=0.1", {"seed": "0"}, {"val_acc": [0.5]}, parent=parent)
    table = summary_table(load_runs(resolve_scope(store, sweep_id="g")), "val_acc")
    assert list(table.columns[:3]) == ["run_id", "run", "status"]


@dataclasses.dataclass
class Searched:
    uri: str
    study: str
    env: dict  # a user's environment for the CLI, on this store
    pruned: set  # run ids of the pruned trials, from MLflow
    best: set  # run ids of the FINISHED trials with the best val_acc (ties), from MLflow


def _trial_runs(client, parent_run_id):
    runs = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return {r.info.run_id: r for r in runs}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, store_template) -> Searched:
    """One real search of train.ipynb (8 trials, some pruned), made once for the module."""
    from sweepbook.sweep.tune import run_tune

    folder = tmp_path_factory.mktemp("searched")
    shutil.copy(store_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with patched_environ({"MLFLOW_TRACKING_URI": uri, "MLFLOW_RUN_ID": None}), \
            matplotlib.rc_context():  # Optuna's figures set the ggplot style for the process
        result = run_tune(str(ROOT / "notebooks" / "train.ipynb"),
                          [*SEARCH, "debug=default", "training.epochs=6",
                           f"paths.output_dir={folder / 'outputs'}"],
                          trials=8, workers=2, seed=0, quiet=True)
    assert result.ok and result.count("PRUNED"), result.table()
    runs = _trial_runs(MlflowClient(uri), result.parent_run_id)
    pruned = {i for i, r in runs.items()
              if r.info.status == "KILLED" and "sweepbook.pruned" in r.data.tags}
    finished = [r for r in runs.values() if r.info.status == "FINISHED"]
    top = max(r.data.metrics["val_acc"] for r in finished)
    best = {r.info.run_id for r in finished if r.data.metrics["val_acc"] == top}
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    return Searched(uri, result.study, env, pruned, best)


def _sweepbook(searched: Searched, *args) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPBOOK, *args, "--sweep", searched.study, "--metric", "val_acc"],
                          env=searched.env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_runs_ranks_the_trials_with_the_pruned_ones_shown(searched):
    done = _sweepbook(searched, "runs")
    assert done.returncode == 0, done.stderr
    header, *rows = [line.split() for line in done.stdout.splitlines()[:-1] if line.strip()]
    assert header[:3] == ["run_id", "trial", "run"]
    rows = [row for row in rows if row[0].isdigit()]  # rank, run_id, trial, run, status, ...
    assert len(rows) == 8 and rows[0][1] in searched.best
    assert {row[1] for row in rows if row[4] == "PRUNED"} == searched.pruned
    assert sorted(int(row[2]) for row in rows) == list(range(8))
    assert f"search {searched.study}: 8 runs in {searched.uri}, best first by val_acc (max)" \
        in done.stdout


@pytest.mark.slow
def test_best_registers_the_best_finished_trial(searched):
    done = _sweepbook(searched, "best", "--register", "searched")
    assert done.returncode == 0, done.stderr
    shown = re.search(r"\(run (\w+)\)", done.stdout).group(1)
    version = MlflowClient(searched.uri, registry_uri=searched.uri).get_model_version_by_alias(
        "searched", "champion")
    assert version.run_id == shown and shown in searched.best and shown not in searched.pruned


@pytest.mark.slow
def test_search_figures_are_the_three_pngs_of_the_parent(searched, tmp_path):
    figures = search_figures(resolve_scope(searched.uri, sweep_id=searched.study), tmp_path)
    assert [path.name for path in figures] == list(SEARCH_FIGURES)
    assert all(path.is_file() and path.read_bytes().startswith(PNG_MAGIC) for path in figures)


@pytest.mark.slow
def test_the_report_embeds_the_search_figures(searched, tmp_path):
    done = _sweepbook(searched, "report", "--output", str(tmp_path / "report.html"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "report.html").read_text()
    section = re.search(r"<h2>The search</h2>(.*?)<h2>", text, re.S).group(1)
    embedded = [base64.b64decode(data) for data in re.findall(r'base64,([^"]+)"', section)]
    figures = search_figures(resolve_scope(searched.uri, sweep_id=searched.study), tmp_path)
    assert embedded == [path.read_bytes() for path in figures] and len(embedded) == 3
    assert text.count("data:image/png;base64,") == len(embedded) + 4  # and the sweep's four
