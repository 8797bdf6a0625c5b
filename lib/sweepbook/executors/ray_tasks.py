"""Jobs as Ray tasks, on a Ray started for the sweep (bound to 127.0.0.1, stopped after) or
on a running cluster (`executor.address=auto|HOST:PORT`).

Nothing is assumed shared between the driver and the nodes: the project (conf/, notebooks/,
the user's modules) travels as the tasks' working_dir, a job's secret overrides travel with
its task into a 0600 file on its node, and the job records itself, its executed notebook and
log included, in the tracking store, which must be reachable from every node: a cluster of
more than one node needs a tracking server (`sweepbook server start`, `tracking=server`).

On its node, a task runs the job in a child process forked from the warmed-up Ray worker, as
the local fork engine does (job.run_job), so a stopped task (Ctrl-C, SIGTERM, a timeout: ray.cancel) stops its job,
which ends its run KILLED; a lost node fails its jobs with the reason, and running the same
command again runs them.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

from sweepbook.config import (SECRETS_ENV, TRACKING_URI_ENV, ConfigError, project_root,
                              read_secrets)
from sweepbook.env import patched_environ, preserved_environ
from sweepbook.executors.base import Executor, JobSpec, Outcome
from sweepbook.executors.local import NULL_POOL, POOL_ENV
from sweepbook.params import redact_uri
from sweepbook.tracking.location import sqlite_file
from sweepbook.tracking.trial import TRIAL_ENV
from sweepbook.tracking.record import PRUNED, WORKER_ENV

STOP_GRACE_S = 10.0  # a cancelled job's time to end its run KILLED
LOOPBACK = "127.0.0.1"
# Left alone, a local Ray listens on every interface with the machine's address: with this
# (measured on Ray 2.60) and the node address 127.0.0.1, it listens on loopback only.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Never shipped to the nodes: environments, stores, outputs, data (see the module docstring)
# (.git and .venv: Ray leaves them out itself). Patterns as in .gitignore: "/" anchors at the root.
EXCLUDED = ["/outputs", "/mlartifacts", "/mlruns", "/data", "/.sweepbook", "/mlflow.db*",
            "/optuna.db*", "*.egg-info", "__pycache__", ".ipynb_checkpoints"]
FORWARDED = ("MLFLOW_", "SWEEPBOOK_", "OMP_NUM_THREADS")  # the driver's variables a job needs
ORPHANED = ("its Ray worker died (its node was lost, or the cluster stopped); run the same "
            "command again to finish the sweep")


def _job_environment(driver_env: Dict[str, str], root: Path) -> Dict[str, str]:
    """The node's own environment (its PATH, its GPUs), with the sweep's variables on top and
    the shipped project as sweepbook's root."""
    forwarded = {k: v for k, v in driver_env.items() if k.startswith(FORWARDED)}
    return {**os.environ, **forwarded, "SWEEPBOOK_ROOT": str(root)}


def _write_secrets(secret: Dict[str, str], folder: str) -> str:
    path = os.path.join(folder, "secrets.json")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(secret, file)
    return path


_WARM: List[bool] = []  # this Ray worker has paid the imports and first-use costs


def _warm_up_worker(tracking_uri: str) -> None:
    """The first job in a Ray worker pays the imports and first-use costs (warmup.py) and the
    store's first query (seconds in every forked job otherwise); every later job of the sweep
    that Ray gives this worker forks from it warm, as the fork engine's jobs fork from its
    template."""
    if not _WARM:
        from mlflow.tracking import MlflowClient

        from sweepbook.executors import warmup

        warmup.import_everything()
        warmup.pay_first_use_costs()
        with patched_environ({POOL_ENV: NULL_POOL}):  # forked jobs never share a connection
            MlflowClient(tracking_uri).search_experiments(max_results=1)
        _WARM.append(True)


def _study_passfile(env: Dict[str, str]) -> Dict[str, str]:
    """The passfile a search's study database names (sweepbook server's), by path: its
    password travels with the task, as secret overrides do."""
    link = json.loads(env.get(TRIAL_ENV) or "{}")
    paths = parse_qs(urlparse(link.get("storage", "")).query).get("passfile", [])
    return {path: Path(path).read_text() for path in paths if Path(path).is_file()}


def _place_passfiles(env: Dict[str, str], passfiles: Dict[str, str], folder: str) -> None:
    """Each shipped passfile written 0600 in `folder`, and the study's link pointed at it."""
    for index, (path, text) in enumerate(passfiles.items()):
        copy = os.path.join(folder, f"passfile-{index}")
        with os.fdopen(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(text)
        env[TRIAL_ENV] = env[TRIAL_ENV].replace(path, copy)


def run_task(spec: JobSpec, notebook: str, secret: Dict[str, str],
             passfiles: Dict[str, str]) -> Tuple[int, Optional[str]]:
    """The body of a job's Ray task, on its node: the job in a child process, in a scratch
    folder; returns the job's exit code and its run's id (None if it sent none)."""
    import multiprocessing

    import ray

    from sweepbook.executors.job import run_job

    root = Path.cwd()  # Ray's copy of the project (working_dir)
    scratch = tempfile.mkdtemp(prefix="sweepbook-job-")
    env = {**_job_environment(spec.env, root), POOL_ENV: NULL_POOL,  # forked: see local.py
           WORKER_ENV: f"ray node {ray.get_runtime_context().get_node_id()}"}
    if secret:
        env[SECRETS_ENV] = _write_secrets(secret, scratch)
    _place_passfiles(env, passfiles, scratch)
    stem = os.path.join(scratch, Path(spec.output).stem)
    spec = dataclasses.replace(spec, notebook=str(root / notebook), output=f"{stem}.ipynb",
                               log=f"{stem}.log", env=env, orphaned=ORPHANED)
    _warm_up_worker(env[TRACKING_URI_ENV])
    context = multiprocessing.get_context("fork")  # from the warm worker, as the fork engine
    reports, sender = context.Pipe(duplex=False)
    process = context.Process(target=run_job, args=(spec, True, sender), daemon=False)
    process.start()
    sender.close()
    try:
        process.join()
    except KeyboardInterrupt:  # ray.cancel: the job ends its run KILLED, then the task ends
        _stop(process)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # its secrets file with it
    run_id = reports.recv() if reports.poll() else None
    return process.exitcode, run_id


def _stop(process) -> None:
    for signum, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        process.join(grace)
        if process.exitcode is not None:
            return


@contextlib.contextmanager
def _as_they_were() -> Iterator[None]:
    """ray.init installs its own SIGTERM handler (sys.exit: the sweep's stop path would be
    skipped) and sets variables (PYTHONBREAKPOINT): the caller's are put back after."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    try:
        with preserved_environ():
            yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """A local Ray that listens on 127.0.0.1 only. Ray reads the variable once, when it is
    first imported (into ray_constants), and its processes read it when they start: both are
    set for the start, and put back after."""
    with patched_environ(LOOPBACK_ONLY):
        from ray._private import ray_constants  # private: the only switch there is

        before = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            yield
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = before


@dataclasses.dataclass
class _Task:
    ref: object  # the task's ObjectRef
    spec: JobSpec
    started: float


class RayExecutor(Executor):
    """Each job a Ray task reserving `num_cpus` and `num_gpus` (see the module docstring)."""

    def __init__(self, workers: Optional[int] = None, timeout: Optional[float] = None,
                 address: Optional[str] = None, num_cpus: float = 1.0, num_gpus: float = 0.0):
        super().__init__(workers or 1, timeout)
        self.given_workers, self.address = workers, address
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.root = project_root()
        self._running: Dict[int, _Task] = {}
        self._remote = None

    @property
    def threads_per_job(self) -> int:
        return max(1, int(self.num_cpus))

    def prepare(self, notebook: str, config_name: str, overrides: List[str]) -> None:
        """Start a local Ray, or join the cluster; check it has the resources jobs reserve."""
        import logging

        self._relative(notebook)
        options = {} if self.address else {"num_cpus": os.cpu_count(),
                                           "_node_ip_address": LOOPBACK}
        with contextlib.nullcontext() if self.address else _loopback_only(), \
                _as_they_were():
            import ray

            try:
                ray.init(address=self.address or "local",  # None would join any cluster
                         include_dashboard=False, log_to_driver=False,  # this machine runs
                         logging_level=logging.WARNING, configure_logging=False,
                         runtime_env={"working_dir": str(self.root), "excludes": EXCLUDED},
                         **options)
            except ConnectionError as error:
                raise ConfigError(
                    f"executor.address={self.address}: no Ray cluster answers there ({error}); "
                    f"give auto (the cluster `ray start` made on this machine), HOST:PORT of "
                    f"its head, or no address for a local Ray") from None
        self._remote = ray.remote(run_task).options(num_cpus=self.num_cpus,
                                                    num_gpus=self.num_gpus, max_retries=0)
        slots = self._cluster_slots()  # always: a task asking for what no node has waits forever
        self.workers = self.given_workers or slots

    def _cluster_slots(self) -> int:
        """Jobs the cluster can run at once; jobs asking for more than it has are refused (a
        Ray task asking for a GPU no node has waits forever)."""
        import ray

        resources = ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 0)
        if self.num_gpus > gpus or self.num_cpus > cpus:
            raise ConfigError(
                f"executor.num_gpus={self.num_gpus:g}, executor.num_cpus={self.num_cpus:g}: the "
                f"Ray cluster has {gpus:g} GPUs and {cpus:g} CPUs; ask for no more than it has")
        slots = cpus // self.num_cpus
        if self.num_gpus:
            slots = min(slots, gpus // self.num_gpus)
        return max(1, int(slots))

    def _relative(self, notebook: str) -> str:
        try:
            return str(Path(notebook).resolve().relative_to(self.root))
        except ValueError:
            raise ConfigError(f"{notebook} is outside the project {self.root}: Ray ships the "
                              f"project to its nodes; move the notebook into it") from None

    def check_store(self, tracking_uri: str) -> None:
        """A SQLite store cannot be shared by several nodes; a server on loopback cannot be
        reached from another machine."""
        import ray

        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if sqlite_file(tracking_uri) and len(nodes) > 1:
            raise ConfigError(
                f"the SQLite store {sqlite_file(tracking_uri)} cannot be shared by the "
                f"{len(nodes)} nodes of this Ray cluster: start a tracking server (sweepbook "
                f"server start) and use it (tracking=server)")
        here = ray.util.get_node_ip_address()
        elsewhere = sorted({n["NodeManagerAddress"] for n in nodes} - {here})
        host = urlparse(tracking_uri).hostname or ""
        if elsewhere and (host == "localhost" or host.startswith("127.") or host == "::1"):
            raise ConfigError(
                f"tracking.uri={redact_uri(tracking_uri)} is this machine's loopback: the Ray "
                f"nodes at {', '.join(elsewhere)} cannot reach it; start the server with "
                f"--host 0.0.0.0 and give tracking.uri=http://{here}:PORT")

    def close(self) -> None:
        """Disconnect; a Ray started for this sweep stops with it (its own processes only)."""
        import ray

        if ray.is_initialized():
            ray.shutdown()

    @property
    def running(self) -> int:
        return len(self._running)

    def start(self, spec: JobSpec) -> None:
        secret = read_secrets(spec.env[SECRETS_ENV]) if spec.env.get(SECRETS_ENV) else {}
        shipped = dataclasses.replace(spec, env={k: v for k, v in spec.env.items()
                                                 if k.startswith(FORWARDED)})
        ref = self._remote.remote(shipped, self._relative(spec.notebook), secret,
                                  _study_passfile(spec.env))
        self._running[spec.index] = _Task(ref, spec, time.monotonic())

    def _outcome(self, index: int, status: Optional[str] = None,
                 reason: Optional[str] = None) -> Outcome:
        import ray
        from ray.exceptions import RayError

        from sweepbook.executors.job import EXIT_OK, EXIT_PRUNED

        task = self._running.pop(index)
        run_id = None
        if status is None:
            try:
                code, run_id = ray.get(task.ref)
            except RayError as error:  # a lost node, a dead worker: killed, not failed, so
                status = "KILLED"  # that the next command (a resumed sweep or search) runs it
                reason = f"its Ray task failed: {type(error).__name__}: {error}"[:5000]
            else:
                status = {EXIT_OK: "FINISHED", EXIT_PRUNED: PRUNED}.get(code, "FAILED")
                if code is not None and code < 0:
                    reason = f"the job process was killed by {signal.Signals(-code).name}"
        return Outcome(task.spec, status, reason, run_id, time.monotonic() - task.started)

    def poll(self, seconds: float = 0.2) -> List[Outcome]:
        import ray

        if not self._running:
            return []
        refs = [task.ref for task in self._running.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=seconds)
        now, finished = time.monotonic(), []
        for index, task in list(self._running.items()):
            if task.ref in ready:
                finished.append(self._outcome(index))
            elif self.timeout is not None and now - task.started > self.timeout:
                self._cancel([task])
                finished.append(self._outcome(
                    index, "FAILED", f"timed out after {now - task.started:.1f} s"))
        return finished

    @staticmethod
    def _cancel(tasks: List[_Task]) -> None:
        """Stop the tasks and give their jobs the time to end their runs KILLED."""
        import ray

        for task in tasks:
            ray.cancel(task.ref)
        if tasks:
            ray.wait([task.ref for task in tasks], num_returns=len(tasks),
                     timeout=STOP_GRACE_S + 5)

    def cancel(self, reason: str) -> List[Outcome]:
        """Jobs that already ended keep their own outcome; the others are stopped."""
        import ray

        refs = [task.ref for task in self._running.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        outcomes = [self._outcome(i) for i, t in list(self._running.items()) if t.ref in ready]
        self._cancel(list(self._running.values()))
        return outcomes + [self._outcome(index, "KILLED", reason) for index in list(self._running)]
