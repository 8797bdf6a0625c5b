"""The local executor's pieces that need no notebook: engines, the store hand-off."""
import os

import pytest

from sweepbook.executors import get_executor
from sweepbook.executors.local import LocalExecutor, StoreHandoff, handed_over_store


def test_unknown_engine_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'gpu'; valid: fork, kernel"):
        LocalExecutor(workers=1, engine="gpu")


def test_executors_are_chosen_by_name():
    executor = get_executor("local", workers=2, engine="kernel")
    assert isinstance(executor, LocalExecutor) and executor.has_room()
    with pytest.raises(ValueError, match="unknown executor 'moon'; valid: local"):
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
