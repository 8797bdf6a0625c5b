"""Promotion into the Model Registry of a real sweep's store, and loading through the alias."""
import mlflow.pytorch
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweepbook.compare import best_run, load_runs, resolve_scope
from sweepbook.compare.registry import RegistryError, promote

from runs_factory import make_run


def test_promote_registers_a_version_and_points_the_alias_at_it(swept):
    best = best_run(load_runs(resolve_scope(swept.uri, sweep_id=swept.sweep_id)), "test_acc")
    promotion = promote(swept.uri, best["run_id"], "digits", tags={"metric": "test_acc"})
    assert (promotion.version, promotion.uri) == ("1", "models:/digits@champion")
    version = MlflowClient(swept.uri).get_model_version_by_alias("digits", "champion")
    assert (str(version.version), version.run_id, version.tags) == ("1", best["run_id"],
                                                                   {"metric": "test_acc"})
    model = mlflow.pytorch.load_model("models:/digits@champion")
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_promoting_again_moves_the_alias_to_the_new_version(swept):
    runs = load_runs(resolve_scope(swept.uri, sweep_id=swept.sweep_id))
    first, second = runs["run_id"][:2]
    promote(swept.uri, first, "digits")
    assert promote(swept.uri, second, "digits").version == "2"
    client = MlflowClient(swept.uri)
    assert client.get_model_version_by_alias("digits", "champion").run_id == second
    assert client.get_model_version("digits", "1").run_id == first  # kept, only unaliased


@pytest.mark.parametrize("name, alias, says", [
    ("a/b", "champion", "Invalid model name 'a/b'. Names cannot contain '/' or ':'"),
    ("digits", "v1", "Version alias name 'v1' is reserved"),
    ("digits", "top pick", "Invalid alias name: 'top pick'"),
])
def test_bad_names_fail_before_anything_is_registered(swept, name, alias, says):
    run_id = load_runs(resolve_scope(swept.uri, sweep_id=swept.sweep_id))["run_id"][0]
    with pytest.raises(RegistryError, match=says):
        promote(swept.uri, run_id, name, alias)
    assert MlflowClient(swept.uri).search_registered_models() == []


def test_a_run_without_a_model_is_refused(store, client):
    run_id = make_run(client, client.create_experiment("bare"), "no-model")
    with pytest.raises(RegistryError, match=f"run {run_id} logged no model named 'model'"):
        promote(store, run_id, "digits")
    assert client.search_registered_models() == []
