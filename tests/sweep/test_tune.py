"""`sweepbook tune` as a user runs it: real processes, a real SQLite store and the study's own
optuna.db beside it. Pruning with both engines, resuming, a trial whose config is invalid, the
driver killed or stopped mid-search, and a study resumed for another metric. After each, what
MLflow, the study, the summary and the exit code say must agree.

Trials are smoke-sized (debug=default). SEARCH reaches learning rates at which Adam diverges
(val_acc at chance). Tests go on from a search of four completed trials (the median pruner's
startup), so every trial they add is pruned if it is clearly worse than the median, whatever
the timing of the workers; the seeded sampler draws such learning rates among them.
"""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweepbook.sweep.study import INTERRUPTED_ATTR, METRIC_ATTR, REASON_ATTR
from sweepbook.tracking import record

from conftest import ROOT, SWEEPBOOK, start_driver

pytestmark = pytest.mark.slow

TRAIN = str(ROOT / "notebooks" / "train.ipynb")
EPOCHS = 3  # val_acc is logged at steps 0, 1, 2; the median pruner may stop a trial from step 1
SEARCH = ["optimizer.lr=tag(log,interval(1e-3,3.0))", "model=choice(cnn,mlp)",
          f"training.epochs={EPOCHS}"]
FIRST_TRIALS = 4  # the median pruner's startup trials: none of them can be pruned

# Added at the end of the tracked cell (the run and the trial are open): a pid file for the
# test to find the job, then a pause long enough to stop the search there. Not config: the
# study's name stays the same without it.
PAUSE = """
    import os, pathlib, time
    if os.environ.get("TUNE_PIDS"):
        pathlib.Path(os.environ["TUNE_PIDS"], f"{os.getpid()}.pid").write_text(str(os.getpid()))
    time.sleep(float(os.environ.get("TUNE_SLEEP", "0")))"""
PAUSED_SEARCH = ["optimizer.lr=tag(log,interval(1e-3,1e-1))", "model=choice(cnn,mlp)",
                 "training.epochs=1", "--trials", "2"]


def environment(folder: Path) -> dict:
    """A store in `folder/db` (copied or not made yet) and smoke-sized trials."""
    (folder / "pids").mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'db' / 'mlflow.db'}",
           "SWEEPBOOK_OVERRIDES": f"debug=default paths.output_dir={folder / 'out'}",
           "TUNE_PIDS": str(folder / "pids")}
    env.pop("MLFLOW_RUN_ID", None)
    return env


def tune(notebook, *args, env, **extra_env) -> subprocess.CompletedProcess:
    return subprocess.run([SWEEPBOOK, "tune", notebook, *args, "--workers", "2", "--quiet"],
                          env={**env, **extra_env}, capture_output=True, text=True,
                          timeout=600)


def start(notebook, *args, env, **extra_env) -> subprocess.Popen:
    return start_driver("tune", notebook, *args, env=env, **extra_env)


def summary(done) -> str:
    """The summary's line of counts: `search NAME: 2 finished, 1 pruned; parent run ...`."""
    [line] = re.findall(r"^search \S+: .*; parent run .*$", done.stdout, re.M)
    return line


def client(env) -> MlflowClient:
    return MlflowClient(env["MLFLOW_TRACKING_URI"])


def all_runs(env):
    found = client(env)
    return found.search_runs([e.experiment_id for e in found.search_experiments()],
                             max_results=1000)


def trial_runs(env):
    return [r for r in all_runs(env) if record.TRIAL_TAG in r.data.tags]


def parent(env):
    [run] = [r for r in all_runs(env) if r.data.tags.get(record.ROLE_TAG) == "parent"]
    return run


def storage(env) -> str:
    return f"sqlite:///{Path(env['MLFLOW_TRACKING_URI'][len('sqlite:///'):]).parent}/optuna.db"


def the_study(env):
    """The one study in the store's optuna.db, as Optuna itself reads it."""
    [name] = optuna.get_all_study_names(storage(env))
    return optuna.load_study(study_name=name, storage=storage(env))


def last(env, run, metric):
    """A parent's count for its latest attempt (one step per attempt)."""
    history = client(env).get_metric_history(run.info.run_id, metric)
    return max(history, key=lambda m: m.step).value


def wait_until(condition, seconds=240.0, what="the condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too, its parent not reaped
        return stat.read().split(") ")[1][0] != "Z"


def job_pids(env):
    return [int(p.read_text()) for p in Path(env["TUNE_PIDS"]).glob("*.pid")]


def running_trials(env, count) -> bool:
    """True once `count` trials are in their pause: pid files written, runs RUNNING."""
    return len(job_pids(env)) >= count and sum(
        r.info.status == "RUNNING" for r in trial_runs(env)) >= count


def assert_nothing_is_left_running(env):
    """No run RUNNING, no trial RUNNING, and both databases intact."""
    assert [r.info.run_name for r in all_runs(env) if r.info.status == "RUNNING"] == []
    assert the_study(env).get_trials(states=(TrialState.RUNNING,)) == []
    for database in (env["MLFLOW_TRACKING_URI"][len("sqlite:///"):],
                     storage(env)[len("sqlite:///"):]):
        with sqlite3.connect(database) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, store_template) -> Path:
    """A folder whose store holds a search of FIRST_TRIALS completed trials, made once with the
    command a user types; tests go on with copies of it (the artifacts stay shared)."""
    folder = tmp_path_factory.mktemp("searched")
    (folder / "db").mkdir()
    shutil.copy(store_template, folder / "db" / "mlflow.db")
    done = tune(TRAIN, *SEARCH, "--trials", str(FIRST_TRIALS), env=environment(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f": {FIRST_TRIALS} finished;" in summary(done), done.stdout
    return folder


def go_on_with(searched: Path, folder: Path) -> dict:
    """The environment of a copy of the searched store, for one test to change."""
    shutil.copytree(searched / "db", folder / "db", ignore=shutil.ignore_patterns("mlartifacts"))
    return environment(folder)


@pytest.fixture
def paused(tmp_path) -> str:
    """train.ipynb with the PAUSE hook, in a folder of its own."""
    notebook = json.loads(Path(TRAIN).read_text())
    tracked = next(c for c in notebook["cells"] if "start_run(" in "".join(c["source"]))
    tracked["source"] = "".join(tracked["source"]) + PAUSE
    path = tmp_path / "paused" / "train.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(notebook))
    return str(path)


@pytest.mark.parametrize("engine, trials", [("fork", FIRST_TRIALS + 3),
                                            ("kernel", FIRST_TRIALS + 2)])
def test_pruned_trials_stop_early_and_are_never_failures_or_the_best(searched, tmp_path,
                                                                     engine, trials):
    env = go_on_with(searched, tmp_path)
    done = tune(TRAIN, *SEARCH, "--trials", str(trials), "--engine", engine, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    study = the_study(env)
    states = [t.state for t in study.trials]
    assert len(states) == trials and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, f"no trial was pruned: {done.stdout}"
    assert f"{len(pruned)} pruned" in summary(done) and "failed" not in summary(done)

    runs = {int(r.data.tags[record.TRIAL_TAG]): r for r in trial_runs(env)}
    assert sorted(runs) == list(range(trials))
    stopped_early = 0
    for trial in pruned:
        run = runs[trial.number]
        assert run.info.status == "KILLED"
        assert run.data.tags[record.TRIAL_STATE_TAG] == "PRUNED"
        assert record.ERROR_TAG not in run.data.tags
        said = re.fullmatch(r"pruned at step (\d+) by the median pruner: val_acc=[\d.e-]+",
                            run.data.tags[record.PRUNED_TAG])
        assert said, run.data.tags[record.PRUNED_TAG]
        step = int(said.group(1))
        history = sorted(client(env).get_metric_history(run.info.run_id, "val_acc"),
                         key=lambda m: m.step)
        assert [m.step for m in history] == list(range(step + 1))  # logged up to the stop
        assert trial.intermediate_values == pytest.approx({m.step: m.value for m in history})
        assert "test_acc" not in run.data.metrics  # the training stopped: never tested
        stopped_early += step < EPOCHS - 1
    assert stopped_early, "every pruned trial ran to its last epoch"
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            run = runs[trial.number]
            assert (run.info.status, run.data.tags[record.TRIAL_STATE_TAG]) == ("FINISHED",
                                                                               "COMPLETE")
            assert run.data.metrics["val_acc"] == pytest.approx(trial.value)
            assert sorted(trial.intermediate_values) == list(range(EPOCHS))

    top = parent(env)
    assert top.info.status == "FINISHED"
    assert top.info.run_name == f"tune-{study.study_name}"
    assert top.data.tags[record.SWEEP_TAG] == study.study_name
    assert {r.data.tags[record.SWEEP_TAG] for r in runs.values()} == {study.study_name}
    assert {r.data.tags[record.PARENT_TAG] for r in runs.values()} == {top.info.run_id}
    assert (top.data.tags["sweepbook.tune.metric"],
            top.data.tags["sweepbook.tune.direction"]) == ("val_acc", "max")
    assert top.data.tags["sweepbook.tune.trials"] == str(trials)
    pruned_per_attempt = client(env).get_metric_history(top.info.run_id, "jobs_pruned")
    assert sum(m.value for m in pruned_per_attempt) == len(pruned)
    assert last(env, top, "jobs_pruned") == int(re.search(r"(\d+) pruned",
                                                          summary(done)).group(1))
    assert last(env, top, "jobs_failed") == 0

    best = study.best_trial
    assert best.state == TrialState.COMPLETE
    assert best.value == max(t.value for t in study.trials if t.state == TrialState.COMPLETE)
    assert top.data.tags[record.BEST_TRIAL_TAG] == str(best.number)
    assert json.loads(top.data.tags[record.BEST_PARAMS_TAG]) == best.params
    assert last(env, top, record.BEST_VALUE_METRIC) == pytest.approx(best.value)
    assert f"best: trial {best.number}," in done.stdout
    assert best.number not in [t.number for t in pruned]
    figures = {a.path for a in client(env).list_artifacts(top.info.run_id, "tune")}
    assert {"tune/optimization_history.png", "tune/intermediate_values.png"} <= figures
    assert_nothing_is_left_running(env)


def test_the_same_command_with_more_trials_adds_only_the_missing_ones(searched, tmp_path):
    env = go_on_with(searched, tmp_path)
    earlier = {r.info.run_id for r in trial_runs(env)}
    more = tune(TRAIN, *SEARCH, "--trials", "6", env=env)
    assert more.returncode == 0, more.stdout + more.stderr
    assert f"{FIRST_TRIALS} skipped" in summary(more)
    study = the_study(env)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state.is_finished() for t in study.trials)
    runs = trial_runs(env)
    assert sorted(int(r.data.tags[record.TRIAL_TAG]) for r in runs) == list(range(6))
    assert earlier < {r.info.run_id for r in runs}
    draws = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(draws)) == 6, "the resumed search drew a learning rate again"
    top = parent(env)
    assert last(env, top, "jobs_skipped") == FIRST_TRIALS

    again = tune(TRAIN, *SEARCH, "--trials", "6", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r": 6 skipped;", summary(again)), summary(again)
    assert len(the_study(env).trials) == 6  # not even asked for one more
    assert {r.info.run_id for r in trial_runs(env)} == {r.info.run_id for r in runs}
    top = parent(env)
    assert top.info.status == "FINISHED" and last(env, top, "jobs_skipped") == 6
    assert_nothing_is_left_running(env)


def test_a_study_made_for_another_metric_is_refused(searched, tmp_path):
    """val_loss is also minimized: both what the study optimizes and its direction differ
    (either alone is refused the same way: open_study compares the pair)."""
    env = go_on_with(searched, tmp_path)
    before = {r.info.run_id: r.info.status for r in all_runs(env)}
    refused = tune(TRAIN, *SEARCH, "--trials", "6", "--metric", "val_loss", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "optimizes val_acc (max), not val_loss (min)" in refused.stderr
    assert "--study NEW_NAME" in refused.stderr
    assert "--metric val_acc --direction max" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert {r.info.run_id: r.info.status for r in all_runs(env)} == before
    study = the_study(env)
    assert len(study.trials) == FIRST_TRIALS and study.user_attrs[METRIC_ATTR] == "val_acc"


def test_a_trial_whose_config_breaks_a_rule_fails_and_the_search_goes_on(tmp_path,
                                                                         store_template):
    """Every corner composes (each fraction with the other at its first value); only some
    sampled combinations leave no training data (val_fraction + test_fraction >= 1)."""
    env = environment(tmp_path)
    (tmp_path / "db").mkdir()
    shutil.copy(store_template, tmp_path / "db" / "mlflow.db")
    done = tune(TRAIN, "data.val_fraction=choice(0.1,0.6)", "data.test_fraction=choice(0.1,0.5)",
                "training.epochs=1", "--trials", "3", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    study = the_study(env)
    invalid = [t for t in study.trials if sum(t.params.values()) >= 1]
    valid = [t for t in study.trials if sum(t.params.values()) < 1]
    assert invalid and valid, f"seed 0 no longer samples both kinds: {study.trials}"
    assert max(t.number for t in valid) > min(t.number for t in invalid), "nothing ran after"
    assert {t.state for t in valid} == {TrialState.COMPLETE}
    runs = {int(r.data.tags[record.TRIAL_TAG]): r for r in trial_runs(env)}
    for trial in invalid:
        assert trial.state == TrialState.FAIL
        reason = trial.user_attrs[REASON_ATTR]
        assert reason.startswith("invalid config: ") and "must be below 1" in reason, reason
        assert f"val_fraction={trial.params['data.val_fraction']}" in reason
        run = runs[trial.number]
        assert run.info.status == "FAILED"
        assert run.data.tags[record.ERROR_TAG] == reason
        assert run.data.tags[record.TRIAL_STATE_TAG] == "FAIL"
        assert run.data.metrics == {}  # never ran
    assert len(runs) == len(study.trials) == 3
    assert f"{len(valid)} finished, {len(invalid)} failed" in summary(done)
    top = parent(env)
    assert top.info.status == "FAILED" and last(env, top, "jobs_failed") == len(invalid)
    assert_nothing_is_left_running(env)


def test_kill_9_of_the_driver_then_the_same_command_runs_the_interrupted_trials_again(
        paused, tmp_path):
    env = environment(tmp_path)
    driver = start(paused, *PAUSED_SEARCH, env=env, TUNE_SLEEP="120")
    wait_until(lambda: running_trials(env, 2), what="two trials in their pause")
    jobs = job_pids(env)
    driver.kill()
    driver.wait()
    wait_until(lambda: not any(pid_alive(p) for p in jobs), 30, "the jobs to die")
    left = the_study(env).get_trials(states=(TrialState.RUNNING,))
    assert len(left) == 2  # nobody told the study: the next command must

    again = tune(paused, *PAUSED_SEARCH, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ": 2 finished;" in summary(again)
    assert_nothing_is_left_running(env)
    study = the_study(env)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2  # exactly --trials counted
    interrupted = [t for t in study.trials if t.user_attrs.get(INTERRUPTED_ATTR)]
    assert sorted(t.number for t in interrupted) == sorted(t.number for t in left)
    assert {t.state for t in interrupted} == {TrialState.FAIL}
    assert len(study.trials) == len(complete) + len(interrupted)
    for trial in interrupted:  # its config ran again
        assert trial.params in [t.params for t in complete]
    statuses = sorted(r.info.status for r in trial_runs(env))
    assert statuses == ["FINISHED"] * 2 + ["KILLED"] * 2
    for run in trial_runs(env):
        if run.info.status == "KILLED":
            assert "driver" in run.data.tags[record.ERROR_TAG], run.data.tags
    assert parent(env).info.status == "FINISHED"


def test_sigterm_stops_the_search_with_its_trials_interrupted(paused, tmp_path):
    env = environment(tmp_path)
    driver = start(paused, *PAUSED_SEARCH, env=env, TUNE_SLEEP="120")
    wait_until(lambda: running_trials(env, 2), what="two trials in their pause")
    driver.send_signal(signal.SIGTERM)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 143, out + err
    assert "2 killed" in out and "run the same command again" in out, out
    assert_nothing_is_left_running(env)
    for run in trial_runs(env):
        assert (run.info.status, run.data.tags[record.ERROR_TAG]) == ("KILLED",
                                                                      "stopped by SIGTERM")
    study = the_study(env)
    told = [t for t in study.trials if t.state.is_finished()]
    assert len(told) == 2
    for trial in told:
        assert trial.state == TrialState.FAIL and trial.user_attrs[INTERRUPTED_ATTR]
        assert trial.user_attrs[REASON_ATTR] == "stopped by SIGTERM"
    # queued again for the next command, not counted
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
    top = parent(env)
    assert top.info.status == "KILLED" and last(env, top, "jobs_killed") == 2


def test_a_grid_search_runs_every_point_and_ends_well(tmp_path):
    env = environment(tmp_path)
    done = tune(TRAIN, "model=choice(cnn,mlp)", "training.epochs=1", "--sampler", "grid",
                env=env)
    assert "the grid has 2 points: 2 trials, not 20" in done.stderr
    assert sorted(t.params["model"] for t in the_study(env).trials) == ["cnn", "mlp"]
    assert "the search stopped" not in done.stderr, done.stderr
    assert done.returncode == 0 and ": 2 finished;" in summary(done), done.stdout + done.stderr
    assert {r.data.tags.get(record.TRIAL_STATE_TAG) for r in trial_runs(env)} == {"COMPLETE"}
    assert parent(env).info.status == "FINISHED"


def test_a_metric_the_notebook_never_logs_fails_its_trials(tmp_path):
    env = environment(tmp_path)
    done = tune(TRAIN, "model=choice(cnn,mlp)", "training.epochs=1", "--metric", "val_accuracy",
                "--trials", "1", env=env)
    [trial] = the_study(env).trials
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs[REASON_ATTR].startswith("its run logged no metric named "
                                                    "'val_accuracy'")
    assert done.returncode == 1 and ": 1 failed;" in summary(done), done.stdout
    assert parent(env).info.status == "FAILED"
    [run] = trial_runs(env)  # MLflow agrees: the run the search could not use is FAILED
    assert run.info.status == "FAILED" and "val_accuracy" in run.data.tags[record.ERROR_TAG]
