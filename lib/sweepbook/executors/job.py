"""One job: the one papermill call that executes a notebook, and the job's own record.

The job process runs this from start to end. After the notebook, the job finds the run its
notebook opened (by the launch id in its tags) and logs its executed notebook and its log on
it; a notebook that failed gets its reason tagged and its run ended FAILED, and one that never
opened a run gets a FAILED placeholder run. A job stopped by a signal (its driver stopping it,
or its driver dying) ends its run KILLED the same way. The driver is not needed for any of it.
"""
import ctypes
import functools
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from sweepbook.config import TRACKING_URI_ENV
from sweepbook.env import signal_handlers
from sweepbook.executors.base import JobSpec
from sweepbook.tracking.record import (ERROR_TAG, LAUNCH_TAG, LOGS_FOLDER,
                                       NOTEBOOK_HTML_SUFFIX, PRUNED_TAG)

KERNEL = "python3"
EXIT_OK, EXIT_NOTEBOOK_FAILED, EXIT_KERNEL_FAILED, EXIT_NOT_RECORDED, EXIT_STOPPED = 0, 1, 3, 4, 5
EXIT_PRUNED = 6  # a search's trial, stopped by its pruner: its run ended KILLED, tagged pruned
NO_RUN_REASON = "the notebook ended without opening an MLflow run"
# Why a job was stopped, by the signal it got: the driver stops jobs with SIGTERM (and records
# its own reason, a timeout or Ctrl-C); the kernel sends SIGHUP when the job's parent dies
# (PR_SET_PDEATHSIG), that is when its driver died (with the fork engine, the template dies
# with the driver).
RUN_STOP_REASONS = {signal.SIGINT: "stopped by Ctrl-C", signal.SIGTERM: "stopped by SIGTERM",
                    signal.SIGHUP: "stopped by SIGHUP"}  # `sweepbook run` in a terminal
STOP_REASONS = {signal.SIGTERM: "stopped by its sweep",
                signal.SIGHUP: "its sweep's driver died; run the same command again to finish "
                               "the sweep"}
PR_SET_PDEATHSIG = 1


class JobStopped(KeyboardInterrupt):
    """Raised in the job where it stands when it gets a stop signal: the notebook's start_run
    ends its run KILLED (as for Ctrl-C), and the job still records itself."""


def execute(notebook: str, output: str, parameters: dict, in_process: bool,
            progress: bool = False, echo: bool = True) -> None:
    """papermill, in the notebook's folder: a Jupyter kernel, or this process (`in_process`).
    With `echo`, what the cells print also goes to this process's output (a job's log).

    The kernel talks over Unix sockets in a private temporary folder: over TCP, ipykernel logs
    "Kernel is running over TCP without encryption" into every job's output, and kernels
    started side by side can collide on ports."""
    import tempfile

    import papermill
    from traitlets.config import Config

    from sweepbook.executors.engine import ENGINE_NAME, register

    if in_process:
        register()
    with tempfile.TemporaryDirectory(prefix="sweepbook-kernel-") as sockets:
        papermill.execute_notebook(
            notebook, output, parameters=parameters, kernel_name=KERNEL,
            engine_name=ENGINE_NAME if in_process else None,
            cwd=os.path.dirname(notebook), progress_bar=progress,
            stdout_file=sys.stdout if echo else None, stderr_file=sys.stderr if echo else None,
            config=Config(KernelManager={"transport": "ipc",
                                         "ip": os.path.join(sockets, "kernel")}),
        )


def execute_with_retry(spec: JobSpec, in_process: bool,
                       run=execute) -> Tuple[int, Optional[str]]:
    """Execute the job's notebook; a kernel that fails to start gets `kernel_start_retries`
    more tries. Returns the job's exit code and, when it failed, why."""
    from nbclient.exceptions import DeadKernelError
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
        except DeadKernelError as error:  # mid-run: its run may exist, never run it twice
            return EXIT_KERNEL_FAILED, f"the kernel died: {error}"[:5000]
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start
            reason = f"kernel failure: {error!r}"[:5000]
            print(f"{reason} (attempt {attempt + 1})", file=sys.stderr)
        except Exception as error:  # papermill could not read or write a notebook, ...
            return EXIT_NOTEBOOK_FAILED, f"{type(error).__name__}: {error}"[:5000]
    return EXIT_KERNEL_FAILED, reason


@functools.lru_cache(maxsize=None)
def _html_exporter():
    """nbconvert's exporter with the lab template (the notebook as JupyterLab shows it, images
    inline): made once per process, and in the fork engine's template before jobs fork
    (warmup), so that a job pays for rendering only, not for loading templates."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


def notebook_html(notebook) -> str:
    """A notebook (an nbformat node) as one self-contained HTML page."""
    return _html_exporter().from_notebook_node(notebook)[0]


def render_html(notebook: str, folder: str) -> Optional[str]:
    """The executed `notebook` rendered into `folder` as <stem>.html: the MLflow UI shows .html
    artifacts, not .ipynb ones. Made from the file that is logged, so it holds what it holds
    (secrets redacted). None when it cannot be rendered, said in the job's log: the run keeps
    its notebook all the same."""
    import nbformat

    source = Path(notebook)
    if not source.is_file():
        return None
    rendered = Path(folder) / f"{source.stem}{NOTEBOOK_HTML_SUFFIX}"
    try:
        rendered.write_text(notebook_html(nbformat.read(source, as_version=4)),
                            encoding="utf-8")
    except Exception as error:  # a notebook papermill left half-written, a template fault,
        print(f"{source.name} is logged without its HTML rendering: "  # a full disk
              f"{type(error).__name__}: {error}", file=sys.stderr)
        return None
    return str(rendered)


def _log_files(client, run_id: str, spec: JobSpec) -> Optional[str]:
    """Log the executed notebook, then its HTML rendering (a stopped job's grace time goes to
    the notebook first), then the job's log, on its run; what could not be logged."""
    import tempfile

    problem = _log_file(client, run_id, spec.output)
    if problem is None and spec.output:
        with tempfile.TemporaryDirectory(prefix="sweepbook-html-") as folder:
            problem = _log_file(client, run_id, render_html(spec.output, folder))
    return problem or _log_file(client, run_id, spec.log, LOGS_FOLDER)


def _log_file(client, run_id: str, path: Optional[str],
              folder: Optional[str] = None) -> Optional[str]:
    sys.stdout.flush()
    sys.stderr.flush()
    if path and Path(path).is_file():
        try:
            client.log_artifact(run_id, path, folder)
        except Exception as error:  # disk full, permissions: the record must say so
            return f"its record is incomplete: {Path(path).name} was not logged: {error}"
    return None


class Recorded(NamedTuple):
    run_id: str
    reason: Optional[str]  # why the job failed (None when its run stands FINISHED or pruned)
    pruned: bool = False  # a search's pruner stopped it: its run ended KILLED by itself


def record_own_run(spec: JobSpec, reason: Optional[str], status: str = "FAILED") -> Recorded:
    """Finish this job's record: its notebook and log, and if it did not finish, its reason
    and `status` (FAILED, or KILLED for a stopped job). A run whose files could not be logged
    is FAILED too: its record is incomplete, and resuming the sweep runs it again. A pruned
    trial's run (start_run ended it KILLED, tagged pruned) keeps its status: the notebook's
    error is the pruner's stop, not a failure."""
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
    pruned = PRUNED_TAG in run.data.tags and run.info.status == "KILLED" and status != "KILLED"
    reason = _log_files(client, run_id, spec) if reason is None or pruned else reason
    if reason:
        if ERROR_TAG not in run.data.tags or status == "KILLED":
            client.set_tag(run_id, ERROR_TAG, reason)
        client.set_terminated(run_id, status)
        _log_files(client, run_id, spec)  # the log now ends with the reason
        pruned = False
    return Recorded(run_id, reason, pruned)


def _redirect_output(path: str) -> None:
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        stream.flush()
        os.dup2(log, fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)


class _StopSignals:
    """The signals in `reasons` stop the job where it stands (JobStopped), once: after the
    first, they are ignored while it records itself (its driver's SIGKILL ends a hang). The
    previous handlers are put back after."""

    def __init__(self, reasons: Dict[int, str]):
        self.reasons = reasons
        self.signum: Optional[int] = None
        self._handlers = signal_handlers(self._stop, reasons)

    @property
    def reason(self) -> Optional[str]:
        return self.reasons.get(self.signum)

    def ignore(self) -> None:
        for signum in self.reasons:
            signal.signal(signum, signal.SIG_IGN)

    def _stop(self, signum, frame) -> None:
        self.ignore()
        self.signum = signum
        raise JobStopped(self.reason)

    def __enter__(self) -> "_StopSignals":
        self._handlers.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._handlers.__exit__(*exc)


def _die_with_parent() -> None:
    """Ask the kernel for SIGHUP when this process's parent dies (the driver, or the fork
    engine's template, which exits with the driver), so that no job outlives its sweep; and
    stop now if the driver is already gone."""
    import multiprocessing
    from multiprocessing import forkserver

    # A forked job inherits the fork server's keep-alive pipe, which would keep the template
    # alive after its driver dies (jobs start no processes through it): let go of it.
    server = forkserver._forkserver  # private, as in local.py
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    driver = multiprocessing.parent_process()
    try:
        if driver is not None:
            os.kill(driver.pid, 0)
    except ProcessLookupError:
        os.kill(os.getpid(), signal.SIGHUP)


def run_job(spec: JobSpec, in_process: bool, reports=None) -> None:
    """The body of a job process; its exit code says how the notebook ended, and the run's id
    goes back through `reports` (a pipe's sending end) once the record is finished."""
    os.setpgid(0, 0)
    sys.modules.setdefault("rfc3987_syntax", None)  # this process's own: see cli._skip_iri_grammar
    reasons = {**STOP_REASONS, **({signal.SIGHUP: spec.orphaned} if spec.orphaned else {})}
    with _StopSignals(reasons) as stop:
        os.environ.clear()
        os.environ.update(spec.env)
        _redirect_output(spec.log)
        sys.path.insert(0, os.path.dirname(spec.notebook))  # as a kernel started there has it
        try:
            _die_with_parent()
            import torch

            torch.set_num_threads(spec.threads)
            code, reason = execute_with_retry(spec, in_process)
        except JobStopped:  # between cells (inside one, the cell fails and papermill says so)
            code, reason = EXIT_STOPPED, stop.reason
        if stop.reason:
            code, reason = EXIT_STOPPED, stop.reason
            print(f"job stopped: {reason}", file=sys.stderr)
        stop.ignore()  # recording takes a moment
        try:
            run_id, reason, pruned = record_own_run(spec, reason,
                                                    "KILLED" if stop.reason else "FAILED")
        except Exception as error:  # the store is out of reach: the driver records what it can
            print(f"could not record the job's run: {error!r}", file=sys.stderr)
            code = code or EXIT_NOT_RECORDED
        else:
            code = EXIT_PRUNED if pruned else code
            try:
                if reports is not None:
                    reports.send(run_id)
            except OSError:  # the driver is gone: the record is finished all the same
                pass
    sys.exit(code or (EXIT_NOTEBOOK_FAILED if reason else EXIT_OK))


@dataclass
class Execution:
    notebook: Path  # the executed copy, outputs (and any error banner) included
    run: object  # the MLflow run the notebook recorded (or its FAILED placeholder)
    error: Optional[str] = None  # why it failed
    stopped_by: Optional[int] = None  # the signal that stopped it (Ctrl-C, SIGTERM, SIGHUP)


def run_notebook(notebook: Path, cfg, overrides: List[str], output: Optional[Path] = None,
                 progress: bool = True, tags: Optional[Dict[str, str]] = None) -> Execution:
    """Execute `notebook` once, in a kernel in its own folder, with `overrides` (already
    validated into `cfg`) and `tags` for its run, and finish its record as a sweep's job does.
    The notebook receives the overrides redacted, their secrets through a private file
    (secrets.passed)."""
    from mlflow.tracking import MlflowClient

    from sweepbook.tracking import secrets
    from sweepbook.config import composition
    from sweepbook.tracking.record import run_name
    from sweepbook.tracking.store import prepare_store

    launch_id = uuid.uuid4().hex
    default = Path(cfg.paths.output_dir) / "notebooks" / f"{notebook.stem}-{launch_id[:8]}.ipynb"
    output = Path(output or default).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with secrets.passed(overrides) as shown, _StopSignals(RUN_STOP_REASONS) as stop:
        spec = JobSpec(index=0, name=run_name(cfg, overrides, composition(cfg).choices),
                       notebook=str(notebook), output=str(output), log="",
                       parameters={"overrides": shown,
                                   "tags": {**(tags or {}), LAUNCH_TAG: launch_id}},
                       env={TRACKING_URI_ENV: cfg.tracking.uri},
                       experiment_id=prepare_store(cfg))
        try:
            run = functools.partial(execute, progress=progress, echo=False)
            _, reason = execute_with_retry(spec, False, run)
        except JobStopped:  # Ctrl-C: the kernel is shut down, its run ends KILLED here
            reason = stop.reason
        stop.ignore()
        run_id, reason, _ = record_own_run(spec, stop.reason or reason,
                                           "KILLED" if stop.reason else "FAILED")
    return Execution(output, MlflowClient(cfg.tracking.uri).get_run(run_id), reason,
                     stop.signum)
