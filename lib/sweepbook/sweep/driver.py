"""Notebook sweeps: every job a parameterized papermill copy of the notebook, run by an
executor, tracked as child MLflow runs under one parent run, resumable.

    result = run_sweep("notebooks/train.ipynb", ["model=cnn,mlp", "optimizer.lr=1e-3,1e-2"])
    result.table()

The driver reads the notebook's primary config from its parameters cell and expands the sweep;
the executor warms up while the driver validates every job (plan.py) and creates the store, the
experiment and the parent run (recorder.py), all before any job starts: parallel first use of
a SQLite store corrupts it.
Jobs come from a source (sources.py) while the executor has room. The caller's environment is
left as it was: each job gets its own, explicitly.
"""
import contextlib
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from sweepbook import notebook as notebooks
from sweepbook.tracking import secrets
from sweepbook.env import signal_handlers
from sweepbook.executors import Executor, JobSpec, make_executor
from sweepbook.executors.settings import split_overrides
from sweepbook.sweep import plan as planning
from sweepbook.sweep.plan import Job, SweepDefinitionError
from sweepbook.sweep.progress import progress
from sweepbook.sweep.results import JobResult, SweepResult
from sweepbook.sweep.sources import GridSource
from sweepbook.config import SECRETS_ENV, TELEMETRY_ENV, TRACKING_URI_ENV, default_store_uri
from sweepbook.params import redact_overrides, redact_uri
from sweepbook.tracking.record import DEFAULT_METRIC, NOT_STARTED, RUN_ID_ENV, direction_for


@dataclass
class Launch:
    """What every job of one sweep shares."""
    notebook: str
    output_dir: Path  # executed notebooks and job logs
    threads: int  # torch threads per job: the cores shared by the workers
    tracking_uri: str
    experiment_id: str
    secrets_file: Optional[Path] = None  # the jobs' secret overrides (secrets.py), if any

    def spec(self, job: Job, parameters: Dict) -> JobSpec:
        stem = self.output_dir / f"{job.index}-{planning.short_name(job)}"
        return JobSpec(index=job.index, name=job.name, notebook=self.notebook,
                       output=f"{stem}.ipynb", log=f"{stem}.log", parameters=parameters,
                       env={**self.environment(), **job.environment},
                       experiment_id=self.experiment_id,
                       threads=self.threads)

    def environment(self) -> Dict[str, str]:
        """A job's environment: this process's, with the sweep's store, its own thread count,
        and never a run id (MLflow would resume that run instead of starting the job's own);
        the sweep's own secrets file, never one this process was given."""
        env = {k: v for k, v in os.environ.items() if k not in (RUN_ID_ENV, SECRETS_ENV)}
        secret = {SECRETS_ENV: str(self.secrets_file)} if self.secrets_file else {}
        return {TELEMETRY_ENV: "true", **env, TRACKING_URI_ENV: self.tracking_uri,
                "OMP_NUM_THREADS": str(self.threads), **secret}


class StopSignals:
    """Ctrl-C (SIGINT), SIGTERM (what `timeout` and schedulers send) and SIGHUP (a closed
    terminal) stop a sweep the same way.

    Until the sweep's record exists, a signal stops the driver at once (SweepStopped). From
    then on (`defer()`) it only sets `signum`, and the loop stops between two steps: raised
    inside a store query, sqlite3 would turn it into an error that the store's retries can
    swallow, and a half-made record would be left behind. The previous handlers are put back
    after; off the main thread (no handlers allowed) signals act as usual.
    """
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.signum: Optional[int] = None
        self._deferred = False
        self._handlers = signal_handlers(self._handle, self.SIGNALS)

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        if not self._deferred:
            raise SweepStopped(signum)

    def defer(self) -> None:
        self._deferred = True

    def __enter__(self) -> "StopSignals":
        self._handlers.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._handlers.__exit__(*exc)


class SweepStopped(KeyboardInterrupt):
    """A signal stopped the sweep before its record existed: nothing to end."""

    def __init__(self, signum: int):
        super().__init__(stop_reason(signum))
        self.signum = signum


def stop_reason(signum: int) -> str:
    return "stopped by Ctrl-C" if signum == signal.SIGINT else \
        f"stopped by {signal.Signals(signum).name}"


def _record(recorder, job: Job, outcome) -> JobResult:
    """The job's result as its run says; a store that cannot be written to (disk full,
    permissions) fails the job with the reason, and never stops the driver."""
    try:
        return recorder.record(job, outcome)
    except Exception as error:
        status = "KILLED" if outcome.status == "KILLED" else "FAILED"
        return JobResult(job.index, job.name, status, None, outcome.seconds, outcome.notebook,
                         outcome.run_id,
                         f"could not record the job: {type(error).__name__}: {error}"[:5000])


def execute_jobs(recorder, launch: Launch, executor: Executor, source, result: SweepResult,
             stop: StopSignals, shown) -> None:
    """Run the source's jobs while it has any, `shown` as they start and end (progress.py);
    a signal stops the running ones, and a broken executor stops the sweep."""
    started: Dict[int, Job] = {}

    def start(job: Job) -> None:
        started[job.index] = job
        shown.started(job)
        if job.problem:  # a search's invalid trial: recorded, never run
            note(job, recorder.refuse(job))
            return
        parameters = {"overrides": redact_overrides(job.overrides),  # secrets: from a file
                      "parent_run_id": recorder.parent_run_id,
                      "tags": recorder.tags(job, uuid.uuid4().hex)}
        executor.start(launch.spec(job, parameters))

    def note(job: Job, job_result: JobResult) -> None:
        result.results.append(job_result)  # first: a source that cannot be told stops the
        source.tell(job, job_result)  # sweep, and the job is still in its summary
        shown.ended(job_result)

    def collect(outcomes):
        """Every outcome is noted even if one cannot be (its source refused it): then the
        first such error stops the sweep, after."""
        failed = None
        for outcome in outcomes:
            job = started[outcome.spec.index]
            try:
                note(job, _record(recorder, job, outcome))
            except Exception as error:
                failed = failed or error
        if failed is not None:
            raise failed

    try:
        while (not source.exhausted or executor.running) and stop.signum is None:
            finished = executor.poll()
            while executor.has_room() and not source.exhausted and stop.signum is None:
                start(source.ask())  # refill first: recording takes a moment
            collect(finished)
        if stop.signum is not None:
            result.stopped_by = stop.signum
            collect(executor.cancel(stop_reason(stop.signum)))
    except Exception as error:  # the executor broke: stop, and say so
        result.aborted = f"{type(error).__name__}: {error}"[:5000]
        collect(executor.cancel(f"the sweep stopped: {result.aborted}"))
    finally:
        shown.close()
    reported = {r.index for r in result.results}
    never_ran = [job for job in started.values() if job.index not in reported]  # start failed
    result.results += [JobResult(job.index, job.name, NOT_STARTED, None, None, None, None)
                       for job in never_ran + source.unstarted()]
    result.results.sort(key=lambda r: r.index)


@contextlib.contextmanager
def one_driver(job: Job, sweep_id: str) -> Iterator[None]:
    """One driver per sweep id and store; a second is refused, naming the first."""
    from sweepbook.tracking.locks import LockHeld, sweep_driver

    try:
        with sweep_driver(job.tracking_uri, job.output_dir, sweep_id):
            yield
    except LockHeld as held:
        driver = f"driver PID {held.pid}" if held.pid else "its driver is starting"
        stop = f"stop it (kill {held.pid})" if held.pid else "stop it"
        raise SweepDefinitionError(
            f"sweep {sweep_id} is already running ({driver}): wait for it to end, or {stop}, "
            f"then run the same command again") from None


def output_folder(job: Job, sweep_id: str) -> Path:
    """Where the sweep's executed notebooks and logs go, made now: a folder that cannot be
    made is refused before any run exists."""
    folder = Path(job.output_dir) / "sweeps" / sweep_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SweepDefinitionError(f"paths.output_dir={job.output_dir}: cannot make {folder} "
                                   f"({error}); give a folder that can be written") from None
    return folder


class SweepRecordError(RuntimeError):
    """The store refused the sweep's record before any job ran."""


def open_record(recorder_class, first: Job, sweep_id: str, definition: Dict, metric: str,
                 params: Dict[str, str]):
    """The recorder of the sweep's parent run (made, or reopened); a store that refuses the
    record (disk full, permissions) stops the sweep before any job, and says so."""
    try:
        return recorder_class.open(first, sweep_id, definition, metric, params)
    except Exception as error:
        raise SweepRecordError(
            f"could not record sweep {sweep_id} in {redact_uri(first.tracking_uri)} "
            f"({type(error).__name__}: {error}); no job ran: run the same command again once "
            f"the store can be written to (it repairs what this attempt left)"[:5000]) from error


def close_record(recorder, result: SweepResult) -> None:
    """End the parent run; a store that cannot be written to leaves it for the next
    command (it repairs the record: resume) and says so, but never hides the summary."""
    try:
        recorder.close(result)
    except Exception as error:
        result.aborted = result.aborted or (
            f"could not record the sweep's end ({type(error).__name__}: {error}); run the "
            f"same command again to repair its record")[:5000]


def _definition(notebook, overrides, sweep_file, resume, max_jobs,
                executor: Executor) -> Tuple[notebooks.Notebook, List[str], List[List[str]]]:
    """The notebook, the sweep's overrides and every job's overrides, not validated yet (from
    the store's record on resume). Their count is shown at once (validating takes a while),
    and more than `max_jobs` are refused. The executor starts warming up as soon as the
    first job is known, before the notebook is read."""
    if not (notebook or resume):
        raise SweepDefinitionError("give a notebook to sweep, or resume=SWEEP_ID")
    if resume:
        from sweepbook.sweep.recorder import resume_definition

        definition = resume_definition(default_store_uri(), resume)
        combinations = [job["overrides"] for job in definition["jobs"]]
        executor.warm_up(definition["notebook"], combinations[0])
        return notebooks.inspect(definition["notebook"]), definition["overrides"], combinations
    combinations = planning.combinations(overrides, sweep_file, max_jobs)
    secrets.secret_overrides(combinations)  # a secret swept over values: refused now
    executor.warm_up(notebook, combinations[0])
    print(f"sweep of {len(combinations):,} jobs: validating...", file=sys.stderr, flush=True)
    return notebooks.inspect(notebook), list(overrides), combinations


def check_limits(workers: Optional[int], timeout: Optional[float]) -> None:
    if workers is not None and workers < 1:
        raise SweepDefinitionError(f"workers={workers}: give 1 or more")
    if timeout is not None and timeout <= 0:
        raise SweepDefinitionError(f"timeout={timeout}: give a number of seconds above 0")


def run_sweep(notebook: Optional[str], overrides: Sequence[str] = (), *,
              sweep_file: Optional[str] = None, workers: Optional[int] = None,
              engine: Optional[str] = None, timeout: Optional[float] = None,
              executor: str = "local", resume: Optional[str] = None,
              metric: str = DEFAULT_METRIC, max_jobs: int = planning.MAX_JOBS,
              quiet: bool = False) -> SweepResult:
    """Run every combination of `overrides` as a child run on `executor` (local or ray, its
    settings in `executor.KEY=VALUE` overrides); see the module docstring."""
    check_limits(workers, timeout)
    overrides, executor_overrides = split_overrides(overrides)
    runner = make_executor(executor, executor_overrides, workers=workers, engine=engine,
                           timeout=timeout)
    with StopSignals() as stop, runner as executor:
        # the executor warms up while this process validates every job and creates the store
        found, overrides, combinations = _definition(notebook, overrides, sweep_file, resume,
                                                     max_jobs, executor)
        executor.prepare(str(found.path), found.config_name, combinations[0])
        jobs = planning.validate(combinations, found)
        executor.check_store(jobs[0].tracking_uri)
        executor.use_device(jobs[0].device)
        sweep_id = planning.sweep_id(str(found.path), jobs)
        output_dir = output_folder(jobs[0], sweep_id)
        with one_driver(jobs[0], sweep_id):
            stop.defer()  # from here on, a signal ends the record properly
            definition, secrets_file = secrets.hide_in_definition(  # secrets: a 0600 file only
                {"notebook": str(found.path), "config_name": found.config_name,
                 "overrides": overrides, **planning.describe(jobs)},
                jobs[0].tracking_uri, sweep_id)
            from sweepbook.sweep.recorder import SweepRecorder, sweep_params  # MLflow: slow

            recorder = open_record(SweepRecorder, jobs[0], sweep_id, definition, metric,
                                    sweep_params(definition))
            skipped = recorder.skipped(jobs)
            executor.store_ready(jobs[0].tracking_uri)
            result = SweepResult(sweep_id, recorder.parent_run_id, metric, skipped,
                                 tracking_uri=jobs[0].tracking_uri)
            try:
                launch = Launch(str(found.path), output_dir, executor.threads_per_job,
                                jobs[0].tracking_uri, recorder.experiment_id, secrets_file)
                done = {r.index for r in skipped}
                source = GridSource(job for job in jobs if job.index not in done)
                shown = progress(f"sweep {sweep_id}", len(jobs), skipped, metric,
                                 direction_for(metric), quiet)
                execute_jobs(recorder, launch, executor, source, result, stop, shown)
            finally:
                close_record(recorder, result)
            if result.ok and not result.count(NOT_STARTED):  # nothing left to resume
                secrets.forget(secrets_file)
    return result
