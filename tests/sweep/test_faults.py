"""The fault suite: real sweeps of a copy of train.ipynb, real processes, a real store, and a
fault injected into each. After the command (and, where the promise says so, the same
command run again) no run is RUNNING, no config has two FINISHED runs, and the statuses,
reasons, parent counts, summary and exit code agree."""
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, STARTED_DRIVERS, SWEEPBOOK, start_driver

pytestmark = pytest.mark.slow

# Added at the end of the tracked cell (the run is open): a pid file for the test to find the
# job, then a pause long enough to hit it. Neither is config, so the sweep id stays the same.
FAULT_CODE = """
    import os, pathlib, sys, time
    if os.environ.get("FAULT_PIDS"):
        pathlib.Path(os.environ["FAULT_PIDS"], f"{cfg.seed}.pid").write_text(str(os.getpid()))
    if f"inside:{cfg.seed}" in os.environ.get("FAULT_EXIT", ""):
        sys.exit(0)
    time.sleep(float(os.environ.get("FAULT_SLEEP", "0")))"""
EXIT_BEFORE_RUN = """import os, sys
if f"before:{cfg.seed}" in os.environ.get("FAULT_EXIT", ""):
    sys.exit(0)"""


@pytest.fixture
def faulty(tmp_path) -> str:
    """train.ipynb with the fault hooks, in a folder of its own."""
    notebook = json.loads((ROOT / "notebooks" / "train.ipynb").read_text())
    cells = notebook["cells"]
    tracked = next(c for c in cells if "start_run(" in "".join(c["source"]))
    tracked["source"] = "".join(tracked["source"]) + FAULT_CODE
    cells.insert(cells.index(tracked), {"cell_type": "code", "id": "fault-exit", "metadata": {},
                                        "outputs": [],
                                        "execution_count": None, "source": EXIT_BEFORE_RUN})
    path = tmp_path / "faulty" / "train.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(notebook))
    return str(path)


@pytest.fixture
def env(tmp_path):
    """A fresh store (not created yet) and smoke-sized jobs."""
    (tmp_path / "pids").mkdir()
    environment = {**os.environ, "FAULT_PIDS": str(tmp_path / "pids"),
                   "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}",
                   "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={tmp_path / 'out'}"}
    environment.pop("MLFLOW_RUN_ID", None)
    return environment


def sweep(notebook, *overrides, env, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPBOOK, "sweep", notebook, *overrides, "--workers", "2", "--quiet"],
                          env={**env, **extra_env}, capture_output=True, text=True, timeout=600)


def start(notebook, *overrides, env, options=("--quiet",), **extra_env) -> subprocess.Popen:
    return start_driver("sweep", notebook, *overrides, env=env, options=options, **extra_env)


def all_runs(env):
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              max_results=1000)


def children(env):
    return [r for r in all_runs(env) if "mlflow.parentRunId" in r.data.tags]


def parents(env):
    return [r for r in all_runs(env) if r.data.tags.get("sweepbook.role") == "parent"]


def wait_until(condition, seconds=180.0, what="the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def running_children(env, count):
    """True once `count` children are RUNNING and have written their pid files."""
    pids = list(Path(env["FAULT_PIDS"]).glob("*.pid"))
    return len(pids) >= count and sum(
        r.info.status == "RUNNING" for r in children(env)) >= count


def assert_the_record_is_whole(env):
    """No run RUNNING, no config FINISHED twice, and the store's file intact."""
    runs = all_runs(env)
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    finished = Counter(r.data.tags.get("sweepbook.config_hash") for r in runs
                       if r.info.status == "FINISHED" and "mlflow.parentRunId" in r.data.tags)
    assert [h for h, n in finished.items() if n > 1] == [], "duplicate FINISHED runs"
    database = env["MLFLOW_TRACKING_URI"][len("sqlite:///"):]
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def assert_files_logged(env, run):
    """The job's executed notebook and its log are on its run."""
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    logged = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert any(path.endswith(".ipynb") for path in logged) and "logs" in logged, logged


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too, its parent not reaped
        return stat.read().split(") ")[1][0] != "Z"


def job_pids(env):
    return [int(p.read_text()) for p in Path(env["FAULT_PIDS"]).glob("*.pid")]


def test_kill_9_of_a_job_then_of_the_driver_and_the_same_command_completes(faulty, env,
                                                                           tmp_path):
    """A job killed on its own fails with the reason and the sweep goes on; the driver killed
    next takes its jobs with it (they end their runs KILLED); the same command completes."""
    pids = tmp_path / "pids"
    driver = start(faulty, "seed=1,2,3", env=env, FAULT_SLEEP="120")
    wait_until(lambda: running_children(env, 2), what="two running jobs")
    os.kill(int((pids / "1.pid").read_text()), signal.SIGKILL)
    wait_until(lambda: (pids / "3.pid").is_file() and running_children(env, 2),
               what="the third job in the killed one's place")
    [failed] = [r for r in children(env) if r.info.status == "FAILED"]
    assert failed.data.tags["sweepbook.error"] == "the job process was killed by SIGKILL"
    running = [int((pids / f"{seed}.pid").read_text()) for seed in (2, 3)]
    driver.kill()
    driver.wait()
    wait_until(lambda: not any(pid_alive(p) for p in running), 30, "the jobs to die")
    wait_until(lambda: sum(r.info.status == "KILLED" for r in children(env)) == 2, 30,
               "the jobs to end their runs")
    for run in children(env):
        if run.info.status == "KILLED":
            assert "driver died" in run.data.tags["sweepbook.error"]
            assert_files_logged(env, run)
    again = sweep(faulty, "seed=1,2,3", env=env)
    assert again.returncode == 0 and "3 finished" in again.stdout, again.stderr
    [parent] = parents(env)
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_finished"] == 3
    assert sorted(r.info.status for r in children(env)) == (["FAILED"] + ["FINISHED"] * 3 +
                                                            ["KILLED"] * 2)
    assert_the_record_is_whole(env)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_a_sweep_as_ctrl_c_does(faulty, env, signum):
    """(A job in a kernel stopped the same way: test_sigterm_to_sweepbook_run_...)"""
    driver = start(faulty, "seed=1,2,3", env=env, FAULT_SLEEP="120")
    wait_until(lambda: running_children(env, 2), what="two running jobs")
    driver.send_signal(signum)
    out, err = driver.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert driver.returncode == 128 + signum, err
    assert "2 killed, 1 not started" in out and "resume it with" in out
    for run in children(env):
        assert (run.info.status, run.data.tags["sweepbook.error"]) == ("KILLED",
                                                                       f"stopped by {name}")
        assert_files_logged(env, run)
    [parent] = parents(env)
    assert parent.info.status == "KILLED" and parent.data.metrics["jobs_killed"] == 2
    assert_the_record_is_whole(env)


def test_ctrl_c_with_the_output_piped_to_a_reader_that_is_gone(faulty, env):
    """`sweepbook sweep ... 2>&1 | tee log`: Ctrl-C stops tee too, the progress bar then
    writes into a closed pipe."""
    driver = start(faulty, "seed=1,2,3", env=env, options=(), FAULT_SLEEP="120")
    wait_until(lambda: running_children(env, 2), what="two running jobs")
    driver.stdout.close()
    driver.stderr.close()
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    assert sorted(r.info.status for r in children(env)) == ["KILLED", "KILLED"]
    assert parents(env)[0].info.status == "KILLED"
    assert_the_record_is_whole(env)


def test_one_driver_per_sweep_and_parallel_sweeps_on_a_fresh_store(faulty, env):
    """The same sweep started twice at once, and another one beside them, on a store that
    does not exist yet: one driver per sweep, and both sweeps run."""
    twins = [start(faulty, "seed=1,2", env=env, FAULT_SLEEP="10") for _ in range(2)]
    other = start(faulty, "seed=3", env=env, FAULT_SLEEP="10")
    ended = [driver.communicate(timeout=300) for driver in twins]
    codes = sorted(driver.returncode for driver in twins)
    assert codes == [0, 2], ended
    refused = ended[[d.returncode for d in twins].index(2)][1]
    winner = twins[[d.returncode for d in twins].index(0)]
    assert f"is already running (driver PID {winner.pid})" in refused
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0 and "1 finished" in out, err
    assert len(children(env)) == 3 and len(parents(env)) == 2
    assert_the_record_is_whole(env)
    for run in children(env):  # a successful job's log holds its output, logged on its run
        assert_files_logged(env, run)
        log = MlflowClient(env["MLFLOW_TRACKING_URI"]).download_artifacts(run.info.run_id,
                                                                          "logs")
        assert "test accuracy:" in next(Path(log).glob("*.log")).read_text()


def test_an_artifact_folder_that_cannot_be_written(faulty, env, tmp_path):
    """Every artifact write fails (a path under a regular file: even root cannot make it).
    The jobs fail with the reason, the summary is printed, the driver lives; once the
    folder can be made, the same command completes the sweep."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    broken = f"tracking.artifact_root={blocker / 'artifacts'}"
    done = sweep(faulty, "seed=1,2", broken, env=env)
    assert done.returncode == 1, done.stderr
    assert "2 failed" in done.stdout and "resume it with" in done.stdout
    for run in children(env):
        assert run.info.status == "FAILED"
        assert "Not a directory" in run.data.tags["sweepbook.error"]
    assert parents(env)[0].info.status == "FAILED"
    blocker.unlink()
    again = sweep(faulty, "seed=1,2", broken, env=env)
    assert again.returncode == 0 and "2 finished" in again.stdout, again.stderr
    [parent] = parents(env)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert "sweep.yaml" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    assert_the_record_is_whole(env)


@pytest.mark.parametrize("engine", ["fork", "kernel"])
def test_sys_exit_in_the_notebook_fails_the_job(faulty, env, engine):
    """sys.exit(0) before the run opens (seed 1) and inside it (seed 2)."""
    done = subprocess.run([SWEEPBOOK, "sweep", faulty, "seed=1,2", "--engine", engine,
                           "--quiet"], env={**env, "FAULT_EXIT": "before:1 inside:2"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "2 failed" in done.stdout, done.stderr
    by_seed = {r.data.tags["sweepbook.job_index"]: r for r in children(env)}
    assert {i: r.info.status for i, r in by_seed.items()} == {"0": "FAILED", "1": "FAILED"}
    assert by_seed["0"].data.tags["sweepbook.error"] == ("the notebook ended without opening "
                                                         "an MLflow run")
    assert by_seed["1"].data.tags["sweepbook.error"] == "SystemExit: 0"
    [parent] = parents(env)
    assert (parent.info.status, parent.data.metrics["jobs_failed"]) == ("FAILED", 2)
    assert_the_record_is_whole(env)


def test_sigterm_to_sweepbook_run_ends_its_run_killed(faulty, env, tmp_path):
    """`sweepbook run` stopped by a scheduler: its kernel goes, its run ends KILLED."""
    command = subprocess.Popen([SWEEPBOOK, "run", faulty, "seed=1", "--quiet"],
                               env={**env, "FAULT_SLEEP": "120"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    STARTED_DRIVERS.append(command)
    pid_file = tmp_path / "pids" / "1.pid"
    wait_until(lambda: pid_file.is_file() and any(
        r.info.status == "RUNNING" for r in all_runs(env)), what="the notebook's run")
    command.send_signal(signal.SIGTERM)
    out, err = command.communicate(timeout=60)
    assert command.returncode == 143, err
    assert "sweepbook: error: stopped by SIGTERM" in err
    # a kernel over TCP logs "Kernel is running over TCP without encryption", a new store
    # MLflow's INFO lines about creating its tables: neither belongs in the output
    assert "without encryption" not in out + err and " INFO " not in out + err, out + err
    [run] = all_runs(env)
    assert (run.info.status, run.data.tags["sweepbook.error"]) == ("KILLED", "stopped by SIGTERM")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert any(a.path.endswith(".ipynb") for a in client.list_artifacts(run.info.run_id))
    wait_until(lambda: not pid_alive(int(pid_file.read_text())), 30, "the kernel to end")
    assert_the_record_is_whole(env)
