"""Runs side by side: which config won, and why. The data behind notebooks/compare.ipynb and
`sweepbook runs|best|report`."""
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from sweepbook.env import patched_environ
from sweepbook.params import redact_uri
from sweepbook.tracking.readers import reader_for
from sweepbook.tracking import record
from sweepbook.tracking.record import (CONFIG_ARTIFACT, DIRECTIONS, ERROR_TAG, MODEL_ARTIFACT,
                                       PARENT_ROLE, PRUNED, PRUNED_TAG, ROLE_TAG, SWEEP_TAG,
                                       TRIAL_TAG, job_count_metric)
from sweepbook.tracking.store import find_parent, using_tracking_uri

LATEST = "latest"  # a sweep id meaning: the newest sweep (of the config's experiment) that
#                   finished a job; a sweep whose every job failed has nothing to compare
LATEST_LOOKBACK = 100  # sweeps searched for it, newest first
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
KEYED_COLUMNS = ("metrics.", "params.", "tags.")


class ComparisonError(ValueError):
    """Asked for runs, sweeps, experiments or metrics that are not there."""


@dataclass
class Scope:
    tracking_uri: str  # the store read
    experiment_ids: List[str]  # experiments whose runs are compared
    title: str  # 'experiment sweepbook' or 'sweep 1a2b3c4d'
    parent_run_id: Optional[str] = None  # only this sweep's children, when set
    sweep_id: Optional[str] = None  # the sweep compared, when one is
    search: bool = False  # that sweep is a search (sweepbook tune): trials, pruning, figures
    metric: Optional[str] = None  # the metric that search optimized, its runs' default rank
    direction: Optional[str] = None  # and in which direction


def _experiment_ids(client: MlflowClient, name: str) -> List[str]:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        names = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
        raise ComparisonError(f"no experiment {name!r} in {redact_uri(client.tracking_uri)} "
                              f"(experiments there: {names})")
    return [experiment.experiment_id]


def _sweep_parent(client: MlflowClient, sweep_id: str, experiment: Optional[str]):
    if sweep_id != LATEST:
        return find_parent(client, sweep_id)
    experiments = _experiment_ids(client, experiment) if experiment else None
    experiments = experiments or [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, f"tags.`{ROLE_TAG}` = '{PARENT_ROLE}'",
                                 max_results=LATEST_LOOKBACK,
                                 order_by=["attributes.start_time DESC"])
    with_results = [p for p in parents if any(p.data.metrics.get(job_count_metric(status), 0)
                                              for status in ("FINISHED", "SKIPPED"))]
    return (with_results or parents or [None])[0]  # a sweep whose every job failed: skipped


def _is_search(parent) -> bool:
    return ((parent.info.run_name or "").startswith(f"{record.SEARCH_KIND}-")
            or record.SEARCH_METRIC_TAG in parent.data.tags)


def resolve_scope(tracking_uri: str, experiment: Optional[str] = None,
                  sweep_id: Optional[str] = None) -> Scope:
    """The runs to compare: one sweep's children (`sweep_id`, or 'latest'), else an
    experiment's runs."""
    client = MlflowClient(tracking_uri)
    if not sweep_id:
        if not experiment:
            raise ComparisonError("name an experiment or a sweep id to compare")
        return Scope(tracking_uri, _experiment_ids(client, experiment),
                     f"experiment {experiment}")
    parent = _sweep_parent(client, sweep_id, experiment)
    if parent is None and sweep_id == LATEST:
        where = f"experiment {experiment!r} in " if experiment else ""
        raise ComparisonError(f"no sweep in {where}{redact_uri(tracking_uri)} yet: run one "
                              "(make demo), or compare the experiment's runs without a sweep id")
    if parent is None:
        raise ComparisonError(f"no sweep {sweep_id!r} in {redact_uri(tracking_uri)}; a sweep's "
                              "id is printed when it ends, and tagged sweepbook.sweep_id on its "
                              "runs")
    found = parent.data.tags[SWEEP_TAG]
    search = _is_search(parent)
    return Scope(tracking_uri, [parent.info.experiment_id],
                 f"{'search' if search else 'sweep'} {found}", parent.info.run_id, found, search,
                 parent.data.tags.get(record.SEARCH_METRIC_TAG),
                 parent.data.tags.get(record.SEARCH_DIRECTION_TAG))


def scope_for(cfg, experiment: Optional[str] = None, sweep_id: Optional[str] = None) -> Scope:
    """resolve_scope on the config's store; without a sweep id, or with 'latest' (the newest
    sweep of the experiment, not of another one: debug runs have their own), the config's
    experiment unless `experiment` is given."""
    if not sweep_id or sweep_id == LATEST:
        experiment = experiment or cfg.expname
    return resolve_scope(cfg.tracking.uri, experiment, sweep_id)


def load_runs(scope: Scope) -> pd.DataFrame:
    """The scope's runs, one row each: params, final metrics, tags, status and duration.

    A sweep's parent run is left out: it summarizes the sweep and holds no model. A search's
    pruned trial has the status PRUNED.
    """
    runs = _with_pruned_status(reader_for(scope.tracking_uri).runs(scope.experiment_ids,
                                                                   scope.parent_run_id))
    if f"tags.{ROLE_TAG}" not in runs:
        return _not_empty(runs, scope)
    runs = runs[runs[f"tags.{ROLE_TAG}"] != PARENT_ROLE].reset_index(drop=True)
    logged_by_parents_only = [c for c in runs.columns
                              if c.startswith(KEYED_COLUMNS) and runs[c].isna().all()]
    return _not_empty(runs.drop(columns=logged_by_parents_only), scope)


def _with_pruned_status(runs: pd.DataFrame) -> pd.DataFrame:
    """MLflow has no PRUNED status: a pruned trial's run ends KILLED, tagged with where and why
    its pruner stopped it. Shown PRUNED, as the search told it, not as a run someone killed."""
    tag = f"tags.{PRUNED_TAG}"
    if tag in runs:
        runs.loc[(runs["status"] == "KILLED") & runs[tag].notna(), "status"] = PRUNED
    return runs


def _not_empty(runs: pd.DataFrame, scope: Scope) -> pd.DataFrame:
    if runs.empty:
        raise ComparisonError(f"no runs to compare in {scope.title} "
                              f"({redact_uri(scope.tracking_uri)})")
    return runs


def metric_histories(scope: Scope, run_ids: Sequence[str], keys: Sequence[str]) -> pd.DataFrame:
    """Every logged value of `keys` for `run_ids`: columns run_id, key, step, timestamp, value."""
    return reader_for(scope.tracking_uri).histories(run_ids, keys)


def read_artifact(scope: Scope, run_id: str, path: str) -> Optional[bytes]:
    """The bytes of one artifact file of a run, None if it logged no such file."""
    client = MlflowClient(scope.tracking_uri)
    folder = path.rpartition("/")[0] or None
    if path not in {f.path for f in client.list_artifacts(run_id, folder)}:
        return None
    # MLflow draws a progress bar on stderr even for one small file
    with tempfile.TemporaryDirectory() as work, patched_environ({PROGRESS_BAR_ENV: "false"}):
        return Path(client.download_artifacts(run_id, path, work)).read_bytes()


def run_config(scope: Scope, run_id: str) -> DictConfig:
    """The resolved config a run logged (config.yaml), to rebuild its data split."""
    text = read_artifact(scope, run_id, CONFIG_ARTIFACT)
    if text is None:
        raise ComparisonError(f"run {run_id} logged no {CONFIG_ARTIFACT}")
    return OmegaConf.create(text.decode("utf-8"))


def load_model(scope: Scope, run_id: str):
    """The run's logged nn.Module, on the CPU.

    MLflow resolves `runs:/` through its global tracking URI (a cwd-relative mlflow.db by
    default): the scope's store is that URI while the model loads.
    """
    import mlflow.pytorch

    with using_tracking_uri(scope.tracking_uri):
        return mlflow.pytorch.load_model(f"runs:/{run_id}/{MODEL_ARTIFACT}", map_location="cpu")


def metric_names(runs: pd.DataFrame) -> List[str]:
    return [c[len("metrics."):] for c in runs.columns if c.startswith("metrics.")]


def swept_params(runs: pd.DataFrame) -> List[str]:
    """The params columns whose value differs between runs: what the sweep varied.

    A group's `_target_` is left out where the group's own column (`model`: cnn, mlp) varies
    too: that names the choice as the overrides did.
    """
    columns = [c for c in runs.columns if c.startswith("params.")]
    varied = [c for c in columns if runs[c].nunique(dropna=False) > 1]
    return [c for c in varied
            if not (c.endswith("._target_") and c[:-len("._target_")] in varied)]


def direction_for(metric: str, direction: Optional[str] = None) -> str:
    """'max' or 'min': as given, else as the metric's name says (record.direction_for)."""
    if direction is None:
        return record.direction_for(metric)
    if direction not in DIRECTIONS:
        raise ComparisonError(f"direction {direction!r} is not one of: {', '.join(DIRECTIONS)}")
    return direction


def _check_metric(runs: pd.DataFrame, metric: str) -> str:
    column = f"metrics.{metric}"
    if column not in runs:
        logged = ", ".join(metric_names(runs)) or "none"
        raise ComparisonError(f"no run logged the metric {metric!r} (metrics logged: {logged})")
    return column


def ranked(runs: pd.DataFrame, metric: str, direction: Optional[str] = None) -> pd.DataFrame:
    """All runs, best first by `metric` (runs without it last)."""
    column = _check_metric(runs, metric)
    ascending = direction_for(metric, direction) == "min"
    return runs.sort_values(column, ascending=ascending, na_position="last", kind="stable",
                            ignore_index=True)


def finished_ranked(runs: pd.DataFrame, metric: str,
                    direction: Optional[str] = None) -> pd.DataFrame:
    """The FINISHED runs that have `metric`, best first: the best run, the runner-up, ..."""
    column = _check_metric(runs, metric)
    candidates = runs[(runs["status"] == "FINISHED") & runs[column].notna()]
    if candidates.empty:
        raise ComparisonError(f"no FINISHED run has the metric {metric!r} "
                              f"({len(runs)} runs, statuses: {sorted(set(runs['status']))})")
    return ranked(candidates, metric, direction)


def best_run(runs: pd.DataFrame, metric: str, direction: Optional[str] = None) -> pd.Series:
    """The FINISHED run with the best `metric`."""
    return finished_ranked(runs, metric, direction).iloc[0]


def summary_table(runs: pd.DataFrame, metric: str, direction: Optional[str] = None,
                  extra_metrics: Sequence[str] = ()) -> pd.DataFrame:
    """The ranked runs as a person reads them: name, status, metrics, swept params, duration;
    a search's trials with their trial number."""
    ordered = ranked(runs, metric, direction)
    metrics = [metric, *[m for m in extra_metrics if m != metric and f"metrics.{m}" in runs]]
    columns = {"run_id": "run_id"}
    trial = f"tags.{TRIAL_TAG}"
    if trial in ordered and ordered[trial].notna().any():
        ordered[trial] = pd.to_numeric(ordered[trial], errors="coerce").astype("Int64")
        columns[trial] = "trial"
    columns = {**columns, "run_name": "run", "status": "status",
               **{f"metrics.{m}": m for m in metrics},
               **{p: p[len("params."):] for p in swept_params(runs)},
               "duration_s": "seconds"}
    error = f"tags.{ERROR_TAG}"
    if error in ordered and ordered[error].notna().any():
        columns[error] = "error"  # why runs failed, next to them
    table = ordered[list(columns)].rename(columns=columns)
    table.index = pd.RangeIndex(1, len(table) + 1, name="rank")
    return table
