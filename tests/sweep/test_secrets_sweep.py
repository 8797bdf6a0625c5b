"""Secrets given as overrides to a real sweep and a real `sweepbook run`: nothing they write (the
store, its artifacts, executed notebooks and their HTML, logs, what the command prints) holds
one, except the sweep's own 0600 secrets file beside the store, until every job has finished;
`--resume` still composes the real values."""
import os
import re
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import List, Sequence

import pytest
from mlflow.tracking import MlflowClient

from sweepbook.tracking.record import NOTEBOOK_HTML_SUFFIX

from conftest import ROOT, SWEEPBOOK, run
from sweep.test_faults import faulty  # noqa: F401  (a fixture: train.ipynb with fault hooks)

TRAIN = str(ROOT / "notebooks" / "train.ipynb")


def planted():
    """Overrides holding three unique secrets, and the secrets: found anywhere, they leaked."""
    password, in_uri, token = (uuid.uuid4().hex for _ in range(3))
    return ([f"+db.password={password}", f"+db.url=postgresql://me:{in_uri}@db/runs",
             f"+vault={{token:{token},user:me}}"], (password, in_uri, token))


def holding(folder: Path, texts: Sequence[str]) -> List[Path]:
    """Every file under `folder` whose bytes hold any of `texts`."""
    return sorted(path for path in folder.rglob("*") if path.is_file()
                  and any(text.encode() in path.read_bytes() for text in texts))


@pytest.fixture
def env(store, tmp_path):
    """The test's store and smoke preset; temporary files in a folder of the test's own (short:
    Unix socket paths live there)."""
    temporary = Path(tempfile.mkdtemp(prefix="sb-"))
    yield {**os.environ, "MLFLOW_TRACKING_URI": store, "TMPDIR": str(temporary),
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'outputs'}"}
    shutil.rmtree(temporary, ignore_errors=True)


def rendered(folder: Path) -> List[Path]:
    """The executed notebooks' HTML renderings logged on the runs (as the MLflow UI shows
    them), each made from the redacted notebook."""
    pages = sorted(folder.rglob(f"*{NOTEBOOK_HTML_SUFFIX}"))
    assert all("+db.password=***" in page.read_text() for page in pages)
    return pages


def children(client: MlflowClient, sweep_id: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`sweepbook.sweep_id` = '{sweep_id}'")
    return [r for r in runs if r.data.tags.get("sweepbook.role") != "parent"]


@pytest.mark.slow
def test_a_sweep_keeps_its_secrets_in_its_private_file_only(store, env, tmp_path, faulty):
    overrides, secrets = planted()
    done = run([SWEEPBOOK, "sweep", faulty, *overrides, "seed=0,1", "--workers", "2",
                "--quiet"], tmp_path, {**env, "FAULT_EXIT": "inside:1"})  # job 1 fails
    assert done.returncode == 1, done.stdout + done.stderr
    sweep_id = re.search(r"^sweep (\w+): 1 finished, 1 failed", done.stdout, re.M).group(1)
    database = Path(store[len("sqlite:///"):])
    kept = database.parent / "mlflow.db.sweepbook" / "secrets" / f"sweep-{sweep_id}.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    everything = [tmp_path, Path(env["TMPDIR"])]  # store, artifacts, notebooks, logs, temp
    assert [path for folder in everything for path in holding(folder, secrets)] == [kept]
    assert len(rendered(tmp_path)) == 2  # one per job, the failed one's too
    assert not any(secret in done.stdout + done.stderr for secret in secrets)

    client = MlflowClient(store)
    first = {r.data.tags["sweepbook.job_index"]: r for r in children(client, sweep_id)}
    assert sorted(first) == ["0", "1"]
    for child in first.values():
        assert child.data.params["db.password"] == "***"
        assert child.data.params["db.url"] == "postgresql://me:***@db/runs"
        assert child.data.params["vault.token"] == "***"
        assert "+db.password=***" in child.data.tags["sweepbook.overrides"]

    # --resume reads the real overrides back: same config hashes, so the same sweep, and the
    # job whose run failed runs again; then nothing is left to resume: the file is deleted
    assert first["1"].info.status == "FAILED"
    resumed = run([SWEEPBOOK, "sweep", "--resume", sweep_id, "--quiet"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"sweep {sweep_id}: 1 finished, 1 skipped" in resumed.stdout
    again = [r for r in children(client, sweep_id) if r.info.run_id not in
             {r.info.run_id for r in first.values()}]
    assert [r.data.tags["sweepbook.config_hash"] for r in again] == [
        first["1"].data.tags["sweepbook.config_hash"]]
    assert [path for folder in everything for path in holding(folder, secrets)] == []
    assert not any(secret in resumed.stdout + resumed.stderr for secret in secrets)


@pytest.mark.slow
def test_sweepbook_run_writes_no_secret_anywhere(store, env, tmp_path):
    overrides, secrets = planted()
    executed = tmp_path / "executed.ipynb"
    done = run([SWEEPBOOK, "run", TRAIN, *overrides, "--output", str(executed), "--quiet"],
               tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert executed.is_file() and "+db.password=***" in executed.read_text()
    assert holding(tmp_path, secrets) == [] and holding(Path(env["TMPDIR"]), secrets) == []
    assert len(rendered(tmp_path)) == 1
    assert list(Path(env["TMPDIR"]).glob("sweepbook-secrets-*")) == []  # removed after
    assert not any(secret in done.stdout + done.stderr for secret in secrets)
    recorded = MlflowClient(store).search_runs(
        [e.experiment_id for e in MlflowClient(store).search_experiments()])
    assert [r.data.params["db.password"] for r in recorded] == ["***"]
