"""The local executor's pieces that need no notebook: engines, the store hand-off."""
import os

import pytest

from conftest import ROOT, SMOKE
from sweepbook.config import ConfigError
from sweepbook.executors import get_executor
from sweepbook.executors.local import (GPU_COUNT_ENV, LocalExecutor, StoreHandoff, gpu_slots,
                                       handed_over_store, visible_gpus)


def test_unknown_engine_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'gpu'; valid: fork, kernel"):
        LocalExecutor(workers=1, engine="gpu")


def test_executors_are_chosen_by_name():
    executor = get_executor("local", workers=2, engine="kernel")
    assert isinstance(executor, LocalExecutor) and executor.has_room()
    with pytest.raises(ValueError, match="unknown executor 'moon'; valid: local, ray"):
        get_executor("moon", workers=1)


def test_store_handoff_passes_the_uri_once_released():
    before = dict(os.environ)
    with StoreHandoff() as handoff:
        reader = open(handoff.path)
        handoff.release("sqlite:////x/mlflow.db")
        assert handed_over_store(reader) == "sqlite:////x/mlflow.db"
        path = handoff.path
    assert not os.path.exists(path) and dict(os.environ) == before


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["kernel", "fork"])
def test_a_job_that_opens_no_run_reports_its_placeholder(tmp_path, store, client, engine):
    """The executor's outcome names the run the job recorded, whatever the engine."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from sweepbook.executors.base import JobSpec
    from sweepbook.executors.job import NO_RUN_REASON
    from sweepbook.tracking.record import LAUNCH_TAG

    notebook = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("tags = {}", metadata={"tags": [
        "parameters"]}), new_code_cell("print('no run here')")], metadata={"kernelspec": {
            "name": "python3", "language": "python", "display_name": "Python 3"}}), notebook)
    experiment_id = client.create_experiment("plain", (tmp_path / "artifacts").as_uri())
    spec = JobSpec(index=0, name="plain", notebook=str(notebook), output=str(tmp_path / "o.ipynb"),
                   log=str(tmp_path / "o.log"), parameters={"tags": {LAUNCH_TAG: "l-1"}},
                   env={**os.environ, "MLFLOW_TRACKING_URI": store}, experiment_id=experiment_id)
    with LocalExecutor(workers=1, engine=engine) as executor:
        executor.prepare(str(notebook), "train", [])
        executor.store_ready(store)
        executor.start(spec)
        outcomes = []
        while not outcomes:
            outcomes = executor.poll(1.0)
    [outcome] = outcomes
    run = client.get_run(outcome.run_id)
    assert (outcome.status, run.info.status) == ("FAILED", "FAILED")
    assert run.data.tags["sweepbook.error"] == NO_RUN_REASON
    assert outcome.notebook == str(tmp_path / "o.ipynb")
    assert "o.ipynb" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_gpus_are_shared_out_in_slots_never_shared_by_two_workers(monkeypatch):
    monkeypatch.setenv(GPU_COUNT_ENV, "4")
    assert visible_gpus() == ["0", "1", "2", "3"]
    assert gpu_slots(visible_gpus(), 1) == ["0", "1", "2", "3"]
    assert gpu_slots(visible_gpus(), 2) == ["0,1", "2,3"]
    assert gpu_slots(visible_gpus(), 3) == ["0,1,2"]  # the fourth GPU is left idle
    assert gpu_slots(visible_gpus(), 0) == [] and gpu_slots([], 1) == []
    with pytest.raises(ConfigError, match="executor.gpus_per_job=5: only 4 GPUs are visible"):
        gpu_slots(visible_gpus(), 5)
    monkeypatch.setenv(GPU_COUNT_ENV, "two")
    with pytest.raises(ConfigError, match="SWEEPBOOK_VISIBLE_GPUS='two'"):
        visible_gpus()
    monkeypatch.delenv(GPU_COUNT_ENV)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpus() == ["3", "5"]  # what the machine lets this process see


@pytest.mark.parametrize("device, workers", [("auto", 2), ("cuda", 2), ("cpu", 3),
                                             ("cuda:1", 3)])
def test_workers_get_slots_only_for_jobs_that_may_use_any_gpu(monkeypatch, device, workers):
    monkeypatch.setenv(GPU_COUNT_ENV, "4")
    executor = LocalExecutor(workers=3, gpus_per_job=2)
    executor.use_device(device)
    assert executor.workers == workers
    assert executor.gpu_slots == (["0,1", "2,3"] if workers == 2 else [])


@pytest.mark.slow
def test_each_running_job_sees_its_own_gpu_slot(store, tmp_path, monkeypatch):
    """No GPU here: SWEEPBOOK_VISIBLE_GPUS says 4; each run records the slot it saw."""
    from mlflow.tracking import MlflowClient

    from sweepbook.sweep.driver import run_sweep

    monkeypatch.setenv(GPU_COUNT_ENV, "4")
    result = run_sweep(str(ROOT / "notebooks" / "train.ipynb"),
                       [*SMOKE, "seed=0,1,2", f"paths.output_dir={tmp_path}",
                        "executor.gpus_per_job=2"], workers=3, quiet=True)
    assert result.ok and result.count("FINISHED") == 3
    client = MlflowClient(store)
    runs = [client.get_run(r.run_id) for r in result.results]
    slots = [r.data.tags["sweepbook.cuda_visible_devices"] for r in runs]
    assert set(slots) <= {"0,1", "2,3"}
    for a in runs:  # two runs at the same time never share a slot
        for b in runs:
            overlap = a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time
            if a is not b and overlap:
                assert a.data.tags["sweepbook.cuda_visible_devices"] != \
                    b.data.tags["sweepbook.cuda_visible_devices"]
