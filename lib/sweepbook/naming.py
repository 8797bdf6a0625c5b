"""How runs and folders are named, and where a store keeps its artifacts (no MLflow import:
sweeps validate their jobs with these before paying for MLflow)."""
from pathlib import Path
from typing import Iterable, Optional

from sweepbook.params import redact_overrides

SQLITE_PREFIX = "sqlite:///"
RUN_ID_ENV = "MLFLOW_RUN_ID"  # MLflow resumes this run: never let it reach a new run
ERROR_TAG = "sweepbook.error"  # why a run ended FAILED or KILLED
SWEEP_TAG = "sweepbook.sweep_id"  # on a sweep's parent and children
ROLE_TAG = "sweepbook.role"  # 'parent' on a sweep's parent run
NAME_SKIPS = ("tracking.", "paths.", "runname=", "expname=")
MAX_RUN_NAME = 250


def safe_name(name: str) -> str:
    """A file-name-safe version of an experiment name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a `sqlite:///` tracking URI; None for any other store."""
    return Path(uri[len(SQLITE_PREFIX):]) if uri.startswith(SQLITE_PREFIX) else None


def artifact_root(uri: str, cfg) -> Optional[str]:
    """tracking.artifact_root, else a folder `mlartifacts` beside a SQLite store's file.

    None leaves the choice to a tracking server.
    """
    if cfg.tracking.artifact_root:
        return str(Path(cfg.tracking.artifact_root).expanduser().resolve())
    database = sqlite_file(uri)
    return str(database.parent / "mlartifacts") if database else None


def run_name(cfg, overrides: Iterable[str]) -> str:
    """cfg.runname, else the overrides that change the model ('model=mlp,lr=0.01')."""
    if cfg.runname:
        return cfg.runname
    shown = []
    for override in redact_overrides(list(overrides)):
        key, _, value = override.lstrip("+~").partition("=")
        if not override.lstrip("+~").startswith(NAME_SKIPS):
            shown.append(f"{key.rsplit('.', 1)[-1]}={value}")
    model = getattr(cfg.model.name, "value", cfg.model.name)
    data = getattr(cfg.data.name, "value", cfg.data.name)
    return (",".join(shown) or f"{model}-{data}")[:MAX_RUN_NAME]
