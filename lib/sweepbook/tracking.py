"""One MLflow run per training, opened and closed by a context manager.

    with start_run(cfg, overrides) as run:
        history = fit(model, data, cfg, log=run.log_metrics)

The run is always new (a stray MLFLOW_RUN_ID is dropped, never resumed), its config is logged
once, metrics are buffered (see metrics.py), and it ends FINISHED, FAILED or KILLED.
"""
import copy
import logging
import os
import platform
import socket
import subprocess
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

import mlflow
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweepbook.metrics import MetricBuffer
from sweepbook.naming import ERROR_TAG, RUN_ID_ENV, artifact_root, run_name, safe_name
from sweepbook.params import config_params, redact, redact_overrides, to_container

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline machines: no phoning home

VERSIONED_PACKAGES = ("sweepbook", "torch", "mlflow", "hydra-core", "omegaconf")


def ensure_experiment(client: MlflowClient, name: str, root: Optional[str]) -> str:
    """The experiment's id, creating it once with an explicit artifact location."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (Path(root) / safe_name(name)).as_uri() if root else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as error:  # another process created it first
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise error
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted: restore it "
            f"with `mlflow experiments restore --experiment-id {experiment.experiment_id}` "
            f"or choose another expname"
        )
    return experiment.experiment_id


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_tags(root: Path, notebook: Optional[str]) -> Dict[str, str]:
    """Where the run came from: notebook, git commit and dirty flag, host, package versions."""
    tags = {
        "mlflow.source.type": "NOTEBOOK",
        "mlflow.source.name": notebook or os.environ.get("JPY_SESSION_NAME") or "unknown",
        "sweepbook.host": socket.gethostname(),
        "sweepbook.version.python": platform.python_version(),
    }
    commit = _git(root, "rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
        tags["sweepbook.git.dirty"] = str(bool(dirty)).lower()
    for package in VERSIONED_PACKAGES:
        try:
            tags[f"sweepbook.version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return tags


def model_requirements() -> List[str]:
    """Pinned requirements for the logged model (inferring them spawns a slow subprocess)."""
    pins = []
    for package in ("torch", "numpy", "cloudpickle"):
        try:
            pins.append(f"{package}=={metadata.version(package).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pass
    return pins


@contextmanager
def quiet_logger(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class TrackedRun:
    """The open run: buffered metrics, figures, the model, and a local output folder."""

    def __init__(self, client: MlflowClient, run_id: str, output_dir: Path, tracking_cfg):
        self.client = client
        self.run_id = run_id
        self.output_dir = output_dir
        self.metrics = MetricBuffer(client, run_id, tracking_cfg.flush_interval,
                                    tracking_cfg.flush_size)
        self._logged: Dict[str, int] = {}  # output file -> mtime when logged

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.metrics.log(key, value, step)

    def log_metrics(self, metrics: Dict[str, float], step: int = 0) -> None:
        self.metrics.log_dict(metrics, step)

    def log_figure(self, figure, name: str) -> Path:
        """Save a matplotlib figure as <output_dir>/figures/<name>, log it, close it.

        Rendered once: display the returned PNG (IPython.display.Image) instead of letting
        the inline backend render the figure a second time.
        """
        import matplotlib.pyplot as plt

        path = self.output_dir / "figures" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        self._log_output(path)
        return path

    def log_model(self, model, input_example, name: str = "model"):
        """Log an nn.Module that mlflow.pytorch.load_model gives back as the same class."""
        import mlflow.pytorch
        import numpy as np
        import torch
        from mlflow.models import infer_signature

        model = copy.deepcopy(model).cpu().eval()
        example = np.asarray(input_example, dtype=np.float32)
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        with quiet_logger("mlflow.pytorch"):  # pickle is chosen on purpose: it keeps the nn.Module
            return mlflow.pytorch.log_model(
                model, name=name, input_example=example,
                signature=infer_signature(example, output),
                pip_requirements=model_requirements(), serialization_format="pickle",
            )

    def write_output(self, relative: str, text: str) -> Path:
        """Write a text file into the run's output folder and log it right away."""
        path = self.output_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._log_output(path)
        return path

    def _log_output(self, path: Path) -> None:
        relative = path.relative_to(self.output_dir)
        folder = str(relative.parent) if str(relative.parent) != "." else None
        self.client.log_artifact(self.run_id, str(path), folder)
        self._logged[str(relative)] = path.stat().st_mtime_ns

    def log_new_outputs(self) -> None:
        """Log files the user put in the output folder that are not logged yet (or changed)."""
        for path in sorted(p for p in self.output_dir.rglob("*") if p.is_file()):
            relative = str(path.relative_to(self.output_dir))
            if self._logged.get(relative) != path.stat().st_mtime_ns:
                self._log_output(path)

    def log_config(self, cfg, overrides: List[str]) -> None:
        """Params (once), the resolved config and the overrides, all with secrets redacted."""
        mlflow.log_params(config_params(cfg), run_id=self.run_id)
        self.write_output("config.yaml", yaml.safe_dump(redact(to_container(cfg)), sort_keys=False))
        self.write_output("overrides.yaml", yaml.safe_dump(redact_overrides(overrides)))

    def close(self) -> None:
        self.metrics.flush()
        self.log_new_outputs()


def _open_run(cfg, overrides: List[str], parent_run_id: Optional[str], tags: Dict[str, str]):
    uri = cfg.tracking.uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(client, cfg.expname, artifact_root(uri, cfg))
    if cfg.tracking.system_metrics:
        mlflow.set_system_metrics_sampling_interval(cfg.tracking.system_metrics_interval)
    active = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name(cfg, overrides),
        parent_run_id=parent_run_id, nested=mlflow.active_run() is not None,
        tags=tags, log_system_metrics=cfg.tracking.system_metrics,
    )
    run_id = active.info.run_id
    output_dir = Path(cfg.paths.output_dir) / safe_name(cfg.expname) / run_id
    output_dir.mkdir(parents=True, exist_ok=True)
    return TrackedRun(client, run_id, output_dir, cfg.tracking)


def _end_run(run: TrackedRun, status: str) -> None:
    try:
        run.close()
    finally:
        mlflow.end_run(status)


@contextmanager
def start_run(cfg, overrides: Iterable[str] = (), parent_run_id: Optional[str] = None,
              notebook: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None) -> Iterator[TrackedRun]:
    """Open a new run for `cfg`; end it FINISHED, FAILED (exception) or KILLED (interrupt)."""
    os.environ.pop(RUN_ID_ENV, None)  # a leaked id would make MLflow resume that run
    overrides = list(overrides)
    all_tags = {**source_tags(Path(cfg.paths.root_dir), notebook),
                "sweepbook.overrides": " ".join(redact_overrides(overrides)),
                **{k: str(v) for k, v in redact(dict(tags or {})).items()}}
    run = _open_run(cfg, overrides, parent_run_id, all_tags)
    try:
        run.log_config(cfg, overrides)
        yield run
    except KeyboardInterrupt:
        _end_run(run, "KILLED")
        raise
    except BaseException as error:
        run.client.set_tag(run.run_id, ERROR_TAG, f"{type(error).__name__}: {error}"[:5000])
        _end_run(run, "FAILED")
        raise
    _end_run(run, "FINISHED")
