"""Job processes of a sweep, behind one interface for both engines.

- `fork`: each job is forked from a warm template process (multiprocessing's fork server,
  preloaded with sweepbook.warmup) and runs the notebook in-process (engine.py). One fresh
  process per job keeps jobs isolated; start-up costs are paid once per sweep.
- `kernel`: each job is a fresh process that runs papermill's standard engine, a Jupyter
  kernel, exactly as `papermill` on the command line does.

Each job process leads its own process group, so a timeout or Ctrl-C also stops its kernel.
"""
import fcntl
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Dict, List, Optional, Tuple

ENGINES = ("fork", "kernel")
WARMUP_MODULE = "sweepbook.warmup"
STORE_LOCK_ENV = "SWEEPBOOK_STORE_LOCK"  # the template waits on it before its first store query
EXIT_OK, EXIT_NOTEBOOK_FAILED, EXIT_KERNEL_FAILED = 0, 1, 3


@dataclass
class JobSpec:
    index: int
    notebook: str  # the notebook to execute
    output: str  # the executed copy
    log: str  # the job process's own stdout and stderr
    parameters: Dict  # papermill parameters
    engine: str  # one of ENGINES
    threads: int  # torch threads for this job (cores shared among workers)
    env: Dict[str, str]  # the driver's environment at submission
    kernel_start_retries: int = 1


def _redirect_output(path: str) -> None:
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        stream.flush()
        os.dup2(log, fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)


def _execute(spec: JobSpec) -> None:
    import papermill

    from sweepbook.engine import ENGINE_NAME, register

    register()
    papermill.execute_notebook(
        spec.notebook, spec.output, parameters=spec.parameters,
        engine_name=ENGINE_NAME if spec.engine == "fork" else None,
        kernel_name="python3", cwd=os.path.dirname(spec.notebook), progress_bar=False,
    )


def execute_with_retry(spec: JobSpec, execute=_execute) -> int:
    """Execute the notebook; a kernel that fails to start gets `kernel_start_retries` more tries.

    Returns the job's exit code.
    """
    from papermill.exceptions import PapermillExecutionError

    for attempt in range(spec.kernel_start_retries + 1):
        try:
            execute(spec)
            return EXIT_OK
        except PapermillExecutionError as error:
            print(f"notebook failed: {error.ename}: {error.evalue}", file=sys.stderr)
            return EXIT_NOTEBOOK_FAILED
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start or died
            print(f"kernel failure (attempt {attempt + 1}): {error!r}", file=sys.stderr)
    return EXIT_KERNEL_FAILED


def run_job(spec: JobSpec) -> None:
    """The body of a job process; its exit code says how the notebook ended."""
    os.setpgid(0, 0)
    os.environ.clear()
    os.environ.update(spec.env)
    _redirect_output(spec.log)
    import torch

    torch.set_num_threads(spec.threads)
    sys.exit(execute_with_retry(spec))


def _context(engine: str):
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "kernel":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WARMUP_MODULE])
    return context


class StoreHandoff:
    """Lets the fork server warm up while the driver validates and creates the store.

    The template imports for seconds, then queries the store once; it must not open a fresh
    SQLite store while the driver is creating it. The driver holds an exclusive lock on a
    temporary file from before the template starts until the store exists, then writes the
    tracking URI into the file and lets go; the template reads it under a shared lock.
    """

    def __init__(self):
        fd, self.path = tempfile.mkstemp(prefix="sweepbook-store-", suffix=".lock")
        self.file = os.fdopen(fd, "w")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        os.environ[STORE_LOCK_ENV] = self.path

    def release(self, tracking_uri: str = "") -> None:
        """The store is ready at `tracking_uri` ("" when the sweep will not run)."""
        if not self.file.closed:
            self.file.write(tracking_uri)
            self.file.flush()
            self.file.close()  # closing drops the lock

    def __enter__(self) -> "StoreHandoff":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        os.environ.pop(STORE_LOCK_ENV, None)
        os.unlink(self.path)


def handed_over_store(opened_lock) -> str:
    """The template's side: wait for the driver, then read the tracking URI it wrote."""
    fcntl.flock(opened_lock, fcntl.LOCK_SH)
    try:
        return opened_lock.read().strip()
    finally:
        fcntl.flock(opened_lock, fcntl.LOCK_UN)


@dataclass
class Finished:
    spec: JobSpec
    exitcode: Optional[int]
    seconds: float
    timed_out: bool = False
    killed: bool = False


class JobProcesses:
    """Runs job specs in at most `workers` processes at once, each within `timeout` seconds."""

    def __init__(self, engine: str, workers: int, timeout: Optional[float] = None):
        self.context = _context(engine)
        self.workers = workers
        self.timeout = timeout
        self.running: Dict[int, Tuple[multiprocessing.Process, JobSpec, float]] = {}

    def warm_up(self) -> None:
        """Start the fork engine's template process now; it warms up while the driver works."""
        if self.context.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def has_room(self) -> bool:
        return len(self.running) < self.workers

    def start(self, spec: JobSpec) -> None:
        process = self.context.Process(target=run_job, args=(spec,), daemon=False,
                                       name=f"sweepbook-job-{spec.index}")
        process.start()
        self.running[spec.index] = (process, spec, time.monotonic())

    def _stop(self, process) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except (ProcessLookupError, PermissionError):
                process.kill()
            process.join(2.0)
            if process.exitcode is not None:
                return

    def _finish(self, index: int, **flags) -> Finished:
        process, spec, started = self.running.pop(index)
        if process.exitcode is None:
            self._stop(process)
        return Finished(spec, process.exitcode, time.monotonic() - started, **flags)

    def poll(self, seconds: float = 0.2) -> List[Finished]:
        """Jobs that ended (or ran out of time) within `seconds`."""
        if not self.running:
            return []
        wait([process.sentinel for process, _, _ in self.running.values()], seconds)
        now, finished = time.monotonic(), []
        for index, (process, _, started) in list(self.running.items()):
            if process.exitcode is not None:
                finished.append(self._finish(index))
            elif self.timeout is not None and now - started > self.timeout:
                finished.append(self._finish(index, timed_out=True))
        return finished

    def kill_all(self) -> List[Finished]:
        return [self._finish(index, killed=True) for index in list(self.running)]
