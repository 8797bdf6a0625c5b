"""One job: the one papermill call that executes a notebook, and the job's own record.

The job process runs this from start to end. After the notebook, the job finds the run its
notebook opened (by the launch id in its tags) and logs its executed notebook and its log on
it; a notebook that failed gets its reason tagged and its run ended FAILED, and one that never
opened a run gets a FAILED placeholder run. The driver is not needed for any of it.
"""
import functools
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from sweepbook.config import TRACKING_URI_ENV
from sweepbook.executors.base import JobSpec
from sweepbook.tracking.record import ERROR_TAG, LAUNCH_TAG, LOGS_FOLDER

KERNEL = "python3"
EXIT_OK, EXIT_NOTEBOOK_FAILED, EXIT_KERNEL_FAILED, EXIT_NOT_RECORDED = 0, 1, 3, 4
NO_RUN_REASON = "the notebook ended without opening an MLflow run"


def execute(notebook: str, output: str, parameters: dict, in_process: bool,
            progress: bool = False) -> None:
    """papermill, in the notebook's folder: a Jupyter kernel, or this process (`in_process`)."""
    import papermill

    from sweepbook.executors.engine import ENGINE_NAME, register

    if in_process:
        register()
    papermill.execute_notebook(
        notebook, output, parameters=parameters, kernel_name=KERNEL,
        engine_name=ENGINE_NAME if in_process else None,
        cwd=os.path.dirname(notebook), progress_bar=progress,
    )


def execute_with_retry(spec: JobSpec, in_process: bool,
                       run=execute) -> Tuple[int, Optional[str]]:
    """Execute the job's notebook; a kernel that fails to start gets `kernel_start_retries`
    more tries. Returns the job's exit code and, when it failed, why."""
    from papermill.exceptions import PapermillExecutionError

    reason = None
    for attempt in range(spec.kernel_start_retries + 1):
        try:
            run(spec.notebook, spec.output, spec.parameters, in_process)
            return EXIT_OK, None
        except PapermillExecutionError as error:
            reason = f"{error.ename}: {error.evalue}"[:5000]
            print(f"notebook failed: {reason}", file=sys.stderr)
            return EXIT_NOTEBOOK_FAILED, reason
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start or died
            reason = f"kernel failure: {error!r}"[:5000]
            print(f"{reason} (attempt {attempt + 1})", file=sys.stderr)
    return EXIT_KERNEL_FAILED, reason


def record_own_run(spec: JobSpec, reason: Optional[str]) -> Tuple[str, Optional[str]]:
    """Finish this job's record: its reason and status if it failed, its notebook and log.

    Returns the run's id and why the job failed (None when its run stands FINISHED).
    """
    from mlflow.tracking import MlflowClient

    from sweepbook.tracking.store import create_placeholder, find_launched_run

    client = MlflowClient(spec.env[TRACKING_URI_ENV])
    run = find_launched_run(client, spec.launch_id)
    if run is None:
        run = create_placeholder(client, spec.experiment_id, spec.name,
                                 dict(spec.parameters.get("tags") or {}),
                                 spec.parameters.get("parent_run_id"))
        reason = reason or NO_RUN_REASON
    run_id = run.info.run_id
    if reason:
        if ERROR_TAG not in run.data.tags:
            client.set_tag(run_id, ERROR_TAG, reason)
        client.set_terminated(run_id, "FAILED")
    sys.stdout.flush()
    sys.stderr.flush()
    for path, folder in ((spec.output, None), (spec.log, LOGS_FOLDER)):
        if path and Path(path).is_file():
            client.log_artifact(run_id, path, folder)
    return run_id, reason


def _redirect_output(path: str) -> None:
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        stream.flush()
        os.dup2(log, fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)


def run_job(spec: JobSpec, in_process: bool, reports=None) -> None:
    """The body of a job process; its exit code says how the notebook ended, and the run's id
    goes back through `reports` (a pipe's sending end) once the record is finished."""
    os.setpgid(0, 0)
    os.environ.clear()
    os.environ.update(spec.env)
    _redirect_output(spec.log)
    sys.path.insert(0, os.path.dirname(spec.notebook))  # as a kernel started there has it
    import torch

    torch.set_num_threads(spec.threads)
    code, reason = execute_with_retry(spec, in_process)
    try:
        run_id, reason = record_own_run(spec, reason)
        if reports is not None:
            reports.send(run_id)
    except Exception as error:  # the store is out of reach: the driver records what it can
        print(f"could not record the job's run: {error!r}", file=sys.stderr)
        code = code or EXIT_NOT_RECORDED
    sys.exit(code or (EXIT_NOTEBOOK_FAILED if reason else EXIT_OK))


@dataclass
class Execution:
    notebook: Path  # the executed copy, outputs (and any error banner) included
    run: object  # the MLflow run the notebook recorded (or its FAILED placeholder)
    error: Optional[str] = None  # why it failed


def run_notebook(notebook: Path, cfg, overrides: List[str], output: Optional[Path] = None,
                 progress: bool = True) -> Execution:
    """Execute `notebook` once, in a kernel in its own folder, with `overrides` (already
    validated into `cfg`), and finish its record as a sweep's job does."""
    from mlflow.tracking import MlflowClient

    from sweepbook.config import composition
    from sweepbook.tracking.record import run_name
    from sweepbook.tracking.store import prepare_store

    launch_id = uuid.uuid4().hex
    default = Path(cfg.paths.output_dir) / "notebooks" / f"{notebook.stem}-{launch_id[:8]}.ipynb"
    output = Path(output or default).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    spec = JobSpec(index=0, name=run_name(cfg, overrides, composition(cfg).choices),
                   notebook=str(notebook), output=str(output), log="",
                   parameters={"overrides": overrides, "tags": {LAUNCH_TAG: launch_id}},
                   env={TRACKING_URI_ENV: cfg.tracking.uri},
                   experiment_id=prepare_store(cfg))
    _, reason = execute_with_retry(spec, False, functools.partial(execute, progress=progress))
    run_id, reason = record_own_run(spec, reason)
    return Execution(output, MlflowClient(cfg.tracking.uri).get_run(run_id), reason)
