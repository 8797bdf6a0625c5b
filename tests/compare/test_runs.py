"""Comparing runs of a real store: scopes, ranking, the best run, and the errors a user sees."""
import time

import pytest

from sweepbook.compare import (ComparisonError, best_run, direction_for, load_runs,
                               metric_histories, ranked, read_artifact, resolve_scope,
                               run_config, summary_table, swept_params)

from runs_factory import make_run

SWEEP_TAGS = {"sweepbook.role": "parent"}


def _sweep(client, experiment_id, sweep_id, results):
    parent = make_run(client, experiment_id, f"sweep-{sweep_id}",
                      tags={**SWEEP_TAGS, "sweepbook.sweep_id": sweep_id})
    for lr, acc, status in results:
        make_run(client, experiment_id, f"lr={lr}", {"optimizer.lr": lr, "seed": "0"},
                 {"test_acc": [acc], "val_loss": [1 - acc, 0.5 - acc / 2]}, status=status,
                 parent=parent, tags={"sweepbook.sweep_id": sweep_id})
    return parent


@pytest.fixture
def sweeps(client):
    experiment_id = client.create_experiment("sweepbook")
    make_run(client, experiment_id, "single", {"optimizer.lr": "0.5", "seed": "0"},
             {"test_acc": [0.99]})
    old = _sweep(client, experiment_id, "old", [("0.1", 0.8, "FINISHED")])
    time.sleep(0.01)
    new = _sweep(client, experiment_id, "new", [("0.1", 0.7, "FINISHED"),
                                                ("0.01", 0.9, "FINISHED"),
                                                ("1.0", 0.95, "FAILED")])
    return {"old": old, "new": new}


def test_a_sweep_scope_holds_its_children_only(store, sweeps):
    runs = load_runs(resolve_scope(store, sweep_id="new"))
    assert sorted(runs["params.optimizer.lr"]) == ["0.01", "0.1", "1.0"]
    assert set(runs["tags.mlflow.parentRunId"]) == {sweeps["new"]}


def test_latest_is_the_newest_sweep(store, sweeps):
    scope = resolve_scope(store, experiment="sweepbook", sweep_id="latest")
    assert (scope.sweep_id, scope.parent_run_id) == ("new", sweeps["new"])
    assert scope.title == "sweep new"


def test_latest_passes_over_a_newer_sweep_whose_every_job_failed(store, client, sweeps):
    from mlflow.entities import Metric

    experiment_id = client.get_experiment_by_name("sweepbook").experiment_id
    for sweep_id, finished in (("new", 2), ("broken", 0)):
        parent = sweeps.get(sweep_id) or _sweep(client, experiment_id, sweep_id,
                                                [("9.0", 0.1, "FAILED")])
        client.log_batch(parent, metrics=[Metric("jobs_finished", finished, 0, 0)])
    scope = resolve_scope(store, experiment="sweepbook", sweep_id="latest")
    assert scope.sweep_id == "new"


def test_an_experiment_scope_leaves_sweep_parents_out(store, sweeps):
    runs = load_runs(resolve_scope(store, experiment="sweepbook"))
    assert len(runs) == 5
    assert not runs["run_name"].str.startswith("sweep-").any()


def test_best_run_is_finished_and_follows_the_direction(store, sweeps):
    runs = load_runs(resolve_scope(store, sweep_id="new"))
    assert best_run(runs, "test_acc")["params.optimizer.lr"] == "0.01"  # 0.95 FAILED
    assert best_run(runs, "val_loss")["params.optimizer.lr"] == "0.01"  # min for losses
    assert best_run(runs, "test_acc", "min")["params.optimizer.lr"] == "0.1"


def test_ranked_puts_runs_without_the_metric_last(store, client, sweeps):
    experiment_id = client.get_experiment_by_name("sweepbook").experiment_id
    make_run(client, experiment_id, "no-metric", {"optimizer.lr": "7"}, parent=sweeps["new"])
    order = ranked(load_runs(resolve_scope(store, sweep_id="new")), "test_acc")
    assert list(order["run_name"]) == ["lr=1.0", "lr=0.01", "lr=0.1", "no-metric"]


def test_summary_table_shows_what_was_swept(store, sweeps):
    runs = load_runs(resolve_scope(store, sweep_id="new"))
    assert swept_params(runs) == ["params.optimizer.lr"]
    table = summary_table(runs, "test_acc", extra_metrics=["val_loss", "nope"])
    assert list(table.columns) == ["run_id", "run", "status", "test_acc", "val_loss",
                                   "optimizer.lr", "seconds"]
    assert list(table.index) == [1, 2, 3]
    assert list(table["optimizer.lr"]) == ["1.0", "0.01", "0.1"]


def test_histories_of_the_scope(store, sweeps):
    scope = resolve_scope(store, sweep_id="new")
    runs = load_runs(scope)
    history = metric_histories(scope, list(runs["run_id"]), ["val_loss"])
    assert len(history) == 6 and set(history["step"]) == {0, 1}


@pytest.mark.parametrize("call, says", [
    (lambda uri: resolve_scope(uri, experiment="nope"),
     "no experiment 'nope' in sqlite:///.* \\(experiments there: Default, sweepbook\\)"),
    (lambda uri: resolve_scope(uri, sweep_id="abc"), "no sweep 'abc' in sqlite"),
    (lambda uri: resolve_scope(uri), "name an experiment or a sweep id"),
    (lambda uri: best_run(load_runs(resolve_scope(uri, sweep_id="new")), "acc"),
     "no run logged the metric 'acc' \\(metrics logged: test_acc, val_loss\\)"),
    (lambda uri: ranked(load_runs(resolve_scope(uri, sweep_id="new")), "test_acc", "up"),
     "direction 'up' is not one of: max, min"),
])
def test_errors_name_the_bad_value_and_what_is_valid(store, sweeps, call, says):
    with pytest.raises(ComparisonError, match=says):
        call(store)


def test_an_empty_experiment_is_an_error(store, client):
    client.create_experiment("empty")
    with pytest.raises(ComparisonError, match="no runs to compare in experiment empty"):
        load_runs(resolve_scope(store, experiment="empty"))


def test_no_finished_run_is_an_error(store, client):
    experiment_id = client.create_experiment("failing")
    make_run(client, experiment_id, "bad", metrics={"test_acc": [0.5]}, status="FAILED")
    runs = load_runs(resolve_scope(store, experiment="failing"))
    with pytest.raises(ComparisonError, match="no FINISHED run has the metric 'test_acc'"):
        best_run(runs, "test_acc")


@pytest.mark.parametrize("metric, direction", [("test_acc", "max"), ("val_loss", "min"),
                                               ("error_rate", "min"), ("f1", "max")])
def test_direction_is_inferred_from_the_metric_name(metric, direction):
    assert direction_for(metric) == direction


def test_run_config_and_artifacts_of_a_real_run(swept):
    scope = resolve_scope(swept.uri, sweep_id=swept.sweep_id)
    run = load_runs(scope).iloc[0]
    cfg = run_config(scope, run["run_id"])
    assert (cfg.expname, cfg.training.epochs) == ("debug", 3)  # the debug preset it ran with
    assert cfg.model._target_ == run["params.model._target_"]
    assert load_runs(scope)["params.model"].tolist().count(run["params.model"]) == 2
    assert read_artifact(scope, run["run_id"], "figures/confusion_matrix.png").startswith(
        b"\x89PNG")
    assert read_artifact(scope, run["run_id"], "figures/nope.png") is None


def test_latest_without_any_sweep_says_how_to_get_one(store, client):
    make_run(client, client.create_experiment("single"), "one", metrics={"test_acc": [0.5]})
    with pytest.raises(ComparisonError, match="no sweep in sqlite:///.* yet: run one"):
        resolve_scope(store, sweep_id="latest")


def test_a_run_without_its_config_is_named(store, client):
    run_id = make_run(client, client.create_experiment("bare"), "no-config")
    scope = resolve_scope(store, experiment="bare")
    with pytest.raises(ComparisonError, match=f"run {run_id} logged no config.yaml"):
        run_config(scope, run_id)


def test_a_targets_column_shows_only_when_its_group_choice_does_not():
    import pandas as pd

    by_choice = pd.DataFrame({"params.model": ["cnn", "mlp"],
                              "params.model._target_": ["a.CNN", "a.MLP"]})
    assert swept_params(by_choice) == ["params.model"]
    by_target = pd.DataFrame({"params.model": ["cnn", "cnn"],
                              "params.model._target_": ["a.CNN", "b.CNN"]})
    assert swept_params(by_target) == ["params.model._target_"]
