"""The run record's contract: every tag, param and artifact name that sweepbook writes to MLflow
or reads back, in one place, and how runs are named and identified. Metric names are the
notebooks' own (the training loop logs train_loss, val_loss and val_<score>).

No MLflow import here: sweeps name and hash their jobs with it before paying for MLflow.
"""
import hashlib
import json
from typing import Dict, Iterable

from sweepbook.params import config_params, redact_overrides

RUN_ID_ENV = "MLFLOW_RUN_ID"  # MLflow resumes this run: never let it reach a new run
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the sweep's parent run of a child

# tags of every run start_run opens
ERROR_TAG = "sweepbook.error"  # why a run ended FAILED or KILLED
OVERRIDES_TAG = "sweepbook.overrides"  # the Hydra overrides, secrets redacted
CONFIG_NAME_TAG = "sweepbook.config_name"  # the primary config, conf/<name>.yaml
CONFIG_EDITED_TAG = "sweepbook.config_edited"  # 'true': code changed cfg after compose, so
#                                                the params, not the overrides, say what ran
HOST_TAG = "sweepbook.host"
DEVICES_TAG = "sweepbook.cuda_visible_devices"  # the GPUs the run could see, when restricted
WORKER_TAG = "sweepbook.worker"  # where an executor ran the job (a Ray node's id), when it says
WORKER_ENV = "SWEEPBOOK_WORKER"  # how the executor says it
GIT_DIRTY_TAG = "sweepbook.git.dirty"  # 'true' when tracked files had uncommitted changes
VERSION_TAG = "sweepbook.version.{}"  # package versions: python, sweepbook, torch, mlflow, ...
SOURCE_NAME_TAG = "mlflow.source.name"  # the notebook
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
NOTEBOOK_HASH_TAG = "sweepbook.notebook_sha256"  # sha256 of the source notebook's code cells
DATA_DIGEST_TAG = "sweepbook.data_digest"  # digest of the data actually used (every split)
RERUN_OF_TAG = "sweepbook.rerun_of"  # on a run made by `sweepbook rerun`: the run it repeats
THREADS_TAG = "sweepbook.torch_threads"  # torch's CPU threads: results differ between counts

# tags of a sweep's runs
SWEEP_TAG = "sweepbook.sweep_id"  # on a sweep's parent and children
ROLE_TAG = "sweepbook.role"  # PARENT_ROLE on a sweep's parent run
PARENT_ROLE = "parent"
INDEX_TAG = "sweepbook.job_index"  # the job's place in the sweep
HASH_TAG = "sweepbook.config_hash"  # the job's resolved config: equal hashes, equal runs
LAUNCH_TAG = "sweepbook.launch_id"  # one launch of a notebook: how its run is found again

# tags of a search's runs (sweepbook tune): a trial's run is a sweep job with these too
TRIAL_TAG = "sweepbook.trial"  # the Optuna trial's number in its study
TRIAL_STATE_TAG = "sweepbook.trial_state"  # COMPLETE, PRUNED or FAIL, as told to Optuna
PRUNED_TAG = "sweepbook.pruned"  # on a pruned trial's run (ended KILLED): where and why
BEST_TRIAL_TAG = "sweepbook.best_trial"  # on a search's parent: the best trial so far
BEST_PARAMS_TAG = "sweepbook.best_params"  # on a search's parent: its params (JSON)
BEST_VALUE_METRIC = "best_value"  # on a search's parent: the best value, step = trial number
SEARCH_KIND = "tune"  # a search's parent run is named tune-<study>
SEARCH_SETTING_TAG = "sweepbook.tune.{}"  # on a search's parent, set by every attempt:
#                      metric, direction, trials, sampler, pruner, seed, workers
SEARCH_METRIC_TAG = SEARCH_SETTING_TAG.format("metric")  # the metric it optimizes
SEARCH_DIRECTION_TAG = SEARCH_SETTING_TAG.format("direction")  # max or min
SEARCH_STORAGE_PARAM = "tune.storage"  # the study's database, redacted
SEARCH_FIGURES_FOLDER = "tune"  # on a search's parent: its figures, drawn from the study
SEARCH_FIGURES = ("optimization_history.png", "param_importances.png",
                  "intermediate_values.png")

# params of a sweep's parent run, and its per-attempt job counts (metric per status)
SWEEP_NOTEBOOK_PARAM = "sweep.notebook"
SWEEP_JOBS_PARAM = "sweep.jobs"
SWEEP_OVERRIDES_PARAM = "sweep.overrides"
JOB_COUNT_METRIC = "jobs_{}"  # jobs_finished, jobs_failed, jobs_killed, jobs_skipped
PRUNED = "PRUNED"  # a search's trial stopped early by its pruner: its run ends KILLED
COUNTED_STATUSES = ("FINISHED", "FAILED", "KILLED", "SKIPPED", PRUNED)  # SKIPPED: done earlier
NOT_STARTED = "NOT STARTED"  # a job a stopped sweep never reached (not a run status)
DEFAULT_METRIC = "test_acc"  # what sweeps show and comparisons rank by unless told otherwise
DIRECTIONS = ("max", "min")
MINIMIZED = ("loss", "error", "time", "seconds", "rmse", "mse", "mae")  # better going down

# artifacts
CONFIG_ARTIFACT = "config.yaml"  # the resolved config, secrets redacted
OVERRIDES_ARTIFACT = "overrides.yaml"
MODEL_ARTIFACT = "model"  # the logged model's name
FIGURES_FOLDER = "figures"
LOGS_FOLDER = "logs"  # a job's own stdout and stderr
SWEEP_DEFINITION_ARTIFACT = "sweep.yaml"  # on the parent: what --resume reruns
# a job's executed notebook is logged at the run's root as <stem>.ipynb, with <stem>.html, its
# rendering (nbconvert) that the MLflow UI shows
NOTEBOOK_HTML_SUFFIX = ".html"

NAME_SKIPS = ("tracking.", "paths.", "runname=", "expname=")  # overrides that do not name a run
INFRASTRUCTURE_GROUPS = ("paths", "tracking")  # groups that place a run, not shape it
MAX_RUN_NAME = 250


def safe_name(name: str) -> str:
    """A file-name-safe version of an experiment name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def direction_for(metric: str) -> str:
    """'min' for names with a loss, an error, a time, RMSE, MSE or MAE in them, else 'max'."""
    return "min" if any(word in metric.lower() for word in MINIMIZED) else "max"


def job_count_metric(status: str) -> str:
    return JOB_COUNT_METRIC.format(status.lower())


def run_name(cfg, overrides: Iterable[str], choices: Dict[str, str]) -> str:
    """cfg.runname, else the overrides that change the model ('model=mlp,lr=0.01'), else the
    chosen options ('digits-cnn-adam')."""
    if cfg.runname:
        return cfg.runname
    shown = []
    for override in redact_overrides(list(overrides)):
        key, _, value = override.lstrip("+~").partition("=")
        if not override.lstrip("+~").startswith(NAME_SKIPS):
            shown.append(f"{key.rsplit('.', 1)[-1]}={value}")
    options = [option for group, option in choices.items() if group not in INFRASTRUCTURE_GROUPS]
    return (",".join(shown) or "-".join(options) or "run")[:MAX_RUN_NAME]


def config_hash(cfg) -> str:
    """Identifies what a config computes: equal hashes, equal runs (resume skips them).

    Made from the values themselves, secrets included (a digest reveals none of them), so
    configs that differ only in a redacted value never look the same.
    """
    params = {k: v for k, v in config_params(cfg, redacted=False).items()
              if k.split(".")[0] not in (*INFRASTRUCTURE_GROUPS, "runname")}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
