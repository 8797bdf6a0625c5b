"""Runs written straight through MlflowClient: comparison tests need many, not trained ones."""
import time
from typing import Dict, Optional

from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID


def make_run(client, experiment_id: str, name: str, params: Dict[str, str] = None,
             metrics: Dict[str, list] = None, status: Optional[str] = "FINISHED",
             parent: Optional[str] = None, tags: Dict[str, str] = None) -> str:
    """A run with `params`, metric histories (`{key: [value per step]}`), ended `status`."""
    tags = dict(tags or {})
    if parent:
        tags[MLFLOW_PARENT_RUN_ID] = parent
    run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    history = [Metric(key, float(value), now + step, step)
               for key, values in (metrics or {}).items() for step, value in enumerate(values)]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in (params or {}).items()],
                     metrics=history)
    if status:
        client.set_terminated(run_id, status)
    return run_id
