"""start_run records the overrides its cfg was composed with, and refuses any other."""
from pathlib import Path

import mlflow
import pytest
import yaml

from sweepbook.config import composition, compose
from sweepbook.tracking import start_run

from conftest import SMOKE


def all_runs(client):
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def test_explicit_overrides_that_did_not_compose_cfg_are_refused(store, client, output_override):
    cfg = compose(["model=mlp", *SMOKE, output_override])
    entered = False
    with pytest.raises(ValueError, match="re-run the config cell") as refused:
        with start_run(cfg, overrides=["model=cnn", *SMOKE, output_override]):
            entered = True
    assert not entered
    assert "model=mlp" in str(refused.value) and "model=cnn" in str(refused.value)
    assert all_runs(client) == []
    assert mlflow.active_run() is None


def test_explicit_overrides_equal_to_the_composition_are_taken(store, client, output_override):
    overrides = ["model=mlp", *SMOKE, output_override]
    with start_run(compose(overrides), overrides=list(overrides)) as run:
        pass
    assert client.get_run(run.run_id).data.tags["sweepbook.overrides"] == " ".join(overrides)


def test_run_records_the_composition_of_its_cfg(store, client, output_override):
    overrides = ["model=mlp", "optimizer.lr=0.02", *SMOKE, output_override]
    cfg = compose(overrides, config_name="train")
    made = composition(cfg)
    with start_run(cfg) as run:
        run.log_metrics({"val_acc": 0.5})
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FINISHED"
    assert made.overrides == tuple(overrides) and made.config_name == "train"
    assert recorded.data.tags["sweepbook.overrides"] == " ".join(made.overrides)
    assert recorded.data.tags["sweepbook.config_name"] == made.config_name
    assert recorded.info.run_name == "model=mlp,lr=0.02,debug=default"
    assert recorded.data.params["model"] == made.choices["model"] == "mlp"
    logged = mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path="overrides.yaml",
                                                 tracking_uri=store)
    assert yaml.safe_load(Path(logged).read_text()) == overrides


def test_a_config_changed_in_code_after_compose_is_tagged_edited(store, tmp_path, client):
    cfg = compose(["debug=default", f"paths.output_dir={tmp_path}"])
    with start_run(cfg) as untouched:
        pass
    cfg.optimizer.lr = 0.1
    with start_run(cfg) as edited:
        pass
    assert "sweepbook.config_edited" not in client.get_run(untouched.run_id).data.tags
    run = client.get_run(edited.run_id)
    assert run.data.tags["sweepbook.config_edited"] == "true"
    assert run.data.params["optimizer.lr"] == "0.1"  # the params say what ran
