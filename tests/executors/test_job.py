"""One job: its notebook run with retries for kernel starts, and the record it finishes itself."""
import re
from pathlib import Path

import pytest
from papermill.exceptions import PapermillExecutionError

from sweepbook.executors.base import JobSpec
from sweepbook.executors.job import (EXIT_KERNEL_FAILED, EXIT_NOTEBOOK_FAILED, EXIT_OK,
                                     NO_RUN_REASON, execute_with_retry, record_own_run)
from sweepbook.tracking.record import LAUNCH_TAG


def spec(tmp_path=None, **changes):
    folder = tmp_path or "."
    values = dict(index=0, name="job-0", notebook="n.ipynb", output=f"{folder}/o.ipynb",
                  log=f"{folder}/o.log", parameters={"tags": {LAUNCH_TAG: "launch-1"}},
                  env={}, experiment_id="0")
    return JobSpec(**{**values, **changes})


class Flaky:
    """An execute() whose kernel fails to start `failures` times."""

    def __init__(self, failures, then=None):
        self.failures, self.then, self.calls = failures, then, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("Kernel died before replying to kernel_info")
        if self.then:
            raise self.then


def test_a_kernel_that_fails_to_start_is_retried_once():
    flaky = Flaky(failures=1)
    assert execute_with_retry(spec(), False, flaky) == (EXIT_OK, None) and flaky.calls == 2
    broken = Flaky(failures=5)
    code, reason = execute_with_retry(spec(), False, broken)
    assert code == EXIT_KERNEL_FAILED and broken.calls == 2
    assert reason.startswith("kernel failure: RuntimeError('Kernel died")


def test_a_kernel_that_dies_mid_run_is_not_run_twice():
    """Its notebook may have opened a run already: a retry would record a duplicate."""
    from nbclient.exceptions import DeadKernelError

    dying = Flaky(failures=0, then=DeadKernelError("Kernel died"))
    assert execute_with_retry(spec(), False, dying) == (EXIT_KERNEL_FAILED,
                                                        "the kernel died: Kernel died")
    assert dying.calls == 1


def test_a_notebook_papermill_cannot_write_fails_with_the_reason():
    unwritable = Flaky(failures=0, then=PermissionError(13, "Permission denied"))
    code, reason = execute_with_retry(spec(), False, unwritable)
    assert code == EXIT_NOTEBOOK_FAILED and unwritable.calls == 1
    assert reason == "PermissionError: [Errno 13] Permission denied"


def test_a_failing_notebook_is_not_retried_and_says_why():
    error = PapermillExecutionError(1, 1, "cell", "ValueError", "bad lr", [])
    failing = Flaky(failures=0, then=error)
    assert execute_with_retry(spec(), False, failing) == (EXIT_NOTEBOOK_FAILED,
                                                          "ValueError: bad lr")
    assert failing.calls == 1


@pytest.fixture
def job(tmp_path, store, client):
    """A job of this test's store whose executed notebook and log exist."""
    (tmp_path / "o.ipynb").write_text("{}")
    (tmp_path / "o.log").write_text("epoch 1\n")
    experiment_id = client.create_experiment("jobs", (tmp_path / "artifacts").as_uri())
    return spec(tmp_path, env={"MLFLOW_TRACKING_URI": store}, experiment_id=experiment_id)


def test_a_job_logs_its_notebook_and_log_on_its_own_run(job, client):
    run_id = client.create_run(job.experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    assert record_own_run(job, None) == (run_id, None, False)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["logs", "o.ipynb"]
    assert [a.path for a in client.list_artifacts(run_id, "logs")] == ["logs/o.log"]


def test_the_notebook_is_also_logged_as_html_beside_it(job, client, tmp_path):
    """The MLflow UI shows .html artifacts, not .ipynb: the rendering is what a user reads."""
    import nbformat
    from nbformat import v4

    nbformat.write(v4.new_notebook(cells=[v4.new_markdown_cell("# A job notebook"),
                                          v4.new_code_cell("print(6 * 7)", outputs=[
                                              v4.new_output("stream", text="42 printed\n")])]),
                   job.output)
    run_id = client.create_run(job.experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    assert record_own_run(job, None) == (run_id, None, False)
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["logs", "o.html",
                                                                     "o.ipynb"]
    page = Path(client.download_artifacts(run_id, "o.html", str(tmp_path))).read_text()
    assert page.startswith("<!DOCTYPE html>") and "42 printed" in page
    assert re.search(r"<h1[^>]*>A job notebook", page)


def test_a_notebook_that_cannot_be_rendered_is_logged_all_the_same(job, client, capsys):
    """A rendering fault costs the run its HTML only: said in the job's log."""
    run_id = client.create_run(job.experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    assert record_own_run(job, None) == (run_id, None, False)  # its o.ipynb holds "{}"
    assert client.get_run(run_id).info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["logs", "o.ipynb"]
    assert "o.ipynb is logged without its HTML rendering: " in capsys.readouterr().err


def test_a_failed_notebook_fails_its_run_with_the_reason(job, client):
    run_id = client.create_run(job.experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    client.set_terminated(run_id, "FINISHED")  # its run ended, then a later cell failed
    assert record_own_run(job, "ValueError: late") == (run_id, "ValueError: late", False)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["sweepbook.error"] == "ValueError: late"


def test_a_notebook_that_opened_no_run_gets_a_failed_placeholder(job, client):
    parent = client.create_run(job.experiment_id).info.run_id
    job.parameters["parent_run_id"] = parent
    run_id, reason, _ = record_own_run(job, None)
    assert reason == NO_RUN_REASON
    [run] = [r for r in client.search_runs([job.experiment_id]) if r.info.run_id != parent]
    assert run.info.run_id == run_id
    assert (run.info.status, run.info.run_name) == ("FAILED", "job-0")
    assert run.data.tags["sweepbook.error"] == NO_RUN_REASON
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert "o.ipynb" in [a.path for a in client.list_artifacts(run.info.run_id)]


def test_a_run_whose_files_cannot_be_logged_is_failed_not_finished(job, client, tmp_path):
    """Its record would lack the notebook: FAILED with the reason, so resuming reruns it."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the artifact folder should be")
    experiment_id = client.create_experiment("blocked", (blocker / "artifacts").as_uri())
    run_id = client.create_run(experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    client.set_terminated(run_id, "FINISHED")
    returned, reason, _ = record_own_run(job, None)
    assert returned == run_id and reason.startswith("its record is incomplete: o.ipynb was not "
                                                    "logged: ")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["sweepbook.error"] == reason


def test_a_stopped_job_ends_its_run_killed_with_the_reason(job, client):
    run_id = client.create_run(job.experiment_id, tags={LAUNCH_TAG: "launch-1"}).info.run_id
    record_own_run(job, "stopped by its sweep", "KILLED")
    run = client.get_run(run_id)
    assert (run.info.status, run.data.tags["sweepbook.error"]) == ("KILLED",
                                                                  "stopped by its sweep")
    assert "o.ipynb" in [a.path for a in client.list_artifacts(run_id)]
