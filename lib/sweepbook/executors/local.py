"""Jobs as local processes, one per job, with two engines:

- `fork`: each job is forked from a warm template process (multiprocessing's fork server,
  preloaded with template.py) and runs the notebook in-process (engine.py). One fresh process
  per job keeps jobs isolated; start-up costs are paid once per process: the template
  outlives a sweep, so a notebook's second sweep starts its first job at once.
- `kernel`: each job is a fresh process that runs papermill's standard engine, a Jupyter
  kernel, exactly as `papermill` on the command line does.

Each job process leads its own process group, so a timeout or Ctrl-C also stops what it
started (a kernel stops by itself once its job is gone: ipykernel watches its parent). A job
dies with its driver (job.py asks the kernel for a parent-death signal).
"""
import atexit
import contextlib
import dataclasses
import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from sweepbook.config import ConfigError
from sweepbook.env import patched_environ
from sweepbook.params import redact_overrides
from sweepbook.executors.base import Executor, JobSpec, Outcome
from sweepbook.executors.job import EXIT_OK, EXIT_PRUNED, run_job
from sweepbook.executors.settings import ENGINES
from sweepbook.tracking.record import PRUNED

TEMPLATE_MODULE = "sweepbook.executors.template"
POOL_ENV, NULL_POOL = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool"  # no pooled connections
STORE_LOCK_ENV = "SWEEPBOOK_STORE_LOCK"  # the template waits on it before its first store query
WARMUP_CONFIG_ENV = "SWEEPBOOK_WARMUP_CONFIG"  # JSON: notebook, config_name, overrides
TEMPLATE_FILES_ENV = "SWEEPBOOK_TEMPLATE_FILES"  # where the template writes its code's files
WARM_UP_WAIT_S = 120.0  # the longest a sweep waits for an earlier sweep's template to be warm
STOP_GRACE_S = 10.0  # a stopped job's time to end its run KILLED and log its files
GPU_COUNT_ENV = "SWEEPBOOK_VISIBLE_GPUS"  # a GPU count that overrides what this machine shows:
#                                           how slots are tested on a machine without GPUs
CUDA_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def visible_gpus() -> List[str]:
    """The GPU ids jobs may be given: $SWEEPBOOK_VISIBLE_GPUS (a count), else
    $CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists (none without a driver)."""
    if os.environ.get(GPU_COUNT_ENV):
        count = os.environ[GPU_COUNT_ENV]
        if not count.isdigit():
            raise ConfigError(f"{GPU_COUNT_ENV}={count!r}: give a number of GPUs (0 or more)")
        return [str(i) for i in range(int(count))]
    if CUDA_DEVICES_ENV in os.environ:
        return [d.strip() for d in os.environ[CUDA_DEVICES_ENV].split(",")
                if d.strip() and d.strip() != "-1"]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    count = sum(line.startswith("GPU ") for line in listed.stdout.splitlines())
    return [str(i) for i in range(count)] if listed.returncode == 0 else []


def gpu_slots(devices: List[str], per_job: int) -> List[str]:
    """The CUDA_VISIBLE_DEVICES value of each worker slot: `per_job` GPUs each, never shared."""
    if per_job == 0 or not devices:
        return []
    if per_job > len(devices):
        raise ConfigError(f"executor.gpus_per_job={per_job}: only {len(devices)} GPUs are "
                         f"visible ({','.join(devices)}); give {len(devices)} or fewer, or 0")
    return [",".join(devices[i:i + per_job])
            for i in range(0, len(devices) - per_job + 1, per_job)]


def _context(engine: str):
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    if engine == "kernel":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([TEMPLATE_MODULE])
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

    def release(self, tracking_uri: str = "") -> None:
        """The store is ready at `tracking_uri` ("" when the sweep will not run)."""
        if not self.file.closed:
            self.file.write(tracking_uri)
            self.file.flush()
            self.file.close()  # closing drops the lock

    def close(self) -> None:
        """Release (with no store, if not done yet) and remove the lock file."""
        self.release()
        os.unlink(self.path)

    def __enter__(self) -> "StoreHandoff":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def handed_over_store(opened_lock) -> str:
    """The template's side: wait for the driver, then read the tracking URI it wrote."""
    fcntl.flock(opened_lock, fcntl.LOCK_SH)
    try:
        return opened_lock.read().strip()
    finally:
        fcntl.flock(opened_lock, fcntl.LOCK_UN)


@dataclasses.dataclass
class Template:
    """The fork engine's warm template process, kept from one sweep to the next in one Python
    process (a notebook's kernel: its second sweep starts its first job at once)."""
    pid: int
    folder: Path  # the notebook's folder: what it imported its targets from
    started_in: Tuple[str, str]  # the cwd and $PYTHONPATH it made its sys.path from
    code_files: str  # where it wrote the files of the code it imported, with their mtimes

    def serves(self, notebook: str) -> bool:
        """Alive, started for a notebook in the same folder, from the same cwd and
        $PYTHONPATH (its sys.path), and none of the code it ran changed since: else its jobs
        would run modules other than those on disk."""
        from multiprocessing import forkserver

        if forkserver._forkserver._forkserver_pid != self.pid or not _alive(self.pid):
            return False
        if Path(notebook).parent != self.folder or _started_in() != self.started_in:
            return False
        files = self._code_files()
        return files is not None and all(_mtime(f) == mtime for f, mtime in files.items())

    def _code_files(self) -> Optional[Dict[str, int]]:
        """What it wrote once warm; waited for while it warms up (an earlier sweep that ran
        no job did not wait): a new template would take longer. None if it died first, or
        hangs (a target whose import blocks)."""
        deadline = time.monotonic() + WARM_UP_WAIT_S
        while _alive(self.pid) and time.monotonic() < deadline:
            try:
                return json.loads(Path(self.code_files).read_text())
            except ValueError:  # not written yet
                time.sleep(0.05)
            except OSError:
                return None
        return None


def _started_in() -> Tuple[str, str]:
    return os.getcwd(), os.environ.get("PYTHONPATH", "")


def _alive(pid: int) -> bool:
    """Running (not reaped here: multiprocessing reaps its fork server itself)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _mtime(file: str) -> Optional[int]:
    try:
        return os.stat(file).st_mtime_ns
    except OSError:
        return None


_template: Optional[Template] = None  # mirrors multiprocessing's own process-wide fork server


def _start_template(notebook: str, config_name: Optional[str], overrides: List[str],
                    handoff: StoreHandoff) -> None:
    global _template
    from multiprocessing import forkserver

    fd, code_files = tempfile.mkstemp(prefix="sweepbook-template-", suffix=".json")
    os.close(fd)
    warm_up = {"notebook": notebook, "config_name": config_name,  # no secrets needed:
               "overrides": redact_overrides(overrides)}  # a warm-up tolerates ***
    with patched_environ({STORE_LOCK_ENV: handoff.path, POOL_ENV: NULL_POOL,
                          WARMUP_CONFIG_ENV: json.dumps(warm_up),
                          TEMPLATE_FILES_ENV: code_files}):
        forkserver.ensure_running()
    atexit.unregister(stop_template)  # registered once, whatever the number of templates
    atexit.register(stop_template)
    _template = Template(forkserver._forkserver._forkserver_pid, Path(notebook).parent,
                         _started_in(), code_files)


def stop_template() -> None:
    """Stop the fork engine's template by its PID, if one runs: the next sweep starts a fresh
    one. Called between sweeps: a job still running would stop too (it dies with its parent,
    job.py), its run ended KILLED."""
    global _template
    from multiprocessing import forkserver

    server = forkserver._forkserver  # private, but the only handle on the template
    if server._forkserver_pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server._forkserver_pid, signal.SIGTERM)
        server._stop()  # reaps it, and lets the next ensure_running() start a new one
    if _template is not None:
        with contextlib.suppress(OSError):
            os.unlink(_template.code_files)
        _template = None


@dataclasses.dataclass
class _Running:
    process: multiprocessing.Process
    spec: JobSpec
    started: float
    reports: Connection  # the job sends its run's id here once its record is finished
    gpus: Optional[str] = None  # its GPU slot (CUDA_VISIBLE_DEVICES), if GPUs are shared out

    def run_id(self) -> Optional[str]:
        """The id the job sent, if it got that far (a killed job sends none)."""
        try:
            return self.reports.recv() if self.reports.poll() else None
        except EOFError:
            return None
        finally:
            self.reports.close()


class LocalExecutor(Executor):
    """Each job a process on this machine (see the module docstring for the engines)."""

    def __init__(self, workers: Optional[int] = None, timeout: Optional[float] = None,
                 engine: str = "fork", gpus_per_job: int = 0):
        super().__init__(workers or default_workers(), timeout)
        self.context = _context(engine)
        self.in_process = engine == "fork"
        self._running: Dict[int, _Running] = {}
        self._handoff: Optional[StoreHandoff] = None
        self._prepared = False
        self.gpus_per_job = gpus_per_job
        self.gpu_slots: List[str] = []

    def use_device(self, device: str) -> None:
        """Share the visible GPUs out in slots when jobs train on `device` auto or cuda (a
        job pinned to cuda:N, or on the CPU, sees what it would see alone): at most one
        worker per slot."""
        if device not in ("auto", "cuda"):
            return
        self.gpu_slots = gpu_slots(visible_gpus(), self.gpus_per_job)
        if self.gpu_slots and self.workers > len(self.gpu_slots):
            print(f"{len(self.gpu_slots)} workers, not {self.workers}: one per GPU slot "
                  f"({' | '.join(self.gpu_slots)})", file=sys.stderr)
            self.workers = len(self.gpu_slots)

    def warm_up(self, notebook: str, overrides: List[str]) -> None:
        """Start the fork engine's template at once: it imports for seconds, while the driver
        reads the notebook (papermill), validates the jobs and creates the store. Not for a
        notebook that is not there: the driver refuses it, and a warm template stays."""
        path = Path(notebook).expanduser().resolve()  # as the driver will find it
        if path.is_file():
            self.prepare(str(path), None, overrides)

    def prepare(self, notebook: str, config_name: Optional[str], overrides: List[str]) -> None:
        """Have a warm template for the fork engine: the one an earlier sweep of this process
        left, when it can serve this notebook (see Template.serves), else a new one that warms
        up (with the sweep's own config; None: the notebook's) while the driver validates the
        jobs and creates the store. Its environment carries the store hand-off lock; this
        process's own is left as it was.

        Bad input found after this leaves the template to finish warming up: it has touched
        no store (the hand-off gives it none).
        """
        if not self.in_process or self._prepared:
            return
        self._prepared = True
        if _template is not None and _template.serves(notebook):
            return
        stop_template()
        self._handoff = StoreHandoff()
        _start_template(notebook, config_name, overrides, self._handoff)

    def store_ready(self, tracking_uri: str) -> None:
        if self._handoff:
            self._handoff.release(tracking_uri)

    def close(self) -> None:
        """Remove the hand-off. The template outlives the sweep, for the next sweep of this
        process (a notebook's kernel); it ends with this process (or `stop_template()`).
        Jobs lead their own process groups: untouched."""
        if self._handoff:
            self._handoff.close()
            self._handoff = None

    @property
    def running(self) -> int:
        return len(self._running)

    def _free_gpus(self) -> Optional[str]:
        taken = {job.gpus for job in self._running.values()}
        return next((slot for slot in self.gpu_slots if slot not in taken), None)

    def start(self, spec: JobSpec) -> None:
        if self.in_process:  # forked from the template: never share its SQLite connections
            spec = dataclasses.replace(spec, env={**spec.env, POOL_ENV: NULL_POOL})
        gpus = self._free_gpus()
        if gpus is not None:
            spec = dataclasses.replace(spec, env={**spec.env, CUDA_DEVICES_ENV: gpus})
        reports, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=run_job, args=(spec, self.in_process, sender),
                                       daemon=False, name=f"sweepbook-job-{spec.index}")
        process.start()
        sender.close()  # the job holds the only sending end: its end is the pipe's end
        self._running[spec.index] = _Running(process, spec, time.monotonic(), reports, gpus)

    @staticmethod
    def _signal(process, signum) -> None:
        try:
            os.killpg(process.pid, signum)  # the job and what it started in its group
        except (ProcessLookupError, PermissionError):
            if process.exitcode is None:
                process.kill()

    def _stop(self, processes) -> None:
        """SIGTERM: each job ends its run KILLED and logs its files itself; SIGKILL for any
        still there after STOP_GRACE_S."""
        for process in processes:
            self._signal(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.exitcode is None:
                self._signal(process, signal.SIGKILL)
                process.join(5.0)

    def _finish(self, index: int, status: Optional[str] = None,
                reason: Optional[str] = None) -> Outcome:
        job = self._running.pop(index)
        if job.process.exitcode is None:
            self._stop([job.process])
        if status is None:  # it ended by itself: its exit code tells how
            status = {EXIT_OK: "FINISHED", EXIT_PRUNED: PRUNED}.get(job.process.exitcode,
                                                                   "FAILED")
            if job.process.exitcode < 0:
                killer = signal.Signals(-job.process.exitcode).name
                reason = f"the job process was killed by {killer}"
        notebook = job.spec.output if Path(job.spec.output).is_file() else None
        return Outcome(job.spec, status, reason, job.run_id(), time.monotonic() - job.started,
                       notebook)

    def poll(self, seconds: float = 0.2) -> List[Outcome]:
        if not self._running:
            return []
        wait([job.process.sentinel for job in self._running.values()], seconds)
        now, finished = time.monotonic(), []
        for index, job in list(self._running.items()):
            if job.process.exitcode is not None:
                finished.append(self._finish(index))
            elif self.timeout is not None and now - job.started > self.timeout:
                finished.append(self._finish(index, "FAILED",
                                             f"timed out after {now - job.started:.1f} s"))
        return finished

    def cancel(self, reason: str) -> List[Outcome]:
        """Jobs that already ended keep their own outcome; the others are stopped at once."""
        ended = [index for index, job in self._running.items() if job.process.exitcode is not None]
        outcomes = [self._finish(index) for index in ended]
        self._stop([job.process for job in self._running.values()])
        return outcomes + [self._finish(index, "KILLED", reason) for index in list(self._running)]
