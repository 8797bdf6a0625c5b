"""A search's trial seen from inside its job: the metric the notebook already logs through its
tracked run (`run.log_metrics`) is reported to the Optuna trial, and when the trial's pruner
says stop, the training ends with TrialPruned, which start_run understands (run.py).

The search's driver (sweep/tune.py) asks the study for a trial and hands the job its link in
$SWEEPBOOK_TRIAL; the job opens the study's own database to report. Without that variable
nothing here runs, and Optuna is not even imported.

The study never lives in MLflow's database: both keep an `alembic_version` table, and an
Optuna 5 study in MLflow's SQLite file fails at once. Its own file sits beside the store.
"""
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

from sweepbook.params import redact_uri
from sweepbook.tracking.location import StoreError, sqlite_file

TRIAL_ENV = "SWEEPBOOK_TRIAL"  # JSON: a TrialLink, set for a search's jobs only
STUDY_STORAGE_ENV = "SWEEPBOOK_STUDY_STORAGE"  # the studies' database where there is no file
STUDY_DB = "optuna.db"  # beside mlflow.db
SQLITE_TIMEOUT_S = 60  # jobs and driver write the study's file at once: wait, never fail
PRUNERS = ("median", "hyperband", "none")


class TrialPruned(Exception):
    """The trial's pruner stopped the training: the run ends KILLED, tagged pruned (run.py),
    and the search counts it as pruned, never as a failure."""


@dataclass
class TrialLink:
    """What a job needs to report to its trial."""
    storage: str  # the study's database URL
    study: str
    trial_id: int  # the storage's id of the trial (not its number)
    number: int  # the trial's number in its study
    metric: str  # the metric reported, as the notebook logs it per step
    pruner: str  # one of PRUNERS, built the same way as the driver's

    def environment(self) -> Dict[str, str]:
        return {TRIAL_ENV: json.dumps(asdict(self))}

    @classmethod
    def from_environment(cls) -> Optional["TrialLink"]:
        text = os.environ.get(TRIAL_ENV)
        return cls(**json.loads(text)) if text else None


def study_storage(tracking_uri: str) -> str:
    """The studies' database: $SWEEPBOOK_STUDY_STORAGE, else optuna.db beside a SQLite store,
    else the `optuna` database of this project's server (`sweepbook server`)."""
    given = os.environ.get(STUDY_STORAGE_ENV)
    if given:
        return given
    db = sqlite_file(tracking_uri)
    if db is None:
        from sweepbook.tracking.server import study_database_for

        on_server = study_database_for(tracking_uri)
        if on_server:
            return on_server
        raise StoreError(
            f"the tracking store {redact_uri(tracking_uri)} is not a SQLite file, so a search "
            f"has no place for its study: set {STUDY_STORAGE_ENV} to a database URL of its own "
            f"(for example postgresql://user@host/optuna), never MLflow's own database")
    return f"sqlite:///{Path(db).resolve().with_name(STUDY_DB)}"


def open_storage(url: str):
    """Optuna's RDB storage at `url`; SQLite waits for the other writers (jobs report while
    the driver asks and tells)."""
    import optuna

    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def make_pruner(name: str):
    """The pruner called `name` (one of PRUNERS): the driver and every job build the same."""
    import optuna

    if name == "median":  # a trial below the median of earlier ones at the same step stops
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner {name!r}: valid are {', '.join(PRUNERS)}")


class TrialReporter:
    """Reports one metric of a run to its trial, and stops the training when pruned."""

    def __init__(self, link: TrialLink):
        import optuna

        self.link = link
        study = optuna.load_study(study_name=link.study, storage=open_storage(link.storage),
                                  pruner=make_pruner(link.pruner))
        self.trial = optuna.trial.Trial(study, link.trial_id)

    def report(self, metrics: Dict[str, float], step: int) -> None:
        """Report the link's metric if `metrics` has it; raise TrialPruned if told to stop."""
        value = metrics.get(self.link.metric)
        if value is None:
            return
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at step {step} by the {self.link.pruner} pruner: "
                              f"{self.link.metric}={float(value):.4g}")


def reporter_from_environment() -> Optional[TrialReporter]:
    """The reporter of this job's trial, or None outside a search."""
    link = TrialLink.from_environment()
    return TrialReporter(link) if link else None
