from pathlib import Path

import mlflow
import mlflow.pytorch
import pytest
import torch
import yaml

from sweepbook.config import compose
from sweepbook.models import MLP
from sweepbook.tracking.location import sqlite_file
from sweepbook.params import REDACTED, config_params
from sweepbook.tracking import start_run

from conftest import ROOT, SMOKE


@pytest.fixture
def cfg(store, output_override):
    return compose([*SMOKE, output_override])


def artifacts(client, run_id, path=None):
    return sorted(a.path for a in client.list_artifacts(run_id, path))


def test_finished_run_logs_config_once_with_tags_and_artifacts(cfg, client):
    overrides = ["optimizer.lr=0.01", *SMOKE, f"paths.output_dir={cfg.paths.output_dir}"]
    cfg = compose(overrides)
    with start_run(cfg, notebook="notebooks/train.ipynb") as run:
        run.log_metrics({"val_acc": 0.5}, step=0)
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "lr=0.01,debug=default"
    assert recorded.data.params == config_params(cfg)
    assert recorded.data.params["optimizer.lr"] == "0.01"
    tags = recorded.data.tags
    assert tags["mlflow.source.name"] == "notebooks/train.ipynb"
    assert tags["sweepbook.version.torch"] == torch.__version__.split("+")[0]
    assert tags["sweepbook.overrides"] == " ".join(overrides)
    assert tags["sweepbook.config_name"] == "train"
    if (ROOT / ".git").exists():
        assert len(tags["mlflow.source.git.commit"]) == 40
        assert tags["sweepbook.git.dirty"] in ("true", "false")
    assert artifacts(client, run.run_id) == ["config.yaml", "overrides.yaml"]
    assert recorded.data.metrics == {"val_acc": 0.5}
    config = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path="config.yaml", tracking_uri=cfg.tracking.uri)).read_text())
    assert config["optimizer"]["lr"] == 0.01 and config["expname"] == "debug"


def test_experiment_is_created_once_with_artifacts_beside_the_store(cfg, client, store):
    for _ in range(2):
        with start_run(cfg):
            pass
    experiment = client.get_experiment_by_name(cfg.expname)
    store_folder = sqlite_file(store).parent
    assert experiment.artifact_location == (store_folder / "mlartifacts" / "debug").as_uri()
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_exception_ends_run_failed_keeps_metrics_and_reraises(cfg, client):
    with pytest.raises(RuntimeError, match="boom"):
        with start_run(cfg) as run:
            for step in range(5):
                run.log_metric("train_loss", 1.0, step)
            raise RuntimeError("boom")
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FAILED"
    assert recorded.data.tags["sweepbook.error"] == "RuntimeError: boom"
    assert len(client.get_metric_history(run.run_id, "train_loss")) == 5
    assert mlflow.active_run() is None


def test_keyboard_interrupt_ends_run_killed(cfg, client):
    with pytest.raises(KeyboardInterrupt):
        with start_run(cfg) as run:
            run.log_metric("train_loss", 1.0, 0)
            raise KeyboardInterrupt
    assert client.get_run(run.run_id).info.status == "KILLED"
    assert len(client.get_metric_history(run.run_id, "train_loss")) == 1


def test_leaked_mlflow_run_id_is_never_resumed(cfg, client, monkeypatch):
    with start_run(cfg) as first:
        pass
    before = client.get_run(first.run_id).info
    monkeypatch.setenv("MLFLOW_RUN_ID", first.run_id)
    with start_run(cfg) as second:
        second.log_metric("val_acc", 1.0)
    assert second.run_id != first.run_id
    after = client.get_run(first.run_id)
    assert (after.info.status, after.info.end_time) == ("FINISHED", before.end_time)
    assert after.data.metrics == {}


def test_parent_run_id_makes_a_child_run(cfg, client):
    with start_run(cfg) as parent:
        pass
    with start_run(cfg, parent_run_id=parent.run_id) as child:
        pass
    assert client.get_run(child.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_secrets_are_redacted_in_params_tags_and_logged_config(cfg, client):
    overrides = ["+service.api_token=s3cr3t", *SMOKE, f"paths.output_dir={cfg.paths.output_dir}"]
    cfg = compose(overrides)
    with start_run(cfg, overrides, tags={"db_password": "pw"}) as run:
        pass
    recorded = client.get_run(run.run_id)
    assert recorded.data.params["service.api_token"] == REDACTED
    assert recorded.data.tags["db_password"] == REDACTED
    logged = [
        Path(mlflow.artifacts.download_artifacts(run_id=run.run_id, artifact_path=name,
                                                 tracking_uri=cfg.tracking.uri)).read_text()
        for name in ("config.yaml", "overrides.yaml")
    ]
    everything = " ".join([*logged, *recorded.data.params.values(), *recorded.data.tags.values(),
                           recorded.info.run_name])
    assert "s3cr3t" not in everything and "pw" not in recorded.data.tags.values()


def test_files_in_the_output_folder_are_logged(cfg, client):
    with start_run(cfg) as run:
        assert run.output_dir == Path(cfg.paths.output_dir) / "debug" / run.run_id
        (run.output_dir / "notes").mkdir()
        (run.output_dir / "notes" / "todo.txt").write_text("more epochs")
    assert artifacts(client, run.run_id, "notes") == ["notes/todo.txt"]
    assert (run.output_dir / "config.yaml").is_file()


def test_figures_and_model_round_trip(cfg, client):
    import matplotlib.pyplot as plt

    torch.manual_seed(0)
    model = MLP((4,), 3, hidden=5)
    example = torch.rand(2, 4).numpy()
    with start_run(cfg) as run:
        figure, axes = plt.subplots()
        axes.plot([1, 2, 3])
        saved = run.log_figure(figure, "line.png")
        run.log_model(model, input_example=example)
    assert saved == run.output_dir / "figures" / "line.png"
    assert saved.read_bytes().startswith(b"\x89PNG") and not plt.fignum_exists(figure.number)
    assert artifacts(client, run.run_id, "figures") == ["figures/line.png"]
    loaded = mlflow.pytorch.load_model(f"runs:/{run.run_id}/model")
    assert isinstance(loaded, MLP)
    assert torch.equal(loaded(torch.from_numpy(example)), model(torch.from_numpy(example)))


def test_system_metrics_are_sampled_for_short_runs(store, output_override, client):
    import time

    cfg = compose([*SMOKE, output_override, "tracking.system_metrics=true",
                   "tracking.system_metrics_interval=0.2"])
    with start_run(cfg) as run:
        time.sleep(1.5)
    metrics = client.get_run(run.run_id).data.metrics
    assert any(key.startswith("system/cpu") for key in metrics), metrics


def test_deleted_experiment_gives_a_clear_error(cfg, client):
    with start_run(cfg):
        pass
    client.delete_experiment(client.get_experiment_by_name("debug").experiment_id)
    with pytest.raises(ValueError, match="'debug'.*deleted.*mlflow experiments restore"):
        with start_run(cfg):
            pass


def test_run_records_its_notebooks_code_hash_and_torch_threads(cfg, client):
    from sweepbook.notebook import code_hash
    from sweepbook.tracking import record

    with start_run(cfg, notebook="notebooks/train.ipynb") as run:
        pass
    with start_run(cfg, notebook="notebooks/nope.ipynb") as missing:
        pass
    tags = client.get_run(run.run_id).data.tags
    assert tags[record.NOTEBOOK_HASH_TAG] == code_hash(ROOT / "notebooks" / "train.ipynb")
    assert tags[record.THREADS_TAG] == str(torch.get_num_threads())
    assert record.NOTEBOOK_HASH_TAG not in client.get_run(missing.run_id).data.tags


def test_log_dataset_logs_each_split_with_its_digest_and_tags_the_whole(cfg, client):
    from sweepbook.data import load_dataset
    from sweepbook.tracking import record

    data = load_dataset(cfg.data, cfg.seed)
    with start_run(cfg, notebook="notebooks/train.ipynb") as run:
        run.log_dataset(data)
    recorded = client.get_run(run.run_id)
    assert recorded.data.tags[record.DATA_DIGEST_TAG] == data.digest()
    logged = {i.tags[0].value: i.dataset for i in recorded.inputs.dataset_inputs}
    assert sorted(logged) == ["testing", "training", "validation"]
    digests = data.digests()
    for context, split in (("training", "train"), ("validation", "val"), ("testing", "test")):
        assert logged[context].name == "digits"
        assert logged[context].digest == digests[split][:32]
        assert f'"targets_shape": [{len(getattr(data, split))}]' in logged[context].profile


def test_parallel_runs_logging_the_same_data_all_record_it(cfg, client):
    """A sweep's jobs log the same dataset at the same moment: MLflow adds a dataset it does
    not find, so all but the first writer hit the store's unique key; each must still end
    with its inputs (this failed a 4-job sweep on a fresh clone)."""
    import threading

    from sweepbook.data import load_dataset
    from sweepbook.tracking.run import TrackedRun

    data = load_dataset(cfg.data, cfg.seed)
    experiment = client.get_experiment_by_name(cfg.expname) or client.get_experiment(
        client.create_experiment(cfg.expname))
    runs = [TrackedRun(client, client.create_run(experiment.experiment_id).info.run_id,
                       Path(cfg.paths.output_dir), cfg.tracking) for _ in range(6)]
    start, failures = threading.Barrier(len(runs)), []

    def log(run):
        start.wait()
        try:
            run.log_dataset(data)
        except Exception as error:
            failures.append(error)
    threads = [threading.Thread(target=log, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    for run in runs:
        assert len(client.get_run(run.run_id).inputs.dataset_inputs) == 3
