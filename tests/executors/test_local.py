"""The local executor's pieces that need no notebook: engines, the store hand-off."""
import os
from pathlib import Path

import psutil
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


USER_MODEL = '''\
import math

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, input_shape, num_classes, hidden=8):
        super().__init__()
        print("TinyNet {version}")
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                                 nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)
'''


@pytest.fixture
def project(tmp_path, store, monkeypatch):
    """A user's project ($SWEEPBOOK_ROOT): the checkout's conf/ and train notebook, plus a
    model of their own beside the notebook, which the template imports while warming up."""
    import shutil

    shutil.copytree(ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "train.ipynb", tmp_path / "notebooks" / "train.ipynb")
    (tmp_path / "notebooks" / "user_models.py").write_text(USER_MODEL.format(version="v1"))
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text("_target_: user_models.TinyNet\n")
    monkeypatch.setenv("SWEEPBOOK_ROOT", str(tmp_path))
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES", f"debug=default paths.output_dir={tmp_path}/out")
    return tmp_path


def _printed(result) -> str:
    [job] = result.results
    assert job.status == "FINISHED", job.error
    return Path(job.notebook).read_text()


@pytest.mark.slow
def test_the_template_serves_the_next_sweep_until_the_notebooks_code_changes(project):
    """A notebook's kernel runs sweep after sweep: the warm template outlives each one, and
    is replaced when code it imported changed on disk (its jobs would run the old code)."""
    from sweepbook.executors import local
    from sweepbook.sweep import run_sweep

    notebook = str(project / "notebooks" / "train.ipynb")
    local.stop_template()  # this test's own, whatever earlier tests of this process left
    first = run_sweep(notebook, ["model=tiny", "seed=0"], workers=1, quiet=True)
    template = local._template.pid
    assert "TinyNet v1" in _printed(first)
    second = run_sweep(notebook, ["model=tiny", "seed=1"], workers=1, quiet=True)
    assert local._template.pid == template and "TinyNet v1" in _printed(second)
    (project / "notebooks" / "user_models.py").write_text(USER_MODEL.format(version="v2"))
    os.utime(project / "notebooks" / "user_models.py", ns=(0, 10 ** 18))  # surely newer
    third = run_sweep(notebook, ["model=tiny", "seed=2"], workers=1, quiet=True)
    assert local._template.pid != template and "TinyNet v2" in _printed(third)
    assert not psutil.pid_exists(template) or \
        psutil.Process(template).status() == psutil.STATUS_ZOMBIE
    replaced = local._template.pid
    local.stop_template()
    assert local._template is None and not psutil.pid_exists(replaced)
