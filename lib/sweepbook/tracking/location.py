"""Where a store keeps its runs and artifacts, and whether it can be used (no MLflow import:
sweeps place their jobs and check the store with it before paying for MLflow)."""
import contextlib
import sqlite3
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


class StoreError(ValueError):
    """A store that cannot be used as it is: not a database, or the experiment is deleted."""


def deleted_hint(name: str, experiment_id) -> str:
    return (f"MLflow experiment {name!r} (id {experiment_id}) is deleted: restore it with "
            f"`mlflow experiments restore --experiment-id {experiment_id}` or choose another "
            f"expname")


def _unreadable(database: Path, error: Exception) -> StoreError:
    return StoreError(
        f"the store {database} cannot be read as an SQLite database ({error}): move it "
        f"away (a new store is then created in its place) or restore it from a backup, "
        f"or point tracking.uri at another store")


def check_store(uri: str, expname: Optional[str] = None) -> None:
    """Refuse a SQLite store that is not a database, or whose experiment `expname` is deleted,
    before anything is written to it (other stores are judged when MLflow opens them).

    It reads the schema only: a full integrity check would read the whole file."""
    database = sqlite_file(uri)
    if database is None or not database.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro",
                                                uri=True)) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            found = connection.execute(
                "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?",
                (expname,)).fetchone() if expname and "experiments" in tables else None
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return  # another process writes to it (a sweep beside this one): healthy, busy
        raise _unreadable(database, error) from None
    except sqlite3.Error as error:
        raise _unreadable(database, error) from None
    if tables and "experiments" not in tables:
        raise StoreError(f"{database} is an SQLite database but not an MLflow store (no "
                         f"experiments table): point tracking.uri at another file")
    if found and found[1] == "deleted":
        raise StoreError(deleted_hint(expname, found[0]))
