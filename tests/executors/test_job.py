import os

import pytest
from papermill.exceptions import PapermillExecutionError

from sweepbook.workers import (EXIT_KERNEL_FAILED, EXIT_NOTEBOOK_FAILED, EXIT_OK, JobProcesses,
                               JobSpec, StoreHandoff, execute_with_retry, handed_over_store)


def spec(**changes):
    return JobSpec(index=0, notebook="n.ipynb", output="o.ipynb", log="o.log", parameters={},
                   engine="kernel", threads=1, env={}, **changes)


class Flaky:
    """An execute() whose kernel fails to start `failures` times."""

    def __init__(self, failures, then=None):
        self.failures, self.then, self.calls = failures, then, 0

    def __call__(self, job):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("Kernel died before replying to kernel_info")
        if self.then:
            raise self.then


def test_a_kernel_that_fails_to_start_is_retried_once():
    flaky = Flaky(failures=1)
    assert execute_with_retry(spec(), flaky) == EXIT_OK and flaky.calls == 2
    broken = Flaky(failures=5)
    assert execute_with_retry(spec(), broken) == EXIT_KERNEL_FAILED and broken.calls == 2


def test_a_failing_notebook_is_not_retried():
    error = PapermillExecutionError(1, 1, "cell", "ValueError", "bad lr", [])
    failing = Flaky(failures=0, then=error)
    assert execute_with_retry(spec(), failing) == EXIT_NOTEBOOK_FAILED and failing.calls == 1


def test_unknown_engine_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'gpu'; valid: fork, kernel"):
        JobProcesses("gpu", workers=1)


def test_store_handoff_passes_the_uri_once_released():
    with StoreHandoff() as handoff:
        reader = open(handoff.path)
        handoff.release("sqlite:////x/mlflow.db")
        assert handed_over_store(reader) == "sqlite:////x/mlflow.db"
        path = handoff.path
    assert not os.path.exists(path) and "SWEEPBOOK_STORE_LOCK" not in os.environ
