"""Notebook sweeps: every job a parameterized papermill copy of the notebook, run in parallel,
tracked as child MLflow runs under one parent run, resumable.

    result = run_sweep("notebooks/train.ipynb", ["model=cnn,mlp", "optimizer.lr=1e-3,1e-2"])
    result.table()

The driver validates every job, starts the warm template (workers.py), and creates the store,
the experiment and the parent run (sweep_tracking.py) before any job starts: parallel first
use of a SQLite store corrupts it.
"""
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from sweepbook import jobs as sweep_jobs
from sweepbook.jobs import Job, SweepDefinitionError
from sweepbook.naming import RUN_ID_ENV
from sweepbook.workers import JobProcesses, JobSpec, StoreHandoff

POOL_ENV = "MLFLOW_SQLALCHEMYSTORE_POOLCLASS"


@dataclass
class JobResult:
    index: int
    name: str
    status: str  # FINISHED, FAILED, KILLED, SKIPPED (finished earlier), NOT STARTED (Ctrl-C)
    metric: Optional[float]
    seconds: Optional[float]
    notebook: Optional[str]  # the executed copy
    run_id: Optional[str]
    error: Optional[str] = None


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    metric: str
    results: List[JobResult] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def ok(self) -> bool:
        return not self.interrupted and self.count("FAILED") == self.count("KILLED") == 0

    def table(self):
        """One row per job: status, the key metric, duration, executed notebook."""
        import pandas as pd

        rows = [{"job": r.index, "name": r.name, "status": r.status, self.metric: r.metric,
                 "seconds": None if r.seconds is None else round(r.seconds, 1),
                 "notebook": r.notebook, "run_id": r.run_id} for r in self.results]
        return pd.DataFrame(rows).set_index("job")


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
    engine: str
    threads: int  # torch threads per job: the cores shared by the workers

    def spec(self, job: Job, parameters: Dict) -> JobSpec:
        stem = self.output_dir / f"{job.index}-{sweep_jobs.short_name(job)}"
        return JobSpec(index=job.index, notebook=self.notebook, output=f"{stem}.ipynb",
                       log=f"{stem}.log", parameters=parameters, engine=self.engine,
                       threads=self.threads,
                       env=self.environment())

    def environment(self) -> Dict[str, str]:
        """This process's environment for a job: its own thread count, and never a run id
        (MLflow would resume that run instead of starting the job's own)."""
        env = {k: v for k, v in os.environ.items() if k != RUN_ID_ENV}
        return {**env, "OMP_NUM_THREADS": str(self.threads)}


def _execute(recorder, launch: _Launch, pool: JobProcesses, jobs: List[Job],
             result: SweepResult, quiet: bool) -> None:
    by_index = {job.index: job for job in jobs}
    done = {r.index for r in result.results}  # skipped: finished by an earlier attempt
    queue = [job for job in jobs if job.index not in done]
    bar = _progress(len(jobs), len(result.results), quiet, recorder.sweep_id)

    def start(job: Job) -> None:
        parameters = {"overrides": job.overrides, "parent_run_id": recorder.parent_run_id,
                      "tags": recorder.tags(job, uuid.uuid4().hex)}
        pool.start(launch.spec(job, parameters))

    def show_counts():
        bar.set_postfix(failed=result.count("FAILED"), running=len(pool.running), refresh=False)

    def collect(finished_jobs):
        for finished in finished_jobs:
            result.results.append(recorder.record(by_index[finished.spec.index], finished))
            show_counts()
            bar.update(1)

    try:
        while queue or pool.running:
            finished = pool.poll()
            while queue and pool.has_room():  # refill first: recording takes a moment
                start(queue.pop(0))
                show_counts()
            collect(finished)
    except KeyboardInterrupt:
        result.interrupted = True
        collect(pool.kill_all())
        result.results += [JobResult(job.index, job.name, "NOT STARTED", None, None, None, None)
                           for job in queue]
    finally:
        bar.close()
    result.results.sort(key=lambda r: r.index)


def _plan(notebook, overrides, sweep_file, resume):
    """The notebook, the sweep overrides and the validated jobs (from the store on resume)."""
    if not (notebook or resume):
        raise SweepDefinitionError("give a notebook to sweep, or resume=SWEEP_ID")
    if resume:
        from sweepbook.sweep_tracking import resume_definition

        definition = resume_definition(resume)
        notebook, overrides = definition["notebook"], definition["overrides"]
        jobs = sweep_jobs.validate([job["overrides"] for job in definition["jobs"]])
    else:
        jobs = sweep_jobs.plan(overrides, sweep_file)
    notebook = str(Path(notebook).resolve())
    if not Path(notebook).is_file():
        raise SweepDefinitionError(f"notebook {notebook!r} not found")
    return notebook, list(overrides), jobs


def run_sweep(notebook: str, overrides: Sequence[str] = (), *, sweep_file: Optional[str] = None,
              workers: Optional[int] = None, engine: str = "fork",
              timeout: Optional[float] = None, resume: Optional[str] = None,
              metric: str = "test_acc", quiet: bool = False) -> SweepResult:
    """Run every combination of `overrides` as a child run; see the module docstring."""
    workers = workers or default_workers()
    pool = JobProcesses(engine, workers, timeout)
    os.environ.setdefault(POOL_ENV, "NullPool")  # forked jobs must not share SQLite connections
    notebook, overrides, jobs = _plan(notebook, overrides, sweep_file, resume)
    sweep_id = sweep_jobs.sweep_id(notebook, jobs)
    definition = {"notebook": notebook, "overrides": overrides, **sweep_jobs.describe(jobs)}
    with StoreHandoff() as handoff:
        pool.warm_up()  # the template imports while this process creates the store
        from sweepbook.sweep_tracking import SweepRecorder  # MLflow: seconds to import

        os.environ["MLFLOW_TRACKING_URI"] = jobs[0].tracking_uri
        recorder, skipped = SweepRecorder.open(jobs, sweep_id, definition, metric)
        handoff.release(jobs[0].tracking_uri)
        result = SweepResult(sweep_id, recorder.parent_run_id, metric, skipped)
        output_dir = Path(jobs[0].output_dir) / "sweeps" / sweep_id
        output_dir.mkdir(parents=True, exist_ok=True)
        launch = _Launch(notebook, output_dir, engine, max(1, (os.cpu_count() or 1) // workers))
        try:
            _execute(recorder, launch, pool, jobs, result, quiet)
        finally:
            recorder.close(result)
    return result
