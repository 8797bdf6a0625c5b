"""The MLflow store: where it is, its experiments, and finding runs by what the record says."""
import contextlib
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweepbook.config import TRACKING_URI_ENV
from sweepbook.env import patched_environ
from sweepbook.tracking import locks
from sweepbook.tracking.location import StoreError, artifact_root, deleted_hint
from sweepbook.tracking.record import (LAUNCH_TAG, PARENT_ROLE, PARENT_TAG, ROLE_TAG, SWEEP_TAG,
                                       safe_name)



@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (start_run, log_model, `runs:/` URIs) reads one process-wide
    tracking URI, and setting it also sets MLFLOW_TRACKING_URI: both are put back after."""
    from mlflow.tracking._tracking_service import utils

    previous = utils._tracking_uri  # None unless someone set it: MLflow's own default then
    with patched_environ({TRACKING_URI_ENV: os.environ.get(TRACKING_URI_ENV)}):
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)


def open_store(uri: str) -> MlflowClient:
    """A client on the store at `uri`, its schema made: the first use of a store is one
    process at a time (locks.first_use), so parallel commands on a fresh store both work."""
    with locks.first_use(uri):
        return MlflowClient(uri)  # MLflow makes or migrates the schema here


def ensure_experiment(client: MlflowClient, name: str, root: Optional[str]) -> str:
    """The experiment's id, creating it once with an explicit artifact location."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (Path(root) / safe_name(name)).as_uri() if root else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as error:  # another process created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise error
    if experiment.lifecycle_stage == "deleted":
        raise StoreError(deleted_hint(name, experiment.experiment_id))
    return experiment.experiment_id


def prepare_store(cfg) -> str:
    """Create the store and the experiment in this process, before any job touches them;
    the experiment's id."""
    client = open_store(cfg.tracking.uri)
    return ensure_experiment(client, cfg.expname, artifact_root(cfg.tracking.uri, cfg))


def find_run(client: MlflowClient, filter_string: str,
             experiment_ids: Optional[List[str]] = None,
             order_by: Optional[List[str]] = None) -> Optional[Run]:
    """The first run matching `filter_string` (in `order_by`), in `experiment_ids` or any
    experiment of the store."""
    experiments = experiment_ids or [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=filter_string, max_results=1,
                              order_by=order_by)
    return runs[0] if runs else None


def find_launched_run(client: MlflowClient, launch_id: str) -> Optional[Run]:
    """The run tagged with `launch_id`, in whichever experiment the notebook chose."""
    return find_run(client, f"tags.`{LAUNCH_TAG}` = '{launch_id}'")


def find_parent(client: MlflowClient, sweep_id: str) -> Optional[Run]:
    """The parent run of sweep `sweep_id`, in whichever experiment it is."""
    return find_run(client, f"tags.`{SWEEP_TAG}` = '{sweep_id}' and "
                            f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'")


def create_placeholder(client: MlflowClient, experiment_id: str, name: str, tags: Dict[str, str],
                       parent_run_id: Optional[str] = None) -> Run:
    """A RUNNING run for a job whose notebook never opened one (it failed first, or was
    stopped), so that the job still has a record; the caller ends it with the reason."""
    if parent_run_id:
        tags = {**tags, PARENT_TAG: parent_run_id}
    return client.create_run(experiment_id, run_name=name, tags=tags)
