"""Run a notebook with papermill and find the MLflow run it recorded."""
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from sweepbook.naming import artifact_root
from sweepbook.tracking import ensure_experiment

LAUNCH_TAG = "sweepbook.launch_id"
KERNEL = "python3"


@dataclass
class Execution:
    notebook: Path  # the executed copy, outputs (and any error banner) included
    run: Optional[Run]  # the MLflow run the notebook recorded, if it got that far
    error: Optional[BaseException] = None


def prepare_store(cfg) -> MlflowClient:
    """Create the store and the experiment in this process, before any kernel touches them."""
    client = MlflowClient(cfg.tracking.uri)
    ensure_experiment(client, cfg.expname, artifact_root(cfg.tracking.uri, cfg))
    return client


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


def default_output(cfg, notebook: Path, launch_id: str) -> Path:
    return Path(cfg.paths.output_dir) / "notebooks" / f"{notebook.stem}-{launch_id[:8]}.ipynb"


def run_notebook(notebook: Path, cfg, overrides: List[str], output: Optional[Path] = None,
                 progress: bool = True) -> Execution:
    """Execute `notebook` with `overrides` (already validated into `cfg`) in its own folder."""
    notebook = Path(notebook).resolve()
    launch_id = uuid.uuid4().hex
    output = Path(output or default_output(cfg, notebook, launch_id)).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    import papermill  # here, not at the top: sweep drivers use this module but not papermill

    client = prepare_store(cfg)
    error = None
    try:
        papermill.execute_notebook(
            str(notebook), str(output), kernel_name=KERNEL, cwd=str(notebook.parent),
            parameters={"overrides": overrides, "tags": {LAUNCH_TAG: launch_id}},
            progress_bar=progress,
        )
    except papermill.PapermillExecutionError as failure:
        error = failure
    return Execution(output, find_launched_run(client, launch_id), error)
