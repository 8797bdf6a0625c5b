"""Real sweeps of notebooks/train.ipynb on temporary stores: fork and kernel engines."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sweepbook.notebook import NotebookError
from sweepbook.sweep import run_sweep

from conftest import ROOT, SWEEPBOOK
from test_data import write_idx

TRAIN = str(ROOT / "notebooks" / "train.ipynb")


@pytest.fixture
def smoke(tmp_path, monkeypatch, store):
    """Smoke-sized jobs on the test's store; local files under tmp_path."""
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES",
                       f"debug=default paths.output_dir={tmp_path / 'outputs'}")
    return store


def runs_of(client, result):
    parent = client.get_run(result.parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    return parent, sorted(children, key=lambda r: int(r.data.tags["sweepbook.job_index"]))


@pytest.mark.slow
def test_parallel_sweep_records_parent_children_and_notebooks(smoke, client):
    handler = signal.getsignal(signal.SIGINT)
    result = run_sweep(TRAIN, ["model=cnn,mlp", "optimizer.lr=1e-3,1e-2"], workers=2,
                       quiet=True)
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is the caller's again
    assert result.ok and [r.status for r in result.results] == ["FINISHED"] * 4
    parent, children = runs_of(client, result)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweepbook.sweep_id"] == result.sweep_id
    assert parent.data.params["sweep.jobs"] == "4"
    assert parent.data.metrics["jobs_finished"] == 4 and parent.data.metrics["jobs_failed"] == 0
    assert [c.data.params["model"] for c in children] == ["cnn", "cnn", "mlp", "mlp"]
    assert [c.data.tags["sweepbook.config_name"] for c in children] == ["train"] * 4
    assert [c.data.params["optimizer.lr"] for c in children] == ["0.001", "0.01"] * 2
    assert len({c.data.tags["sweepbook.config_hash"] for c in children}) == 4
    for child, row in zip(children, result.results):
        assert child.info.status == "FINISHED" and child.data.tags["sweepbook.sweep_id"]
        assert row.metric == child.data.metrics["test_acc"]
        notebook = Path(row.notebook)
        assert notebook.parent.name == result.sweep_id and notebook.is_file()
        assert [a.path for a in client.list_artifacts(child.info.run_id)
                if a.path.endswith(".ipynb")] == [notebook.name]
    table = result.table()
    assert list(table.columns[:3]) == ["name", "status", "test_acc"]
    assert len(table) == 4


@pytest.mark.slow
def test_kernel_engine_gives_the_same_results(smoke, client):
    overrides = ["model=mlp", "optimizer.lr=1e-2,3e-2"]
    forked = run_sweep(TRAIN, overrides, workers=2, quiet=True)
    client.delete_run(forked.parent_run_id)  # else the second sweep would resume the first
    kernel = run_sweep(TRAIN, overrides, workers=2, engine="kernel", quiet=True)
    assert kernel.ok and kernel.parent_run_id != forked.parent_run_id
    assert [r.metric for r in kernel.results] == [r.metric for r in forked.results]


@pytest.mark.slow
def test_failed_job_is_isolated_recorded_and_resumed(smoke, client, tmp_path):
    data_dir = tmp_path / "datasets"
    overrides = ["data=digits,mnist", f"paths.data_dir={data_dir}"]
    first = run_sweep(TRAIN, overrides, workers=2, quiet=True)
    assert [r.status for r in first.results] == ["FINISHED", "FAILED"]
    assert not first.ok
    failed = client.get_run(first.results[1].run_id)
    assert failed.info.status == "FAILED"
    assert "DatasetNotFound" in failed.data.tags["sweepbook.error"]
    assert "MNIST/raw" in failed.data.tags["sweepbook.error"]
    assert any(a.path.endswith(".ipynb") for a in client.list_artifacts(failed.info.run_id))
    assert client.get_run(first.parent_run_id).info.status == "FAILED"

    write_idx(data_dir / "MNIST" / "raw")
    second = run_sweep(TRAIN, overrides, workers=2, quiet=True)
    assert second.sweep_id == first.sweep_id and second.parent_run_id == first.parent_run_id
    assert [r.status for r in second.results] == ["SKIPPED", "FINISHED"]
    assert second.results[0].run_id == first.results[0].run_id
    parent, children = runs_of(client, second)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED"]


@pytest.mark.slow
def test_resume_by_id_marks_stale_running_children_killed(smoke, client):
    first = run_sweep(TRAIN, ["model=mlp", "seed=1,2"], workers=2, quiet=True)
    parent = client.get_run(first.parent_run_id)
    stale = client.create_run(parent.info.experiment_id, tags={
        "mlflow.parentRunId": first.parent_run_id, "sweepbook.config_hash": "gone"})
    resumed = run_sweep(None, resume=first.sweep_id, quiet=True)
    assert [r.status for r in resumed.results] == ["SKIPPED", "SKIPPED"]
    assert client.get_run(stale.info.run_id).info.status == "KILLED"


@pytest.mark.slow
def test_timeout_stops_a_job_and_fails_its_run(smoke, client):
    result = run_sweep(TRAIN, ["model=mlp"], workers=1, timeout=0.5, quiet=True)
    [job] = result.results
    assert job.status == "FAILED" and re.fullmatch(r"timed out after \d+\.\d s", job.error)
    assert client.get_run(job.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_cli_summary_lists_every_job_and_exits_1_on_failure(smoke, tmp_path, capsys):
    from sweepbook.cli import main

    code = main(["sweep", TRAIN, "data=digits,mnist", f"paths.data_dir={tmp_path / 'none'}",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    [digits, mnist] = [line for line in out.splitlines() if "data=" in line]
    assert "FINISHED" in digits and "FAILED" in mnist
    for line in (digits, mnist):
        assert Path(line.split()[-1]).is_file()  # the executed notebook, error banner and all
    assert "1 finished, 1 failed" in out and "resume it with: sweepbook sweep --resume" in out
    assert re.search(r"compare its runs: sweepbook runs --sweep \w+ ", out)
    assert "make ui" in out


def test_validation_error_exits_2_and_writes_nothing(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    done = subprocess.run([SWEEPBOOK, "sweep", TRAIN, "model=cnn,nope", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "1 of 2 jobs are invalid against conf/train.yaml; nothing was run" in done.stderr
    assert "resnet18" in done.stderr
    assert not db.parent.exists()


@pytest.mark.slow
def test_sweep_from_a_notebook_cell(smoke, client, tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cell = ("from sweepbook.sweep import run_sweep\n"
            f"result = run_sweep({TRAIN!r}, ['model=mlp', 'seed=1,2'], workers=2, quiet=True)\n"
            "assert result.ok, result.table()\n"
            "print(result.parent_run_id)")
    nbformat.write(new_notebook(cells=[new_code_cell(cell)], metadata={"kernelspec": {
        "name": "python3", "language": "python", "display_name": "Python 3"}}),
        tmp_path / "sweep.ipynb")
    done = subprocess.run([str(Path(sys.executable).parent / "papermill"), "sweep.ipynb",
                           "out.ipynb", "--no-progress-bar"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    [parent] = [r for r in client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`sweepbook.role` = 'parent'")]
    assert parent.info.run_id in (tmp_path / "out.ipynb").read_text()
    assert parent.data.metrics["jobs_finished"] == 2


@pytest.mark.slow
def test_a_leaked_mlflow_run_id_never_reaches_the_jobs(smoke, client, monkeypatch):
    stray = client.create_run(client.create_experiment("stray")).info.run_id
    client.set_terminated(stray, "FINISHED")
    monkeypatch.setenv("MLFLOW_RUN_ID", stray)
    result = run_sweep(TRAIN, ["model=mlp"], workers=1, quiet=True)
    [job] = result.results
    assert job.status == "FINISHED" and job.run_id != stray
    child = client.get_run(job.run_id)
    assert child.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert client.get_run(stray).data.metrics == {}


def test_resuming_an_unknown_sweep_says_so(smoke, capsys):
    from sweepbook.cli import main

    assert main(["sweep", "--resume", "nope"]) == 2
    assert "no sweep 'nope' in sqlite:///" in capsys.readouterr().err
    assert main(["sweep"]) == 2
    assert "give a notebook to sweep, or --resume SWEEP_ID" in capsys.readouterr().err


def test_missing_notebook_is_refused(smoke):
    with pytest.raises(NotebookError, match="not found"):
        run_sweep("nope.ipynb", ["model=mlp"], quiet=True)


@pytest.mark.parametrize("change, says", [
    (lambda cell: cell.metadata.update(tags=[]), "has no cell tagged `parameters`"),
    (lambda cell: setattr(cell, "source", "overrides = []"), "does not set config_name"),
])
def test_a_notebook_without_its_parameters_is_refused_before_anything(tmp_path, change, says):
    import nbformat

    notebook = nbformat.read(TRAIN, as_version=4)
    change(next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])))
    nbformat.write(notebook, tmp_path / "train.ipynb")
    db = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    for command in ("sweep", "run"):
        done = subprocess.run([SWEEPBOOK, command, str(tmp_path / "train.ipynb"), "seed=1"],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not db.parent.exists()


@pytest.mark.slow
def test_a_broken_executor_stops_the_sweep_and_the_record_says_so(smoke, client, monkeypatch):
    from sweepbook.executors.local import LocalExecutor

    def broken(self, spec):
        raise EOFError("the template process died")

    monkeypatch.setattr(LocalExecutor, "start", broken)
    result = run_sweep(TRAIN, ["model=mlp", "seed=1,2"], workers=2, engine="kernel", quiet=True)
    assert result.aborted == "EOFError: the template process died" and not result.ok
    assert [r.status for r in result.results] == ["NOT STARTED", "NOT STARTED"]
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sweepbook.error"] == ("the sweep stopped: EOFError: the template "
                                                   "process died")
    assert parent.data.metrics["jobs_finished"] == 0


@pytest.mark.parametrize("option, says", [
    ("--workers", "argument --workers: '0' is not a whole number of 1 or more"),
    ("--timeout", "argument --timeout: '0' is not a number of seconds above 0")])
def test_workers_and_timeout_must_be_positive(tmp_path, option, says):
    db = tmp_path / "store" / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    done = subprocess.run([SWEEPBOOK, "sweep", TRAIN, "seed=1", option, "0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not db.parent.exists()
