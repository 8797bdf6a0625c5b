"""The MLflow side of a sweep: its parent run, the children, and the truth about each job.

Imported by sweeps.run_sweep only once the template process is starting: MLflow takes
seconds to import, and the template needs that head start more than the driver.
"""
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweepbook import jobs as sweep_jobs
from sweepbook.execute import LAUNCH_TAG, find_launched_run, find_run
from sweepbook.jobs import Job, SweepDefinitionError
from sweepbook.naming import ERROR_TAG, ROLE_TAG, SWEEP_TAG
from sweepbook.sweeps import JobResult, SweepResult
from sweepbook.tracking import ensure_experiment
from sweepbook.workers import EXIT_OK, Finished

INDEX_TAG = "sweepbook.job_index"
HASH_TAG = "sweepbook.config_hash"
DEFINITION_ARTIFACT = "sweep.yaml"


def find_parent(client: MlflowClient, sweep_id: str):
    """The parent run of sweep `sweep_id`, in whichever experiment it is."""
    return find_run(client, f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`{ROLE_TAG}` = 'parent'")


def resume_definition(sweep_id: str) -> Dict:
    """The definition a sweep's parent run recorded, so `--resume ID` needs nothing else."""
    client = MlflowClient(sweep_jobs.plan([])[0].tracking_uri)
    parent = find_parent(client, sweep_id)
    if parent is None:
        raise SweepDefinitionError(f"no sweep {sweep_id!r} in {client.tracking_uri}")
    path = client.download_artifacts(parent.info.run_id, DEFINITION_ARTIFACT)
    return yaml.safe_load(Path(path).read_text())


def _create_parent(client, experiment_id: str, sweep_id: str, definition: Dict) -> str:
    run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}", tags={
        SWEEP_TAG: sweep_id, ROLE_TAG: "parent", "mlflow.source.name": definition["notebook"],
        "mlflow.source.type": "NOTEBOOK"})
    client.log_batch(run.info.run_id, params=[
        Param("sweep.notebook", definition["notebook"]),
        Param("sweep.jobs", str(len(definition["jobs"]))),
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
        return f"timed out after {finished.seconds:.1f} s"
    if finished.exitcode == EXIT_OK:
        return None
    return _notebook_error(output) or f"job process exited with code {finished.exitcode}"


class SweepRecorder:
    """One sweep's parent run in MLflow, and a child run that tells the truth for each job."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str,
                 sweep_id: str, metric: str):
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.metric = metric

    @classmethod
    def open(cls, jobs: List[Job], sweep_id: str, definition: Dict, metric: str):
        """Create the store, experiment and parent run (or reopen the parent of an earlier
        attempt, ending children it left RUNNING); returns the recorder and skipped jobs."""
        client = MlflowClient(jobs[0].tracking_uri)
        experiment_id = ensure_experiment(client, jobs[0].expname, jobs[0].artifact_root)
        parent = find_parent(client, sweep_id)
        if parent is None:
            parent_run_id = _create_parent(client, experiment_id, sweep_id, definition)
            children = []
        else:
            parent_run_id = parent.info.run_id
            children = _children(client, experiment_id, parent_run_id)
            _kill_stale_children(client, children)
            client.update_run(parent_run_id, status="RUNNING")
        recorder = cls(client, experiment_id, parent_run_id, sweep_id, metric)
        return recorder, _skipped_results(jobs, children, metric)

    def tags(self, job: Job, launch_id: str) -> Dict[str, str]:
        """The child run's tags, passed to the notebook as its `tags` parameter."""
        return {SWEEP_TAG: self.sweep_id, INDEX_TAG: str(job.index), HASH_TAG: job.config_hash,
                LAUNCH_TAG: launch_id}

    def _placeholder_run(self, job: Job, tags: Dict[str, str]):
        """A child run for a job that failed before its notebook opened one."""
        return self.client.create_run(self.experiment_id, run_name=job.name,
                                      tags={MLFLOW_PARENT_RUN_ID: self.parent_run_id, **tags})

    def record(self, job: Job, finished: Finished) -> JobResult:
        """Make MLflow tell the truth about a job that ended, and attach its notebook."""
        output = Path(finished.spec.output)
        reason = _failure_reason(finished, output)
        tags = finished.spec.parameters["tags"]
        run = find_launched_run(self.client, tags[LAUNCH_TAG])
        run = run or self._placeholder_run(job, tags)
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

    def close(self, result: SweepResult) -> None:
        """Final job counts on the parent (one step per attempt) and its status."""
        counts = {f"jobs_{s.lower()}": result.count(s)
                  for s in ("FINISHED", "FAILED", "KILLED", "SKIPPED")}
        attempt = len(self.client.get_metric_history(self.parent_run_id, "jobs_failed"))
        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_run_id,
                              metrics=[Metric(k, v, now, attempt) for k, v in counts.items()])
        status = "KILLED" if result.interrupted else ("FINISHED" if result.ok else "FAILED")
        self.client.set_terminated(self.parent_run_id, status)
