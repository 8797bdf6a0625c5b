"""`sweepbook rerun`: a run executed again from its record gives the same final metrics, from
the recorded commit (in place, or a temporary worktree once the checkout moved on), or from the
notebook logged on the run when the tree was dirty; a sweep's parent reruns every child.

The runs are made in a clone of this checkout (its working tree committed: the tests may run
from a dirty checkout), with the `sweepbook` command a user types and the clone's lib/ first on
PYTHONPATH, as in a fresh clone's own environment.
"""
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweepbook.cli import main
from sweepbook.config import compose
from sweepbook.notebook import code_hash
from sweepbook.tracking import record, start_run

from conftest import ROOT, SMOKE, SWEEPBOOK, run

FAST = [*SMOKE, "tracking.log_model=false"]
COMMITTER = ["-c", "user.name=sweepbook tests", "-c", "user.email=tests@sweepbook.invalid"]
CLONE_GROUP = pytest.mark.xdist_group("rerun-clone")  # one worker: the clone's tests in order


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *COMMITTER, *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout.strip()


def clone_of_this_checkout(folder: Path) -> Path:
    """A clone of this repository whose HEAD is this checkout's working tree, committed."""
    git(ROOT, "clone", "--quiet", str(ROOT), str(folder))
    for name in git(ROOT, "ls-files", "-co", "--exclude-standard", "-z").split("\0"):
        if name and (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    for name in git(ROOT, "ls-files", "--deleted", "-z").split("\0"):
        if name:
            (folder / name).unlink(missing_ok=True)
    git(folder, "add", "-A")
    git(folder, "commit", "--quiet", "--allow-empty", "-m", "this checkout's working tree")
    return folder


@dataclass
class Clone:
    root: Path
    uri: str
    outputs: Path

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in (
            "SWEEPBOOK_OVERRIDES", "SWEEPBOOK_ROOT", "MLFLOW_RUN_ID", "PYTHONPATH")}
        return {**env, "MLFLOW_TRACKING_URI": self.uri, "PYTHONPATH": str(self.root / "lib")}

    def sweepbook(self, *args: str) -> subprocess.CompletedProcess:
        return run([SWEEPBOOK, *args], self.root, self.env)

    def run_notebook(self) -> str:
        done = self.sweepbook("run", "notebooks/train.ipynb", *FAST,
                              f"paths.output_dir={self.outputs}", "--quiet")
        assert done.returncode == 0, done.stdout + done.stderr
        return re.search(r"^run id: (\w+) \(FINISHED\)", done.stdout, re.M).group(1)


def make_clone(folder: Path, store_template: Path) -> Clone:
    (folder / "store").mkdir(parents=True)
    shutil.copy(store_template, folder / "store" / "mlflow.db")
    return Clone(clone_of_this_checkout(folder / "clone"),
                 f"sqlite:///{folder / 'store' / 'mlflow.db'}", folder / "outputs")


@dataclass
class Recorded:
    clone: Clone
    run_id: str
    commit: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, store_template) -> Recorded:
    """A smoke run of train.ipynb made with `sweepbook run` in a clean clone."""
    clone = make_clone(tmp_path_factory.mktemp("rerun"), store_template)
    return Recorded(clone, clone.run_notebook(), git(clone.root, "rev-parse", "HEAD"))


def reruns_of(uri: str, run_id: str):
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{record.RERUN_OF_TAG}` = '{run_id}'",
                              order_by=["attributes.start_time DESC"])


def assert_same_record(original, new) -> None:
    """The rerun ran the same code on the same data and got bit-identical final metrics."""
    for tag in (record.NOTEBOOK_HASH_TAG, record.DATA_DIGEST_TAG, record.THREADS_TAG,
                record.CONFIG_NAME_TAG):
        assert new.data.tags[tag] == original.data.tags[tag], tag
    assert new.info.status == "FINISHED"
    assert new.data.metrics["test_acc"] == original.data.metrics["test_acc"]
    assert new.data.metrics == original.data.metrics


def table_row(out: str, metric: str) -> list:
    """A metric's row of the printed table: [run,] metric, original, rerun, delta, same."""
    return next(row for row in map(str.split, out.splitlines()) if metric in row[:2])


@pytest.mark.slow
@CLONE_GROUP
def test_rerun_at_the_recorded_commit_gives_identical_metrics(recorded):
    done = recorded.clone.sweepbook("rerun", recorded.run_id, "--check", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at commit {recorded.commit[:12]} (this checkout)" in done.stdout
    client = MlflowClient(recorded.clone.uri)
    original, (new,) = client.get_run(recorded.run_id), reruns_of(recorded.clone.uri,
                                                                  recorded.run_id)
    assert_same_record(original, new)
    assert new.data.tags[record.GIT_COMMIT_TAG] == recorded.commit
    metric, before, after, delta, same = table_row(done.stdout, "test_acc")
    assert before == after == f"{original.data.metrics['test_acc']:.8g}"
    assert (delta, same) == ("0", "True")
    assert "Downloading artifacts" not in done.stderr


@pytest.mark.slow
@CLONE_GROUP
def test_rerun_after_a_commit_that_changes_the_notebook_runs_the_recorded_version(recorded):
    clone = recorded.clone
    notebook = clone.root / "notebooks" / "train.ipynb"
    notebook.write_text(notebook.read_text().replace("seed_everything(cfg.seed)",
                                                     "seed_everything(cfg.seed + 1)"))
    git(clone.root, "commit", "--quiet", "-am", "another seed")
    edited = code_hash(notebook)
    try:
        done = clone.sweepbook("rerun", recorded.run_id, "--check", "--quiet")
    finally:
        git(clone.root, "reset", "--quiet", "--hard", recorded.commit)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"at commit {recorded.commit[:12]} (a temporary worktree)" in done.stdout
    original = MlflowClient(clone.uri).get_run(recorded.run_id)
    new = reruns_of(clone.uri, recorded.run_id)[0]
    assert_same_record(original, new)  # the recorded notebook's hash, not the edited one's
    assert edited != original.data.tags[record.NOTEBOOK_HASH_TAG]
    assert new.data.params["paths.root_dir"] != str(clone.root)  # the worktree's own conf/
    assert git(clone.root, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not Path(new.data.params["paths.root_dir"]).exists()  # removed after


@pytest.mark.slow
def test_a_dirty_sweeps_parent_reruns_each_child_from_its_logged_notebook(tmp_path,
                                                                          store_template):
    clone = make_clone(tmp_path, store_template)
    readme = clone.root / "README.md"
    readme.write_text(readme.read_text() + "\nan uncommitted change\n")
    swept = clone.sweepbook("sweep", "notebooks/train.ipynb", *FAST, "seed=0,1",
                            f"paths.output_dir={clone.outputs}", "--workers", "2", "--quiet")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    parent_id = re.search(r"parent run (\w+)", swept.stdout).group(1)
    client = MlflowClient(clone.uri)
    children = client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  f"tags.`{record.PARENT_TAG}` = '{parent_id}'")
    assert len(children) == 2 and {c.data.tags[record.GIT_DIRTY_TAG] for c in children} == {
        "true"}
    done = clone.sweepbook("rerun", parent_id, "--check", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    for child in children:
        assert re.search(rf"rerun of {child.info.run_id}: it was made from a tree with "
                         rf"uncommitted changes \(commit \w+\): running the notebook logged on "
                         rf"the run \(\d-[^)]+\.ipynb\)", done.stderr), done.stderr
        (new,) = reruns_of(clone.uri, child.info.run_id)
        assert_same_record(child, new)  # forked by the sweep, rerun in a kernel: same threads
        assert f"rerun of {child.info.run_id}: run {new.info.run_id} (FINISHED), from the " \
               f"notebook logged on the run" in done.stdout
    rows = [row for row in map(str.split, done.stdout.splitlines()) if row[1:2] == ["test_acc"]]
    assert sorted(row[0] for row in rows) == sorted(c.info.run_id[:8] for c in children)
    assert {row[-1] for row in rows} == {"True"}


@pytest.mark.slow
def test_check_exits_1_when_a_final_metric_differs(store, tmp_path, capsys):
    """A run whose notebook's numbers are not what the notebook gives (here: logged by hand)."""
    cfg = compose([*FAST, f"paths.output_dir={tmp_path / 'outputs'}"])
    with start_run(cfg, notebook="notebooks/train.ipynb") as made:
        made.log_metrics({"test_acc": 0.0})
    assert main(["rerun", made.run_id, "--check", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"--check: final metrics differ: .*\btest_acc\b", err), err
    (new,) = reruns_of(store, made.run_id)
    assert new.info.status == "FINISHED" and new.data.metrics["test_acc"] > 0.5
    metric, before, after, delta, same = table_row(out, "test_acc")
    assert (before, same) == ("0", "False")
    assert float(after) == float(delta) == pytest.approx(new.data.metrics["test_acc"])
