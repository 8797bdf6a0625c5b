"""Where a store keeps its runs and artifacts (no MLflow import: sweeps place their jobs with
it before paying for MLflow)."""
from pathlib import Path
from typing import Optional

SQLITE_PREFIX = "sqlite:///"


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
