"""A search's own figures (sweepbook tune): its driver draws them from the Optuna study when it
ends and logs them on the search's parent run, so they are read here like any artifact, with
no Optuna and no study storage needed."""
from pathlib import Path
from typing import List, Union

from mlflow.tracking import MlflowClient

from sweepbook.compare.runs import PROGRESS_BAR_ENV, Scope
from sweepbook.env import patched_environ
from sweepbook.tracking import record

_HISTORY, _IMPORTANCES, _INTERMEDIATE = record.SEARCH_FIGURES
SEARCH_FIGURES = {  # file name: what it shows, in the order a person reads them
    _HISTORY: "optimization history: each trial's value, and the best so far",
    _IMPORTANCES: "parameter importances: how much of the value each parameter explains",
    _INTERMEDIATE: "intermediate values: each trial's metric per epoch, a red x where the "
                   "pruner stopped one",
}
FIGURES_FOLDER = record.SEARCH_FIGURES_FOLDER


def search_figures(scope: Scope, folder: Union[str, Path, None] = None) -> List[Path]:
    """The search's figures as local PNG files, in SEARCH_FIGURES order; empty for a scope that
    is not a search, and for a search whose driver has not logged them yet (it does when it
    ends; importances need two finished trials).

    They are downloaded into `folder` (in a `tune` folder there); without one, into a new
    temporary folder.
    """
    if not scope.search:
        return []
    client = MlflowClient(scope.tracking_uri)
    if not client.list_artifacts(scope.parent_run_id, FIGURES_FOLDER):
        return []
    # MLflow draws a progress bar on stderr even for small files
    with patched_environ({PROGRESS_BAR_ENV: "false"}):
        local = Path(client.download_artifacts(scope.parent_run_id, FIGURES_FOLDER,
                                               None if folder is None else str(folder)))
    return [local / name for name in SEARCH_FIGURES if (local / name).is_file()]
