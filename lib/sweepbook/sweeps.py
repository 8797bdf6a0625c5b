"""Notebook sweeps: every job a parameterized papermill copy of the notebook, run in parallel,
tracked as child MLflow runs under one parent run, resumable.

    result = run_sweep("notebooks/train.ipynb", ["model=cnn,mlp", "optimizer.lr=1e-3,1e-2"])
    result.table()

The driver validates every job, then creates the store, the experiment and the parent run
before any worker starts (parallel first use of a SQLite store corrupts it).
"""
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweepbook import jobs as sweep_jobs
from sweepbook.execute import LAUNCH_TAG, find_launched_run
from sweepbook.jobs import Job, SweepDefinitionError
from sweepbook.tracking import ensure_experiment
from sweepbook.workers import EXIT_OK, Finished, JobProcesses, JobSpec, StoreHandoff

SWEEP_TAG = "sweepbook.sweep_id"
ROLE_TAG = "sweepbook.role"
INDEX_TAG = "sweepbook.job_index"
HASH_TAG = "sweepbook.config_hash"
ERROR_TAG = "sweepbook.error"
DEFINITION_ARTIFACT = "sweep.yaml"
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


# ---------------------------------------------------------------- the parent run

def _find_parent(client: MlflowClient, sweep_id: str):
    """The parent run of sweep `sweep_id`, in whichever experiment it is."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' and "
                                   f"tags.`{ROLE_TAG}` = 'parent'", max_results=1)
    return runs[0] if runs else None


def _create_parent(client, experiment_id: str, sweep_id: str, notebook: str,
                   definition: Dict) -> str:
    run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}", tags={
        SWEEP_TAG: sweep_id, ROLE_TAG: "parent", "mlflow.source.name": notebook,
        "mlflow.source.type": "NOTEBOOK"})
    client.log_batch(run.info.run_id, params=[
        Param("sweep.notebook", notebook), Param("sweep.jobs", str(len(definition["jobs"]))),
        Param("sweep.overrides", " ".join(definition["overrides"])[:6000])])
    client.log_text(run.info.run_id, yaml.safe_dump(definition, sort_keys=False),
                    DEFINITION_ARTIFACT)
    return run.info.run_id


def _children(client, experiment_id: str, parent_run_id: str):
    return client.search_runs([experiment_id],
                              filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
                              max_results=50000)


def _kill_stale_children(client, children) -> None:
    """Runs a killed sweep left RUNNING: nothing will ever end them."""
    for child in children:
        if child.info.status == "RUNNING":
            client.set_tag(child.info.run_id, ERROR_TAG, "the sweep running it was stopped")
            client.set_terminated(child.info.run_id, "KILLED")


def _skipped_results(jobs: List[Job], children, metric: str) -> List[JobResult]:
    """Jobs whose config already has a FINISHED child run."""
    finished = {c.data.tags.get(HASH_TAG): c for c in children if c.info.status == "FINISHED"}
    return [JobResult(job.index, job.name, "SKIPPED",
                      finished[job.config_hash].data.metrics.get(metric), None, None,
                      finished[job.config_hash].info.run_id)
            for job in jobs if job.config_hash in finished]


def _close_parent(client, parent_run_id: str, result: SweepResult) -> None:
    counts = {f"jobs_{s.lower()}": result.count(s)
              for s in ("FINISHED", "FAILED", "KILLED", "SKIPPED")}
    attempt = len(client.get_metric_history(parent_run_id, "jobs_failed"))
    now = int(time.time() * 1000)
    client.log_batch(parent_run_id, metrics=[Metric(k, v, now, attempt) for k, v in counts.items()])
    status = "KILLED" if result.interrupted else ("FINISHED" if result.ok else "FAILED")
    client.set_terminated(parent_run_id, status)


# ---------------------------------------------------------------- one job

def _notebook_error(path: Path) -> Optional[str]:
    """The first error a (papermill-executed) notebook shows, as 'Name: message'."""
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}"[:5000]
    return None


def _failure_reason(finished: Finished, output: Path) -> Optional[str]:
    if finished.killed:
        return "stopped by Ctrl-C"
    if finished.timed_out:
        return f"timed out after {finished.seconds:.0f} s"
    if finished.exitcode == EXIT_OK:
        return None
    return _notebook_error(output) or f"job process exited with code {finished.exitcode}"


class _Sweep:
    """The driver's state for one sweep: store, parent run, job specs, results."""

    def __init__(self, client, experiment_id, parent_run_id, sweep_id, notebook, output_dir,
                 engine, workers, metric):
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.notebook = notebook
        self.output_dir = output_dir
        self.engine = engine
        self.workers = workers
        self.metric = metric
        self.threads = max(1, (os.cpu_count() or 1) // workers)  # cores shared by the workers
        self.launches: Dict[int, str] = {}

    def spec(self, job: Job) -> JobSpec:
        launch_id = self.launches[job.index] = uuid.uuid4().hex
        stem = self.output_dir / f"{job.index}-{sweep_jobs.short_name(job)}"
        tags = {SWEEP_TAG: self.sweep_id, INDEX_TAG: str(job.index), HASH_TAG: job.config_hash,
                LAUNCH_TAG: launch_id}
        return JobSpec(
            index=job.index, notebook=str(self.notebook), output=f"{stem}.ipynb",
            log=f"{stem}.log", engine=self.engine,
            parameters={"overrides": job.overrides, "parent_run_id": self.parent_run_id,
                        "tags": tags},
            threads=self.threads, env={**os.environ, "OMP_NUM_THREADS": str(self.threads)})

    def _placeholder_run(self, job: Job, finished: Finished):
        """A child run for a job that failed before its notebook opened one."""
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, **finished.spec.parameters["tags"]}
        return self.client.create_run(self.experiment_id, run_name=job.name, tags=tags)

    def record(self, job: Job, finished: Finished) -> JobResult:
        """Make MLflow tell the truth about a job that ended, and attach its notebook."""
        output = Path(finished.spec.output)
        reason = _failure_reason(finished, output)
        run = find_launched_run(self.client, self.launches[job.index])
        run = run or self._placeholder_run(job, finished)
        run_id = run.info.run_id
        status = "KILLED" if finished.killed else ("FAILED" if reason else "FINISHED")
        if reason:
            if ERROR_TAG not in run.data.tags:
                self.client.set_tag(run_id, ERROR_TAG, reason)
            self.client.set_terminated(run_id, status)
        for path, folder in ((output, None), (Path(finished.spec.log), "logs")):
            if path.is_file():
                self.client.log_artifact(run_id, str(path), folder)
        metric = self.client.get_run(run_id).data.metrics.get(self.metric)
        return JobResult(job.index, job.name, status, metric, finished.seconds,
                         str(output) if output.is_file() else None, run_id, reason)


# ---------------------------------------------------------------- driving

def _progress(total: int, done: int, quiet: bool, sweep_id: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {sweep_id}", unit="job", disable=quiet)


def _execute(sweep: _Sweep, pool: JobProcesses, jobs: List[Job], result: SweepResult,
             quiet: bool) -> None:
    by_index = {job.index: job for job in jobs}
    queue = [job for job in jobs if job.index not in {r.index for r in result.results}]
    bar = _progress(len(jobs), len(result.results), quiet, sweep.sweep_id)

    def show_counts():
        bar.set_postfix(failed=result.count("FAILED"), running=len(pool.running), refresh=False)

    def collect(finished_jobs):
        for finished in finished_jobs:
            result.results.append(sweep.record(by_index[finished.spec.index], finished))
            show_counts()
            bar.update(1)

    try:
        while queue or pool.running:
            while queue and pool.has_room():
                pool.start(sweep.spec(queue.pop(0)))
                show_counts()
            collect(pool.poll())
    except KeyboardInterrupt:
        result.interrupted = True
        collect(pool.kill_all())
        result.results += [JobResult(job.index, job.name, "NOT STARTED", None, None, None, None)
                           for job in queue]
    finally:
        bar.close()
    result.results.sort(key=lambda r: r.index)


def _definition(notebook: str, overrides: Sequence[str], jobs: List[Job]) -> Dict:
    return {"notebook": notebook, "overrides": list(overrides), **sweep_jobs.describe(jobs)}


def _resume_definition(sweep_id: str) -> Dict:
    """The definition a sweep's parent run recorded, so `--resume ID` needs nothing else."""
    client = MlflowClient(sweep_jobs.plan([])[0].tracking_uri)
    parent = _find_parent(client, sweep_id)
    if parent is None:
        raise SweepDefinitionError(f"no sweep {sweep_id!r} in {client.tracking_uri}")
    path = client.download_artifacts(parent.info.run_id, DEFINITION_ARTIFACT)
    return yaml.safe_load(Path(path).read_text())


def _plan(notebook, overrides, sweep_file, resume):
    """The notebook, the sweep overrides and the validated jobs (from the store on resume)."""
    if not (notebook or resume):
        raise SweepDefinitionError("give a notebook to sweep, or resume=SWEEP_ID")
    if resume:
        definition = _resume_definition(resume)
        notebook, overrides = definition["notebook"], definition["overrides"]
        jobs = sweep_jobs.validate([job["overrides"] for job in definition["jobs"]])
    else:
        jobs = sweep_jobs.plan(overrides, sweep_file)
    notebook = str(Path(notebook).resolve())
    if not Path(notebook).is_file():
        raise SweepDefinitionError(f"notebook {notebook!r} not found")
    return notebook, list(overrides), jobs


def _open_parent(client, experiment_id: str, sweep_id: str, notebook: str, definition: Dict):
    """The sweep's parent run, new or reopened, and the children it already has."""
    parent = _find_parent(client, sweep_id)
    if parent is None:
        return _create_parent(client, experiment_id, sweep_id, notebook, definition), []
    parent_run_id = parent.info.run_id
    children = _children(client, experiment_id, parent_run_id)
    _kill_stale_children(client, children)
    client.update_run(parent_run_id, status="RUNNING")
    return parent_run_id, children


def run_sweep(notebook: str, overrides: Sequence[str] = (), *, sweep_file: Optional[str] = None,
              workers: Optional[int] = None, engine: str = "fork",
              timeout: Optional[float] = None, resume: Optional[str] = None,
              metric: str = "test_acc", quiet: bool = False) -> SweepResult:
    """Run every combination of `overrides` as a child run; see the module docstring."""
    workers = workers or default_workers()
    pool = JobProcesses(engine, workers, timeout)
    os.environ.setdefault(POOL_ENV, "NullPool")  # forked jobs must not share SQLite connections
    notebook, overrides, jobs = _plan(notebook, overrides, sweep_file, resume)
    with StoreHandoff() as handoff:
        pool.warm_up()  # the template imports while this process creates the store
        uri = os.environ["MLFLOW_TRACKING_URI"] = jobs[0].tracking_uri
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, jobs[0].expname, jobs[0].artifact_root)
        sweep_id = sweep_jobs.sweep_id(notebook, jobs)
        parent_run_id, children = _open_parent(client, experiment_id, sweep_id, notebook,
                                               _definition(notebook, overrides, jobs))
        handoff.release(uri)
        result = SweepResult(sweep_id, parent_run_id, metric,
                             _skipped_results(jobs, children, metric))
        output_dir = Path(jobs[0].output_dir) / "sweeps" / sweep_id
        output_dir.mkdir(parents=True, exist_ok=True)
        sweep = _Sweep(client, experiment_id, parent_run_id, sweep_id, Path(notebook),
                       output_dir, engine, workers, metric)
        try:
            _execute(sweep, pool, jobs, result, quiet)
        finally:
            _close_parent(client, parent_run_id, result)
    return result
