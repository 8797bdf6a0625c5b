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
import os
import signal
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from sweepbook import notebook as notebooks
from sweepbook.executors import Executor, JobSpec, get_executor
from sweepbook.sweep import plan as planning
from sweepbook.sweep.plan import Job, SweepDefinitionError
from sweepbook.sweep.results import JobResult, SweepResult
from sweepbook.sweep.sources import GridSource
from sweepbook.config import TELEMETRY_ENV, TRACKING_URI_ENV
from sweepbook.tracking.record import DEFAULT_METRIC, NOT_STARTED, RUN_ID_ENV

INTERRUPTED = "stopped by Ctrl-C"


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _progress(total: int, done: int, quiet: bool, sweep_id: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {sweep_id}", unit="job", disable=quiet)


@dataclass
class _Launch:
    """What every job of one sweep shares."""
    notebook: str
    output_dir: Path  # executed notebooks and job logs
    threads: int  # torch threads per job: the cores shared by the workers
    tracking_uri: str
    experiment_id: str

    def spec(self, job: Job, parameters: Dict) -> JobSpec:
        stem = self.output_dir / f"{job.index}-{planning.short_name(job)}"
        return JobSpec(index=job.index, name=job.name, notebook=self.notebook,
                       output=f"{stem}.ipynb", log=f"{stem}.log", parameters=parameters,
                       env=self.environment(), experiment_id=self.experiment_id,
                       threads=self.threads)

    def environment(self) -> Dict[str, str]:
        """A job's environment: this process's, with the sweep's store, its own thread count,
        and never a run id (MLflow would resume that run instead of starting the job's own)."""
        env = {k: v for k, v in os.environ.items() if k != RUN_ID_ENV}
        return {TELEMETRY_ENV: "true", **env, TRACKING_URI_ENV: self.tracking_uri,
                "OMP_NUM_THREADS": str(self.threads)}


class _CtrlC:
    """Ctrl-C (SIGINT) while jobs run asks the loop to stop between two steps, instead of
    raising wherever the driver is: inside a store query, sqlite3 turns the interrupt into
    an error that the store's retries can swallow, and the sweep would run on. The previous
    handler is put back after; off the main thread (no handler allowed) Ctrl-C raises as usual.
    """

    def __init__(self):
        self.pressed = False
        self._previous = None

    def _press(self, signum, frame) -> None:
        self.pressed = True

    def __enter__(self) -> "_CtrlC":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._press)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _execute(recorder, launch: _Launch, executor: Executor, source: GridSource,
             by_index: Dict[int, Job], result: SweepResult, quiet: bool) -> None:
    bar = _progress(len(by_index), len(result.results), quiet, recorder.sweep_id)

    def start(job: Job) -> None:
        parameters = {"overrides": job.overrides, "parent_run_id": recorder.parent_run_id,
                      "tags": recorder.tags(job, uuid.uuid4().hex)}
        executor.start(launch.spec(job, parameters))

    def show_counts():
        bar.set_postfix(failed=result.count("FAILED"), running=executor.running, refresh=False)

    def collect(outcomes):
        for outcome in outcomes:
            job = by_index[outcome.spec.index]
            job_result = recorder.record(job, outcome)
            source.tell(job, job_result)
            result.results.append(job_result)
            show_counts()
            bar.update(1)

    try:
        with _CtrlC() as ctrl_c:
            while (not source.exhausted or executor.running) and not ctrl_c.pressed:
                finished = executor.poll()
                while executor.has_room() and not source.exhausted and not ctrl_c.pressed:
                    start(source.ask())  # refill first: recording takes a moment
                    show_counts()
                collect(finished)
        if ctrl_c.pressed:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        result.interrupted = True
        collect(executor.cancel(INTERRUPTED))
    except Exception as error:  # the executor or the store broke: stop, and say so
        result.aborted = f"{type(error).__name__}: {error}"[:5000]
        collect(executor.cancel(f"the sweep stopped: {result.aborted}"))
    finally:
        bar.close()
    reported = {r.index for r in result.results}
    result.results += [JobResult(job.index, job.name, NOT_STARTED, None, None, None, None)
                       for job in by_index.values() if job.index not in reported]
    result.results.sort(key=lambda r: r.index)


def _store_uri() -> str:
    """The store the default config names, for `--resume ID` (MLFLOW_TRACKING_URI wins)."""
    from sweepbook.config import compose

    return compose(check_targets=False).tracking.uri


def _definition(notebook, overrides, sweep_file, resume) -> Tuple[notebooks.Notebook, List[str],
                                                                  List[List[str]]]:
    """The notebook, the sweep's overrides and every job's overrides, not validated yet (from
    the store's record on resume)."""
    if not (notebook or resume):
        raise SweepDefinitionError("give a notebook to sweep, or resume=SWEEP_ID")
    if resume:
        from sweepbook.sweep.recorder import resume_definition

        definition = resume_definition(_store_uri(), resume)
        return (notebooks.inspect(definition["notebook"]), definition["overrides"],
                [job["overrides"] for job in definition["jobs"]])
    return (notebooks.inspect(notebook), list(overrides),
            planning.combinations(overrides, sweep_file))


def run_sweep(notebook: Optional[str], overrides: Sequence[str] = (), *,
              sweep_file: Optional[str] = None, workers: Optional[int] = None,
              engine: str = "fork", timeout: Optional[float] = None,
              resume: Optional[str] = None, metric: str = DEFAULT_METRIC,
              quiet: bool = False) -> SweepResult:
    """Run every combination of `overrides` as a child run; see the module docstring."""
    if workers is not None and workers < 1:
        raise SweepDefinitionError(f"workers={workers}: give 1 or more")
    if timeout is not None and timeout <= 0:
        raise SweepDefinitionError(f"timeout={timeout}: give a number of seconds above 0")
    workers = workers or default_workers()
    found, overrides, combinations = _definition(notebook, overrides, sweep_file, resume)
    with get_executor("local", workers=workers, timeout=timeout, engine=engine) as executor:
        # the executor warms up while this process validates every job and creates the store
        executor.prepare(str(found.path), found.config_name, combinations[0])
        jobs = planning.validate(combinations, found)
        from sweepbook.sweep.recorder import SweepRecorder  # MLflow: seconds to import

        sweep_id = planning.sweep_id(str(found.path), jobs)
        definition = {"notebook": str(found.path), "config_name": found.config_name,
                      "overrides": overrides, **planning.describe(jobs)}
        recorder, skipped = SweepRecorder.open(jobs, sweep_id, definition, metric)
        executor.store_ready(jobs[0].tracking_uri)
        result = SweepResult(sweep_id, recorder.parent_run_id, metric, skipped)
        output_dir = Path(jobs[0].output_dir) / "sweeps" / sweep_id
        output_dir.mkdir(parents=True, exist_ok=True)
        launch = _Launch(str(found.path), output_dir, max(1, (os.cpu_count() or 1) // workers),
                         jobs[0].tracking_uri, recorder.experiment_id)
        done = {r.index for r in skipped}
        source = GridSource(job for job in jobs if job.index not in done)
        try:
            _execute(recorder, launch, executor, source, {job.index: job for job in jobs},
                     result, quiet)
        finally:
            recorder.close(result)
    return result
