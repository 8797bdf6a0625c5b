"""The caller's process is left as it was: a sweep, a tracked run and loading a logged model
in a notebook's (here: pytest's) process change no environment variable."""
import json
import os
import subprocess
import sys

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from sweepbook.compare import load_model, load_runs, resolve_scope
from sweepbook.config import compose
from sweepbook.sweep import run_sweep
from sweepbook.tracking import start_run

from conftest import ROOT, SMOKE

TRAIN = str(ROOT / "notebooks" / "train.ipynb")


# MLflow's own: `import mlflow` sets it, and MLflow's telemetry thread (started by the first
# store call of a process) removes it when it cannot fetch its config, e.g. offline. Whichever
# test makes the process's first MLflow call would see it go: not sweepbook's doing.
MLFLOW_TELEMETRY_SESSION = "_MLFLOW_TELEMETRY_SESSION_ID"


def changes(before: dict) -> dict:
    """Every variable added, removed or changed since `before`: name -> [before, now]."""
    now = dict(os.environ)
    return {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k) and k != MLFLOW_TELEMETRY_SESSION}


def test_composing_leaves_the_environment_as_it_was():
    """In a fresh interpreter (pytest's own may have had its environment changed by earlier
    tests): compose() checks every `_target_`, building torch optimizers over a dummy
    parameter, and changes no variable doing it."""
    code = (
        "import json, os\n"
        "import torch\n"
        "from sweepbook.config import compose\n"
        "before = dict(os.environ)\n"
        "cfgs = [compose(['optimizer=adam']), compose(['optimizer=sgd', 'model=mlp'])]\n"
        "after = dict(os.environ)\n"
        "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after)\n"
        "                  if before.get(k) != after.get(k)}))\n")
    # torch sets TORCHINDUCTOR_CACHE_DIR only where it is unset: an earlier compose() in this
    # very process may have set it, and the child must not inherit that
    env = {k: v for k, v in os.environ.items()
           if k not in ("SWEEPBOOK_ROOT", "TORCHINDUCTOR_CACHE_DIR")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(ROOT))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.slow
def test_a_sweep_leaves_the_callers_environment_as_it_was(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPBOOK_OVERRIDES",
                       f"debug=default paths.output_dir={tmp_path / 'outputs'}")
    before, path, cwd = dict(os.environ), list(sys.path), os.getcwd()
    result = run_sweep(TRAIN, ["model=mlp", "seed=1,2"], workers=2, quiet=True)
    assert result.ok and [r.status for r in result.results] == ["FINISHED"] * 2
    assert changes(before) == {}
    assert sys.path == path and os.getcwd() == cwd


class Stop(Exception):
    pass


@pytest.mark.parametrize("ending", ["FINISHED", "FAILED"])
def test_a_tracked_run_leaves_the_environment_as_it_was(store, output_override, ending):
    cfg = compose([*SMOKE, output_override])
    before, uri = dict(os.environ), mlflow.get_tracking_uri()
    try:
        with start_run(cfg, notebook="notebooks/train.ipynb") as run:
            run.log_metrics({"train_loss": 1.0}, step=0)
            if ending == "FAILED":
                raise Stop("the body failed")
    except Stop:
        pass
    assert MlflowClient(store).get_run(run.run_id).info.status == ending
    assert changes(before) == {}
    assert mlflow.get_tracking_uri() == uri


@pytest.mark.slow
def test_loading_a_logged_model_leaves_the_environment_as_it_was(swept):
    scope = resolve_scope(swept.uri, sweep_id=swept.sweep_id)
    run_id = load_runs(scope)["run_id"].iloc[0]
    before = dict(os.environ)
    model = load_model(scope, run_id)
    assert isinstance(model, torch.nn.Module)
    assert changes(before) == {}
