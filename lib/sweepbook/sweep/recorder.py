"""The MLflow side of a sweep: its parent run, the children, and the truth about each job.

Imported by the driver only once the template process is starting: MLflow takes seconds to
import, and the template needs that head start more than the driver. Jobs record their own
runs (executors/job.py); the recorder ends what a job could not end itself (a timeout, a
cancel, a crash) and reads back what each run says.
"""
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List

import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweepbook.executors.base import Outcome
from sweepbook.params import redact_uri
from sweepbook.tracking.secrets import restore_definition
from sweepbook.sweep.plan import Job, SweepDefinitionError
from sweepbook.sweep.results import SKIPPED, JobResult, SweepResult
from sweepbook.tracking import record
from sweepbook.tracking.store import (create_placeholder, ensure_experiment, find_launched_run,
                                      find_parent, open_store)


def resume_definition(tracking_uri: str, sweep_id: str) -> Dict:
    """The definition a sweep's parent run recorded, so `--resume ID` needs nothing else (its
    secret overrides back from the file the sweep kept them in)."""
    client = MlflowClient(tracking_uri)
    parent = find_parent(client, sweep_id)
    if parent is None:
        raise SweepDefinitionError(f"no sweep {sweep_id!r} in {redact_uri(tracking_uri)}")
    try:
        path = client.download_artifacts(parent.info.run_id, record.SWEEP_DEFINITION_ARTIFACT)
    except (MlflowException, OSError) as error:
        raise SweepDefinitionError(
            f"sweep {sweep_id!r} cannot be resumed: its parent run {parent.info.run_id} has no "
            f"readable {record.SWEEP_DEFINITION_ARTIFACT} ({str(error)[:300]}); run the sweep "
            f"again with its notebook and overrides (finished jobs are kept)") from None
    return restore_definition(yaml.safe_load(Path(path).read_text()))


def sweep_params(definition: Dict) -> Dict[str, str]:
    """A grid sweep's parent params: its notebook, its job count and its overrides."""
    return {record.SWEEP_NOTEBOOK_PARAM: definition["notebook"],
            record.SWEEP_JOBS_PARAM: str(len(definition["jobs"])),
            record.SWEEP_OVERRIDES_PARAM: " ".join(definition["overrides"])[:6000]}


def _create_parent(client, experiment_id: str, sweep_id: str, definition: Dict, run_name: str,
                   params: Dict[str, str]) -> str:
    run = client.create_run(experiment_id, run_name=run_name, tags={
        record.SWEEP_TAG: sweep_id, record.ROLE_TAG: record.PARENT_ROLE,
        record.SOURCE_NAME_TAG: definition["notebook"], record.SOURCE_TYPE_TAG: "NOTEBOOK"})
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    _log_definition(client, run.info.run_id, definition)
    return run.info.run_id


def _log_definition(client, parent_run_id: str, definition: Dict) -> None:
    """sweep.yaml on the parent, for `--resume ID`. An artifact store that cannot be written
    to does not stop the sweep (its jobs will say why they fail); the next run of the same
    command logs it."""
    try:
        client.log_text(parent_run_id, yaml.safe_dump(definition, sort_keys=False),
                        record.SWEEP_DEFINITION_ARTIFACT)
    except Exception as error:
        print(f"sweepbook: warning: {record.SWEEP_DEFINITION_ARTIFACT} was not logged on the "
              f"sweep's parent run ({type(error).__name__}: {error}); run the same command "
              f"again once the artifact store is writable", file=sys.stderr)


def _children(client, experiment_id: str, parent_run_id: str):
    return client.search_runs([experiment_id],
                              filter_string=f"tags.`{record.PARENT_TAG}` = '{parent_run_id}'",
                              max_results=50000)


def _kill_stale_children(client, children) -> None:
    """Runs a killed sweep left RUNNING: nothing will ever end them."""
    for child in children:
        if child.info.status == "RUNNING":
            client.set_tag(child.info.run_id, record.ERROR_TAG,
                           "the sweep running it was stopped (its driver was killed)")
            client.set_terminated(child.info.run_id, "KILLED")


def _skipped_results(jobs: List[Job], children, metric: str) -> List[JobResult]:
    """Jobs whose config already has a FINISHED child run."""
    finished = {c.data.tags.get(record.HASH_TAG): c for c in children
                if c.info.status == "FINISHED"}
    return [JobResult(job.index, job.name, SKIPPED,
                      finished[job.config_hash].data.metrics.get(metric), None, None,
                      finished[job.config_hash].info.run_id)
            for job in jobs if job.config_hash in finished]


class SweepRecorder:
    """One sweep's parent run in MLflow, and a child run that tells the truth for each job."""

    KIND = "sweep"  # the parent run is named <KIND>-<sweep id>

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str,
                 sweep_id: str, metric: str, children=()):
        self.client = client
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_id = sweep_id
        self.metric = metric
        self.children = list(children)  # the runs of earlier attempts

    @classmethod
    def open(cls, first: Job, sweep_id: str, definition: Dict, metric: str,
             params: Dict[str, str]):
        """Create the store, experiment and parent run with `params` (or reopen the parent of
        an earlier attempt, ending children it left RUNNING)."""
        client = open_store(first.tracking_uri)
        experiment_id = ensure_experiment(client, first.expname, first.artifact_root)
        parent = find_parent(client, sweep_id)
        if parent is None:
            parent_run_id = _create_parent(client, experiment_id, sweep_id, definition,
                                           f"{cls.KIND}-{sweep_id}", params)
            children = []
        else:
            parent_run_id = parent.info.run_id
            children = _children(client, experiment_id, parent_run_id)
            _kill_stale_children(client, children)
            client.update_run(parent_run_id, status="RUNNING")
            logged = {a.path for a in client.list_artifacts(parent_run_id)}
            if record.SWEEP_DEFINITION_ARTIFACT not in logged:
                _log_definition(client, parent_run_id, definition)
        return cls(client, experiment_id, parent_run_id, sweep_id, metric, children)

    def skipped(self, jobs: List[Job]) -> List[JobResult]:
        """Jobs whose config already has a FINISHED child run."""
        return _skipped_results(jobs, self.children, self.metric)

    def tags(self, job: Job, launch_id: str) -> Dict[str, str]:
        """The child run's tags, passed to the notebook as its `tags` parameter."""
        return {record.SWEEP_TAG: self.sweep_id, record.INDEX_TAG: str(job.index),
                record.HASH_TAG: job.config_hash, record.LAUNCH_TAG: launch_id}

    def _run_of(self, job: Job, outcome: Outcome):
        if outcome.run_id:
            return self.client.get_run(outcome.run_id)
        return (find_launched_run(self.client, outcome.spec.launch_id)
                or create_placeholder(self.client, self.experiment_id, job.name,
                                      outcome.spec.parameters["tags"], self.parent_run_id))

    def refuse(self, job: Job) -> JobResult:
        """A job that cannot run (job.problem): a FAILED run that says why, so MLflow shows it."""
        tags = {**self.tags(job, uuid.uuid4().hex), record.ERROR_TAG: job.problem}
        run = create_placeholder(self.client, self.experiment_id, job.name, tags,
                                 self.parent_run_id)
        self.client.set_terminated(run.info.run_id, "FAILED")
        return JobResult(job.index, job.name, "FAILED", None, 0.0, None, run.info.run_id,
                         job.problem)

    def record(self, job: Job, outcome: Outcome) -> JobResult:
        """End the job's run if nothing else did (timeout, cancel, crash), then read it back:
        the run's status and reason are the job's."""
        run = self._run_of(job, outcome)
        run_id = run.info.run_id
        # A job the driver stopped (timeout, Ctrl-C) ended its run KILLED itself: the
        # driver knows why, unless it finished first.
        stopped = outcome.reason is not None and run.info.status != "FINISHED"
        if run.info.status == "RUNNING" or stopped:
            reason = outcome.reason or "the job ended without ending its run"
            self.client.set_tag(run_id, record.ERROR_TAG, reason)
            self.client.set_terminated(run_id, "KILLED" if outcome.status == "KILLED"
                                       else "FAILED")
            run = self.client.get_run(run_id)
        pruned = run.info.status == "KILLED" and record.PRUNED_TAG in run.data.tags
        return JobResult(job.index, job.name, record.PRUNED if pruned else run.info.status,
                         run.data.metrics.get(self.metric), outcome.seconds, outcome.notebook,
                         run_id, run.data.tags.get(record.PRUNED_TAG if pruned
                                                   else record.ERROR_TAG))

    def close(self, result: SweepResult) -> None:
        """Final job counts on the parent (one step per attempt) and its status."""
        counted = record.job_count_metric("FAILED")
        attempt = len(self.client.get_metric_history(self.parent_run_id, counted))
        now = int(time.time() * 1000)
        metrics = [Metric(record.job_count_metric(status), count, now, attempt)
                   for status, count in result.counts().items()]
        self.client.log_batch(self.parent_run_id, metrics=metrics)
        if result.aborted:
            self.client.set_tag(self.parent_run_id, record.ERROR_TAG,
                                f"the sweep stopped: {result.aborted}")
        status = "KILLED" if result.interrupted else ("FINISHED" if result.ok else "FAILED")
        self.client.set_terminated(self.parent_run_id, status)


class TuneRecorder(SweepRecorder):
    """A search's parent run `tune-<study>`: the space, the sampler and pruner, the best value
    and params as they improve, and at the end its figures; each trial's run is tagged with
    its number and its state."""
    KIND = record.SEARCH_KIND

    def tags(self, job: Job, launch_id: str) -> Dict[str, str]:
        return {**super().tags(job, launch_id), record.TRIAL_TAG: str(job.index)}

    def set_settings(self, settings: Dict[str, str]) -> None:
        """This attempt's settings (a resumed search may change its sampler or trials)."""
        self.client.log_batch(self.parent_run_id, tags=[
            RunTag(record.SEARCH_SETTING_TAG.format(key), str(value))
            for key, value in settings.items()])

    def earlier_trials(self, trials) -> List[JobResult]:
        """Trials ended by earlier attempts, as SKIPPED rows with their value and run."""
        runs = {c.data.tags.get(record.TRIAL_TAG): c for c in self.children}
        rows = []
        for trial in trials:
            run = runs.get(str(trial.number))
            value = trial.value if trial.state.name == "COMPLETE" else None  # a pruned one's
            rows.append(JobResult(  # last reported value is no result: never a best
                trial.number, run.info.run_name if run else f"trial {trial.number}", SKIPPED,
                value, None, None, run.info.run_id if run else None))
        return rows

    def told(self, result: JobResult, trial, best) -> None:
        """The trial's state on its run (a run the search could not use ends FAILED, with
        the reason), and the parent's best if this trial is it."""
        if result.run_id:
            self.client.set_tag(result.run_id, record.TRIAL_STATE_TAG, trial.state.name)
            run = self.client.get_run(result.run_id)
            if result.status == "FAILED" and run.info.status == "FINISHED":
                self.client.set_tag(result.run_id, record.ERROR_TAG, result.error)
                self.client.set_terminated(result.run_id, "FAILED")
        if best is not None and best.number == trial.number:
            self.client.log_batch(
                self.parent_run_id,
                metrics=[Metric(record.BEST_VALUE_METRIC, best.value,
                                int(time.time() * 1000), best.number)],
                tags=[RunTag(record.BEST_TRIAL_TAG, str(best.number)),
                      RunTag(record.BEST_PARAMS_TAG, json.dumps(best.params)[:5000])])

    def log_figures(self, folder: Path) -> None:
        """The study's figures (study.write_figures) on the parent run."""
        if any(folder.iterdir()):
            self.client.log_artifacts(self.parent_run_id, str(folder),
                                      record.SEARCH_FIGURES_FOLDER)
