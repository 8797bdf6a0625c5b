"""`sweepbook rerun RUN_ID`: a run executed again from its record alone, its final metrics
beside the original's.

    outcomes = rerun(store_cfg, run_id)  # RerunError: refused before anything is created
    metrics_table(outcomes)  # the final metrics of both runs, side by side

The record says what ran: the notebook (tag mlflow.source.name, relative to the project root),
its primary config, its overrides (overrides.yaml) and its git commit with the dirty flag. The
notebook runs from, in this order of preference:
- the recorded commit, when the run was made from a clean tree: in place when this checkout is
  at that commit and clean, else in a temporary `git worktree` at it, with that commit's conf/
  and its lib/ first on PYTHONPATH (the recorded code runs, not the installed package);
- the executed notebook logged on the run (commit unknown, dirty tree, --from-notebook), with
  this checkout's conf/ and lib/;
- the notebook as it is now in this checkout, said on stderr.
The new run goes to the same store with torch's recorded thread count (results differ in
their last digits between thread counts), tagged sweepbook.rerun_of=<id>. A sweep's or a
search's parent reruns each of its FINISHED children, one after another.
"""
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweepbook import notebook as notebooks
from sweepbook.config import (OVERRIDES_ENV, ROOT_ENV, SECRETS_ENV, TRACKING_URI_ENV,
                              ConfigError, project_root, read_secrets)
from sweepbook.env import patched_environ
from sweepbook.params import redact_uri
from sweepbook.redaction import REDACTED
from sweepbook.tracking import record
from sweepbook.tracking.location import StoreError, check_store, sqlite_file
from sweepbook.tracking.run import git

IN_PLACE, WORKTREE, LOGGED, CURRENT = "in place", "worktree", "logged", "current"
KEPT_PATHS = ("paths.output_dir", "paths.data_dir")  # a worktree's would vanish with it
NOT_COMPARED = ("system/",)  # system metrics (CPU, memory) differ on every run
NO_PROGRESS_BAR = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # on each small download


class RerunError(ValueError):
    """A run that cannot be rerun, found before anything is created."""


@dataclass(frozen=True)
class Project:
    """This checkout: its root (conf/), and where git says it stands."""
    root: Path
    top: Optional[Path]  # the git work tree holding the root; None outside git
    head: Optional[str]
    dirty: bool

    @classmethod
    def here(cls) -> "Project":
        root = project_root()
        top = git(root, "rev-parse", "--show-toplevel")
        if not top:
            return cls(root, None, None, False)
        status = git(root, "status", "--porcelain", "--untracked-files=no")
        return cls(root, Path(top), git(root, "rev-parse", "HEAD"), bool(status))

    def in_git(self, relative: Path) -> str:
        """A path relative to the root, as git names it from the top of the work tree."""
        return (self.root.relative_to(self.top) / relative).as_posix()


@dataclass
class Source:
    """Where the rerun's notebook comes from."""
    kind: str  # IN_PLACE, WORKTREE, LOGGED or CURRENT
    notebook: str  # relative to the project root; for LOGGED, the artifact's path
    commit: Optional[str] = None  # WORKTREE's
    folder: Optional[Path] = None  # LOGGED: its folder in this checkout, for its modules
    note: Optional[str] = None  # why this source, said on stderr

    def describe(self) -> str:
        return {IN_PLACE: f"{self.notebook} at commit {(self.commit or '')[:12]} (this "
                          "checkout)",
                WORKTREE: f"{self.notebook} at commit {(self.commit or '')[:12]} (a "
                          "temporary worktree)",
                LOGGED: f"the notebook logged on the run ({self.notebook})",
                CURRENT: f"{self.notebook} as it is now"}[self.kind]


@dataclass
class Rerun:
    """One run to execute again, and everything it needs, checked."""
    original: Run
    overrides: List[str]  # the real ones (secrets put back)
    config_name: str
    source: Source
    threads: Optional[str]  # torch's CPU threads of the original, when recorded


@dataclass
class Outcome:
    original: Run
    run: Optional[Run]  # the new run (None when none was made)
    source: Source
    error: Optional[str] = None  # why the rerun failed
    stopped_by: Optional[int] = None  # the signal that stopped it
    warnings: List[str] = field(default_factory=list)


def _short(run: Run) -> str:
    return run.info.run_id[:8]


def read_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise RerunError(f"no run {run_id!r} in {redact_uri(uri)}: give the id of a run "
                         f"(sweepbook runs lists them; MLFLOW_TRACKING_URI or tracking=... "
                         f"names another store)") from None


def _children(client: MlflowClient, parent: Run) -> List[Run]:
    """A parent's FINISHED children, in the order they were made; the others are said (a
    pruned trial stopped early, a failed one would fail again: neither has final metrics)."""
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`{record.PARENT_TAG}` = '{parent.info.run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=50000)
    finished = [run for run in runs if run.info.status == "FINISHED"]
    if not finished:
        raise RerunError(f"run {parent.info.run_id} is a sweep's parent with no FINISHED "
                         f"child run to rerun ({len(runs)} children)")
    if len(finished) < len(runs):
        print(f"sweepbook: rerun of {parent.info.run_id}: {len(finished)} FINISHED children "
              f"of {len(runs)} (the others have no final metrics)", file=sys.stderr)
    return finished


def _download(client: MlflowClient, run: Run, artifact: str, folder: str) -> Path:
    with patched_environ(NO_PROGRESS_BAR):
        return Path(client.download_artifacts(run.info.run_id, artifact, folder))


def _overrides(client: MlflowClient, run: Run) -> List[str]:
    """The overrides the run was composed with: overrides.yaml (a list, exact), else the tag;
    a secret (recorded as ***) is put back from $SWEEPBOOK_SECRETS_FILE, as a sweep's are."""
    try:
        with tempfile.TemporaryDirectory(prefix="sweepbook-rerun-") as folder:
            path = _download(client, run, record.OVERRIDES_ARTIFACT, folder)
            overrides = [str(o) for o in yaml.safe_load(path.read_text()) or []]
    except (MlflowException, OSError, yaml.YAMLError):
        overrides = run.data.tags.get(record.OVERRIDES_TAG, "").split()
    secret = read_secrets(os.environ[SECRETS_ENV]) if os.environ.get(SECRETS_ENV) else {}
    overrides = [secret.get(override, override) for override in overrides]
    hidden = [override for override in overrides if REDACTED in override]
    if hidden:
        raise RerunError(
            f"run {run.info.run_id} was made with secret overrides, never recorded: "
            f"{' '.join(hidden)}; give them in a JSON file mapping each to the real override "
            f"({{\"{hidden[0]}\": \"...\"}}), named by ${SECRETS_ENV}")
    return overrides


def _notebook_name(client: MlflowClient, run: Run) -> Optional[str]:
    """The notebook as recorded; a sweep's child of a notebook that named none: its
    parent's sweep.notebook."""
    name = run.data.tags.get(record.SOURCE_NAME_TAG)
    if name and name != "unknown":
        return name
    parent_id = run.data.tags.get(record.PARENT_TAG)
    try:
        parent = client.get_run(parent_id) if parent_id else None
    except MlflowException:  # its parent was deleted
        return None
    return parent.data.params.get(record.SWEEP_NOTEBOOK_PARAM) if parent else None


def _relative(project: Project, name: str) -> Optional[Path]:
    """The notebook's path relative to the project root; None for one outside it."""
    path = Path(name)
    if not path.is_absolute():
        return path
    try:
        return path.resolve().relative_to(project.root)
    except ValueError:
        return None


def _logged_notebook(client: MlflowClient, run: Run) -> Optional[str]:
    """The executed notebook a job logged at the run's root, if any."""
    names = [a.path for a in client.list_artifacts(run.info.run_id) if not a.is_dir
             and a.path.endswith(".ipynb")]
    return sorted(names)[0] if names else None


def _at_commit(project: Project, run: Run, relative: Optional[Path],
               from_notebook: bool) -> Tuple[Optional[Source], str]:
    """The notebook at the recorded commit, or why not."""
    tags = run.data.tags
    commit = tags.get(record.GIT_COMMIT_TAG)
    if from_notebook:
        return None, "--from-notebook"
    if not commit:
        return None, "its git commit is unknown"
    if tags.get(record.GIT_DIRTY_TAG) != "false":
        return None, f"it was made from a tree with uncommitted changes (commit {commit[:12]})"
    if project.top is None:
        return None, f"{project.root} is not in a git repository"
    if git(project.root, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None, f"its commit {commit[:12]} is not in this repository"
    if relative is None or git(project.root, "cat-file", "-e",
                               f"{commit}:{project.in_git(relative)}") is None:
        return None, f"its notebook is not in commit {commit[:12]}"
    kind = IN_PLACE if commit == project.head and not project.dirty else WORKTREE
    return Source(kind, relative.as_posix(), commit), ""


def _source(client: MlflowClient, project: Project, run: Run, name: str,
            from_notebook: bool) -> Source:
    relative = _relative(project, name)
    source, why = _at_commit(project, run, relative, from_notebook)
    if source is not None:
        return source
    logged = _logged_notebook(client, run)
    folder = project.root / relative.parent if relative is not None else None
    if logged:
        return Source(LOGGED, logged, folder=folder,
                      note=f"{why}: running the notebook logged on the run ({logged})")
    if not from_notebook and relative is not None and (project.root / relative).is_file():
        return Source(CURRENT, relative.as_posix(), note=(
            f"{why} and no notebook is logged on it: running {relative} as it is now"))
    gone = f"{name} no longer exists and " if relative is None or not (
        project.root / relative).is_file() else ""
    raise RerunError(f"run {run.info.run_id} cannot be rerun: {why}; {gone}no notebook is "
                     f"logged on the run")


def plan(client: MlflowClient, project: Project, run: Run, from_notebook: bool) -> Rerun:
    """What rerunning `run` takes, checked: a run of sweepbook's, its notebook findable."""
    tags = run.data.tags
    if record.CONFIG_NAME_TAG not in tags:
        raise RerunError(f"run {run.info.run_id} was not made by sweepbook (it has no "
                         f"{record.CONFIG_NAME_TAG} tag): rerun runs that a sweepbook notebook "
                         f"recorded with start_run")
    name = _notebook_name(client, run)
    if not name:
        raise RerunError(f"run {run.info.run_id} does not record its notebook "
                         f"({record.SOURCE_NAME_TAG}): pass notebook=... to start_run")
    source = _source(client, project, run, name, from_notebook)
    return Rerun(run, _overrides(client, run), tags[record.CONFIG_NAME_TAG], source,
                 tags.get(record.THREADS_TAG))


def _store_client(uri: str, run_id: str) -> MlflowClient:
    """A client on an existing store: a rerun never creates one."""
    database = sqlite_file(uri)
    if database is not None and not database.is_file():
        raise RerunError(f"no run {run_id!r} in {redact_uri(uri)}: there is no store at "
                         f"{database}")
    check_store(uri)
    return MlflowClient(uri)


def plan_reruns(store_cfg, run_id: str,
                from_notebook: bool = False) -> Tuple[List[Rerun], Project]:
    """The reruns `run_id` stands for (each FINISHED child of a parent), each one's record
    and notebook checked before any is executed (its config is composed when it runs), and
    this checkout they run from."""
    uri = store_cfg.tracking.uri
    client = _store_client(uri, run_id)
    run = read_run(client, run_id, uri)
    runs = _children(client, run) if run.data.tags.get(record.ROLE_TAG) == \
        record.PARENT_ROLE else [run]
    project = Project.here()
    return [plan(client, project, each, from_notebook) for each in runs], project


def rerun(store_cfg, run_id: str, from_notebook: bool = False,
          quiet: bool = False) -> List[Outcome]:
    """Run `run_id` (or each FINISHED child of a parent) again, one after another; a signal
    stops after the rerun it stopped. RerunError before anything is executed."""
    reruns, project = plan_reruns(store_cfg, run_id, from_notebook)
    outcomes = []
    for each in reruns:
        outcomes.append(execute(each, store_cfg, project, quiet))
        if outcomes[-1].stopped_by is not None:
            break
    return outcomes


def _worktree(project: Project, commit: str, folder: Path) -> Path:
    """A detached git worktree of `commit` in `folder`; the project root inside it."""
    done = subprocess.run(["git", "-C", str(project.top), "worktree", "add", "--detach",
                           "--quiet", str(folder), commit], capture_output=True, text=True)
    if done.returncode != 0:
        raise RerunError(f"git worktree add of commit {commit[:12]} failed: "
                         f"{done.stderr.strip()}")
    return folder / project.root.relative_to(project.top)


def _remove_worktree(project: Project, folder: Path) -> None:
    subprocess.run(["git", "-C", str(project.top), "worktree", "remove", "--force",
                    str(folder)], capture_output=True)
    if folder.exists():  # half made: its files, then git's note of it
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(project.top), "worktree", "prune"],
                       capture_output=True)


def _prepended(variable: str, path: Path) -> str:
    return os.pathsep.join([str(path), *filter(None, [os.environ.get(variable)])])


def _set_here(overrides: List[str], store_cfg) -> List[str]:
    """KEPT_PATHS the overrides do not set, as this project has them: the worktree's own
    outputs/ and data/ (ignored by git) are removed with it, or were never there."""
    given = {override.lstrip("+~").partition("=")[0] for override in overrides}
    return [f"{key}={store_cfg.paths[key.split('.')[1]]}" for key in KEPT_PATHS
            if key not in given]


@contextlib.contextmanager
def checkout(rerun: Rerun, project: Project, client: MlflowClient,
             store_cfg) -> Iterator[Tuple[Path, List[str], Dict[str, Optional[str]]]]:
    """The notebook to execute, its overrides and the kernel's environment for its source;
    a worktree or a downloaded notebook is removed after, whatever happens."""
    source = rerun.source
    with tempfile.TemporaryDirectory(prefix="sweepbook-rerun-") as temporary:
        folder = Path(temporary)
        if source.kind in (IN_PLACE, CURRENT):
            yield project.root / source.notebook, rerun.overrides, {}
        elif source.kind == LOGGED:
            path = _download(client, rerun.original, source.notebook, temporary)
            modules = {"PYTHONPATH": _prepended("PYTHONPATH", source.folder)} \
                if source.folder and source.folder.is_dir() else {}  # its folder's modules
            yield path, rerun.overrides, {ROOT_ENV: str(project.root), **modules}
        else:
            tree = folder / "worktree"
            try:
                root = _worktree(project, source.commit, tree)
                lib = root / "lib"
                code = {"PYTHONPATH": _prepended("PYTHONPATH", lib)} \
                    if (lib / "sweepbook").is_dir() else {}
                yield (root / source.notebook,
                       rerun.overrides + _set_here(rerun.overrides, store_cfg),
                       {ROOT_ENV: str(root), **code})
            finally:
                _remove_worktree(project, tree)


def _environment(rerun: Rerun, uri: str) -> Dict[str, Optional[str]]:
    """The kernel's: the original's store and thread count, and only the recorded overrides
    ($SWEEPBOOK_OVERRIDES were recorded with them)."""
    threads = {"OMP_NUM_THREADS": rerun.threads} if rerun.threads else {}
    return {TRACKING_URI_ENV: uri, OVERRIDES_ENV: None, record.RUN_ID_ENV: None, **threads}


def execute(rerun: Rerun, store_cfg, project: Project, quiet: bool = False) -> Outcome:
    """Run the notebook again as `rerun` says, tagged rerun_of the original."""
    from sweepbook.executors.job import run_notebook

    uri = store_cfg.tracking.uri
    client = MlflowClient(uri)
    original, source = rerun.original, rerun.source
    if source.note:
        print(f"sweepbook: rerun of {original.info.run_id}: {source.note}", file=sys.stderr)
    try:
        with checkout(rerun, project, client, store_cfg) as (path, overrides, env):
            with patched_environ({**_environment(rerun, uri), **env}):
                found = notebooks.inspect(path)
                if rerun.config_name not in ("unknown", found.config_name):
                    raise ConfigError(f"the run was made with config {rerun.config_name!r}, "
                                      f"but its notebook names {found.config_name!r}")
                cfg = found.compose(overrides, check_targets=False)  # the kernel checks them
                execution = run_notebook(path, cfg, overrides, progress=not quiet,
                                         tags={record.RERUN_OF_TAG: original.info.run_id})
            if source.kind == LOGGED:  # start_run hashed the checkout's file, not this copy
                client.set_tag(execution.run.info.run_id, record.NOTEBOOK_HASH_TAG,
                               notebooks.code_hash(path))
    except (ConfigError, StoreError, RerunError) as error:
        return Outcome(original, None, source, f"cannot run {source.describe()}: {error}")
    new = client.get_run(execution.run.info.run_id)
    return Outcome(original, new, source, execution.error, execution.stopped_by,
                   provenance_warnings(original, new))


def provenance_warnings(original: Run, new: Run) -> List[str]:
    """What makes the two runs' inputs differ, where both recorded it."""
    said = []
    for tag, what in ((record.DATA_DIGEST_TAG, "the data's digest"),
                      (record.NOTEBOOK_HASH_TAG, "the notebook's code hash")):
        before, after = original.data.tags.get(tag), new.data.tags.get(tag)
        if before and after and before != after:
            said.append(f"{what} differs ({tag}: {before[:12]} -> {after[:12]})")
    return said


def final_metrics(run: Optional[Run]) -> Dict[str, float]:
    """Each metric's latest value, system metrics left out."""
    metrics = run.data.metrics if run is not None else {}
    return {k: v for k, v in metrics.items() if not k.startswith(NOT_COMPARED)}


def same(a: Optional[float], b: Optional[float]) -> bool:
    """Exactly equal (NaN equals NaN); a metric only one run has is not the same."""
    if a is None or b is None:
        return False
    return a == b or (math.isnan(a) and math.isnan(b))


def metrics_table(outcomes: List[Outcome]):
    """Final metrics side by side: one row per run and metric (original, rerun, delta, same)."""
    import pandas as pd

    rows = []
    for outcome in outcomes:
        before, after = final_metrics(outcome.original), final_metrics(outcome.run)
        for metric in sorted(set(before) | set(after)):
            a, b = before.get(metric), after.get(metric)
            delta = b - a if a is not None and b is not None else math.nan
            rows.append({"run": _short(outcome.original), "metric": metric,
                         "original": a, "rerun": b, "delta": delta, "same": same(a, b)})
    return pd.DataFrame(rows, columns=["run", "metric", "original", "rerun", "delta", "same"])
