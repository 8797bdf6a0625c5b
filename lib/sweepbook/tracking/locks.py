"""Locks beside the store, so that processes sharing a store never race.

- The store's first use: parallel processes opening a fresh SQLite store together run its
  schema migrations twice (alembic "Online migration expected to match one row", "table
  latest_metrics already exists"); one at a time, the second finds the schema made.
- The first use of the studies' database (Optuna's, beside the store), the same way.
- One driver per sweep (or search): a second driver of the same sweep id is refused, instead of both
  running the same jobs into the same notebook paths.

Both are `fcntl.flock` locks on files in `<mlflow.db>.sweepbook/locks/` (beside the output
folder for a tracking server): the kernel drops them when their holder dies, so a stale lock
from a killed driver is simply taken over. Lock files are opened close-on-exec: jobs never
inherit them.

`<mlflow.db>.sweepbook/` also holds the store's private state (private_folder): a sweep's
secret overrides, kept out of outputs/, which is shared and logged.
"""
import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional

from sweepbook.tracking.location import sqlite_file

LOCKS = "locks"  # the folder of lock files in `<mlflow.db>.sweepbook/`


class LockHeld(RuntimeError):
    """Another live process holds the lock; its PID, when it wrote one."""

    def __init__(self, path: Path, pid: Optional[str]):
        super().__init__(f"{path} is held by process {pid or 'unknown'}")
        self.path, self.pid = path, pid


def _beside_store(tracking_uri: str) -> Optional[Path]:
    """sweepbook's folder beside a store's SQLite file; None for a tracking server."""
    database = sqlite_file(tracking_uri)
    return None if database is None else database.parent / f"{database.name}.sweepbook"


def lock_folder(tracking_uri: str, output_dir: str) -> Path:
    """Where a store's locks live: beside its SQLite file, or under the output folder for a
    store that is not a local file (a tracking server)."""
    beside = _beside_store(tracking_uri)
    return beside / LOCKS if beside else Path(output_dir) / "sweeps" / ".locks"


def private_folder(tracking_uri: str, name: str) -> Path:
    """A folder only its owner can enter (made if needed), for a store's private state: beside
    its SQLite file, or in the user's state folder for a tracking server; never in outputs/."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    folder = (_beside_store(tracking_uri) or state / "sweepbook") / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # one made before, or under a loose umask
    return folder


def _open(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a+")  # Python opens files close-on-exec


@contextlib.contextmanager
def exclusive(path: Path, wait: bool) -> Iterator[None]:
    """Hold `path` exclusively; wait for it, or raise LockHeld at once (`wait=False`). The
    holder's PID is written into the file for the message of whoever is refused."""
    with _open(path) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            file.seek(0)
            raise LockHeld(path, file.read().strip() or None) from None
        file.seek(0)
        file.truncate()
        file.write(str(os.getpid()))
        file.flush()
        try:
            yield
        finally:
            file.truncate(0)
            fcntl.flock(file, fcntl.LOCK_UN)


def first_use(tracking_uri: str):
    """Serializes opening the store (waits for the other process; no-op cost otherwise)."""
    beside = _beside_store(tracking_uri)
    if beside is None:
        return contextlib.nullcontext()  # a server serializes its own migrations
    return exclusive(beside / LOCKS / "first-use.lock", wait=True)


def first_study_use(tracking_uri: str, output_dir: str):
    """Serializes opening the studies' database (Optuna migrates a fresh one as MLflow does)."""
    return exclusive(lock_folder(tracking_uri, output_dir) / "study-first-use.lock", wait=True)


def sweep_driver(tracking_uri: str, output_dir: str, sweep_id: str):
    """Held by the one driver of sweep `sweep_id` on this store; LockHeld for a second one."""
    return exclusive(lock_folder(tracking_uri, output_dir) / f"sweep-{sweep_id}.lock",
                     wait=False)
