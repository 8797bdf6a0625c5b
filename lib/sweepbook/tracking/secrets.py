"""Secret overrides kept out of everything a job writes.

A job receives its overrides redacted (`+db.password=***`), so papermill's injected cell, the
executed notebook's metadata and a sweep's record never hold a secret. The real overrides wait
in a JSON file only its owner can read, named by $SWEEPBOOK_SECRETS_FILE in the job's
environment, mapping each redacted override to the real one; config.compose() puts them back,
so the config (and its hash) is the one the real overrides make.

    shown, secret = split(["+db.password=hunter2", "model=mlp"])
    # shown == ["+db.password=***", "model=mlp"]
    # secret == {"+db.password=***": "+db.password=hunter2"}
"""
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from sweepbook.config import SECRETS_ENV, ConfigError, read_secrets
from sweepbook.env import patched_environ
from sweepbook.params import redact_override, redact_overrides
from sweepbook.tracking.locks import private_folder

SECRETS_FOLDER = "secrets"  # a sweep's file, for --resume: in the store's private folder
DEFINITION_KEY = "secrets"  # where a sweep's definition names that file


def _add(secret: Dict[str, str], shown: str, real: str) -> None:
    if secret.setdefault(shown, real) != real:
        key = shown.partition("=")[0]
        raise ConfigError(f"{key} takes different secret values, which all read {shown} where "
                          f"a job receives them: a job could not tell its own; give {key} one "
                          f"value")


def split(overrides: Iterable[str]) -> Tuple[List[str], Dict[str, str]]:
    """The overrides with secrets redacted, and each redacted override that hides a secret
    mapped to the real one (the last of equal-looking ones: the one that wins in Hydra)."""
    shown, secret = [], {}
    for override in overrides:
        redacted = redact_override(override)
        shown.append(redacted)
        if redacted != override:
            secret[redacted] = override
    return shown, secret


def secret_overrides(jobs: Iterable[Sequence[str]]) -> Dict[str, str]:
    """The secret overrides of every job, in one mapping (a sweep's jobs share one file)."""
    secret: Dict[str, str] = {}
    for overrides in jobs:
        for shown, real in split(overrides)[1].items():
            _add(secret, shown, real)
    return secret


def write(path: Path, secret: Dict[str, str]) -> Path:
    """Keep `secret` in `path`, readable and writable by its owner only from the start; a
    symlink planted at `path` is refused, not followed (it would carry the secrets away)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a file that was already there keeps its mode otherwise
    with os.fdopen(fd, "w") as file:
        json.dump(secret, file)
    return path


@contextlib.contextmanager
def passed(overrides: Sequence[str]) -> Iterator[List[str]]:
    """The overrides to give one job (redacted); inside the block $SWEEPBOOK_SECRETS_FILE names
    a private temporary file with their secrets (or is unset: there are none), removed after."""
    shown, secret = split(overrides)
    if not secret:
        with patched_environ({SECRETS_ENV: None}):
            yield shown
        return
    fd, path = tempfile.mkstemp(prefix="sweepbook-secrets-", suffix=".json")  # mode 0600
    os.close(fd)
    try:
        write(Path(path), secret)
        with patched_environ({SECRETS_ENV: path}):
            yield shown
    finally:
        os.unlink(path)


def hide_in_definition(definition: Dict, tracking_uri: str,
                       sweep_id: str) -> Tuple[Dict, Optional[Path]]:
    """A sweep's definition as it is recorded (overrides redacted, the secrets file named), and
    that file, written in the store's private folder when any job has a secret (None when none
    has): never in outputs/, which is shared and logged."""
    secret = secret_overrides(job["overrides"] for job in definition["jobs"])
    jobs = [{**job, "overrides": redact_overrides(job["overrides"])}
            for job in definition["jobs"]]
    shown = {**definition, "overrides": redact_overrides(definition["overrides"]), "jobs": jobs}
    if not secret:
        return shown, None
    path = write(private_folder(tracking_uri, SECRETS_FOLDER) / f"sweep-{sweep_id}.json", secret)
    return {**shown, DEFINITION_KEY: str(path)}, path


def forget(path: Optional[Path]) -> None:
    """Delete a sweep's secrets file once nothing is left to resume (every job finished or
    skipped): a secret is kept no longer than needed."""
    if path is not None:
        path.unlink(missing_ok=True)


def restore_definition(definition: Dict) -> Dict:
    """A recorded sweep definition with its jobs' real overrides back, for --resume."""
    if DEFINITION_KEY not in definition:
        return definition
    try:
        secret = read_secrets(definition[DEFINITION_KEY])
    except ConfigError as error:
        raise ConfigError(f"{error}\nthe sweep's secret overrides are gone (deleted once every "
                          f"job finished): run the sweep again with all its overrides instead of "
                          f"resuming it (finished jobs are skipped)") from None
    jobs = [{**job, "overrides": [secret.get(o, o) for o in job["overrides"]]}
            for job in definition["jobs"]]
    return {**definition, "jobs": jobs}
