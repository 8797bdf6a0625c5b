"""One MLflow run per training, opened and closed by a context manager.

    cfg = compose(overrides, config_name)
    with start_run(cfg, parent_run_id=parent_run_id, tags=tags) as run:
        history = fit(model, data, cfg, log=run.log_metrics)

The run is always new (a stray MLFLOW_RUN_ID is dropped, never resumed), it records the
overrides and primary config `cfg` was composed with, its config is logged once, metrics are
buffered (see metrics.py), and it ends FINISHED, FAILED or KILLED (a search's pruned trial:
KILLED and tagged pruned, see trial.py). MLflow's global tracking
URI (and MLFLOW_TRACKING_URI) point at the run's store while it is open, and are put back.
"""
import copy
import logging
import os
import platform
import socket
import subprocess
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from sweepbook.config import Composition, composition, fingerprint
from sweepbook.env import patched_environ
from sweepbook.notebook import code_hash
from sweepbook.params import config_params, redact, redact_overrides, to_container
from sweepbook.tracking import record
from sweepbook.tracking.metrics import MetricBuffer
from sweepbook.tracking.trial import TrialPruned, reporter_from_environment
from sweepbook.tracking.location import artifact_root
from sweepbook.tracking.store import ensure_experiment, open_store, using_tracking_uri

VERSIONED_PACKAGES = ("sweepbook", "torch", "mlflow", "hydra-core", "omegaconf")
DATASET_CONTEXTS = ("training", "validation", "testing")  # MLflow's names of SPLITS' roles
MLFLOW_DIGEST_LENGTH = 32  # a dataset input's digest holds 36 characters at most
DATASET_WRITE_TRIES = 3  # parallel jobs race to add the same dataset (see _log_inputs)


def git(root: Path, *args: str) -> Optional[str]:
    """git's output in `root`, stripped; None where git fails or is not installed."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _notebook_hash(root: Path, notebook: Optional[str]) -> Dict[str, str]:
    """The hash of the notebook's code (a path relative to the project root, or absolute);
    none for a notebook that cannot be read."""
    digest = code_hash(root / notebook) if notebook else None
    return {record.NOTEBOOK_HASH_TAG: digest} if digest else {}


def _torch_threads() -> Dict[str, str]:
    """torch's CPU thread count, when the notebook uses torch (never imported for a tag):
    results differ in their last digits between thread counts, and rerun uses the same."""
    torch = sys.modules.get("torch")
    return {record.THREADS_TAG: str(torch.get_num_threads())} if torch else {}


def source_tags(root: Path, notebook: Optional[str]) -> Dict[str, str]:
    """Where the run came from: notebook and the hash of its code, git commit and dirty flag,
    host, torch's thread count, package versions."""
    tags = {
        record.SOURCE_TYPE_TAG: "NOTEBOOK",
        record.SOURCE_NAME_TAG: notebook or os.environ.get("JPY_SESSION_NAME") or "unknown",
        record.HOST_TAG: socket.gethostname(),
        record.VERSION_TAG.format("python"): platform.python_version(),
        **_notebook_hash(root, notebook),
        **_torch_threads(),
    }
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # a sweep's GPU slot (executors/local.py)
        tags[record.DEVICES_TAG] = os.environ["CUDA_VISIBLE_DEVICES"]
    if os.environ.get(record.WORKER_ENV):
        tags[record.WORKER_TAG] = os.environ[record.WORKER_ENV]
    commit = git(root, "rev-parse", "HEAD")
    if commit:
        tags[record.GIT_COMMIT_TAG] = commit
        dirty = git(root, "status", "--porcelain", "--untracked-files=no")
        tags[record.GIT_DIRTY_TAG] = str(bool(dirty)).lower()
    for package in VERSIONED_PACKAGES:
        try:
            tags[record.VERSION_TAG.format(package)] = metadata.version(package)
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
    """The open run: buffered metrics, figures, the model, and a local output folder. In a
    search's job, metrics also go to the job's trial, whose pruner may stop the training
    (TrialPruned, from log_metric or log_metrics)."""

    def __init__(self, client: MlflowClient, run_id: str, output_dir: Path, tracking_cfg):
        self.client = client
        self.run_id = run_id
        self.output_dir = output_dir
        self.metrics = MetricBuffer(client, run_id, tracking_cfg.flush_interval,
                                    tracking_cfg.flush_size)
        self.trial = reporter_from_environment()
        self._logged: Dict[str, int] = {}  # output file -> mtime when logged

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.log_metrics({key: value}, step)

    def log_metrics(self, metrics: Dict[str, float], step: int = 0) -> None:
        self.metrics.log_dict(metrics, step)
        if self.trial is not None:
            self.trial.report(metrics, step)

    def log_figure(self, figure, name: str) -> Path:
        """Save a matplotlib figure as <output_dir>/figures/<name>, log it, close it.

        Rendered once: display the returned PNG (IPython.display.Image) instead of letting
        the inline backend render the figure a second time.
        """
        import matplotlib.pyplot as plt

        path = self.output_dir / record.FIGURES_FOLDER / name
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        self._log_output(path)
        return path

    def log_model(self, model, input_example, name: str = record.MODEL_ARTIFACT):
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

    def log_dataset(self, data, name: Optional[str] = None) -> None:
        """The data actually used, as MLflow dataset inputs named `name` (default: the
        dataset's own): one per split (contexts training, validation, testing), each with the
        digest of its bytes; and the whole dataset's digest tagged, so that two runs tell
        whether they saw the same data."""
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        from sweepbook.data import SPLITS, combined_digest  # torch: imported by the caller

        digests, inputs = data.digests(), []
        for split_name, context in zip(SPLITS, DATASET_CONTEXTS):
            split = getattr(data, split_name)
            dataset = mlflow.data.from_numpy(  # a source given: MLflow's default runs git
                split.x.detach().cpu().numpy(), targets=split.y.detach().cpu().numpy(),
                name=name or data.name, source=CodeDatasetSource({}),
                digest=digests[split_name][:MLFLOW_DIGEST_LENGTH])
            inputs.append(DatasetInput(dataset._to_mlflow_entity(),  # as mlflow.log_input
                                       [InputTag(MLFLOW_DATASET_CONTEXT, context)]))
        self._log_inputs(inputs)
        self.client.set_tag(self.run_id, record.DATA_DIGEST_TAG, combined_digest(digests))

    def _log_inputs(self, inputs) -> None:
        """One write, not one per split. MLflow looks for the experiment's dataset, then adds
        it if missing: two jobs of a sweep logging the same data at once both add it, and the
        second write fails on the store's unique key. Tried again, it finds the first's."""
        from mlflow.exceptions import MlflowException

        for attempt in range(DATASET_WRITE_TRIES):
            try:
                return self.client.log_inputs(self.run_id, datasets=inputs)
            except MlflowException:
                if attempt == DATASET_WRITE_TRIES - 1:
                    raise

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
        self.write_output(record.CONFIG_ARTIFACT,
                          yaml.safe_dump(redact(to_container(cfg)), sort_keys=False))
        self.write_output(record.OVERRIDES_ARTIFACT, yaml.safe_dump(redact_overrides(overrides)))

    def close(self) -> None:
        self.metrics.flush()
        self.log_new_outputs()


def _open_run(cfg, made: Composition, parent_run_id: Optional[str], tags: Dict[str, str]):
    uri = cfg.tracking.uri
    client = open_store(uri)
    experiment_id = ensure_experiment(client, cfg.expname, artifact_root(uri, cfg))
    if cfg.tracking.system_metrics:
        mlflow.set_system_metrics_sampling_interval(cfg.tracking.system_metrics_interval)
    active = mlflow.start_run(
        experiment_id=experiment_id, run_name=record.run_name(cfg, made.overrides, made.choices),
        parent_run_id=parent_run_id, nested=mlflow.active_run() is not None,
        tags=tags, log_system_metrics=cfg.tracking.system_metrics,
    )
    run_id = active.info.run_id
    output_dir = Path(cfg.paths.output_dir) / record.safe_name(cfg.expname) / run_id
    output_dir.mkdir(parents=True, exist_ok=True)
    return TrackedRun(client, run_id, output_dir, cfg.tracking)


def _end_run(run: TrackedRun, status: str) -> None:
    try:
        run.close()
    finally:
        mlflow.end_run(status)


def _composition(cfg, overrides: Optional[Iterable[str]]) -> Composition:
    """How `cfg` was made; overrides given here must be the ones it was composed with, so a
    run never records overrides that did not build its config (a re-run notebook cell)."""
    made = composition(cfg)
    if made is None:
        return Composition("unknown", tuple(overrides or ()), {})
    if overrides is not None and tuple(overrides) != made.overrides:
        raise ValueError(f"cfg was composed with overrides {list(made.overrides)}, not "
                         f"{list(overrides)}: compose it again (re-run the config cell)")
    return made


@contextmanager
def start_run(cfg, overrides: Optional[Iterable[str]] = None,
              parent_run_id: Optional[str] = None, notebook: Optional[str] = None,
              tags: Optional[Dict[str, str]] = None) -> Iterator[TrackedRun]:
    """Open a new run for `cfg`; end it FINISHED, FAILED (exception) or KILLED (interrupt).

    The overrides and the primary config's name are those `cfg` was composed with.
    """
    made = _composition(cfg, overrides)
    edited = bool(made.fingerprint) and fingerprint(cfg) != made.fingerprint
    all_tags = {**source_tags(Path(cfg.paths.root_dir), notebook),
                record.CONFIG_NAME_TAG: made.config_name,
                **({record.CONFIG_EDITED_TAG: "true"} if edited else {}),
                record.OVERRIDES_TAG: " ".join(redact_overrides(list(made.overrides))),
                **{k: str(v) for k, v in redact(dict(tags or {})).items()}}
    with using_tracking_uri(cfg.tracking.uri):
        with patched_environ({record.RUN_ID_ENV: None}):  # MLflow would resume a leaked id
            run = _open_run(cfg, made, parent_run_id, all_tags)
        try:
            run.log_config(cfg, list(made.overrides))
            yield run
        except TrialPruned as pruned:  # the search's pruner stopped it: not a failure
            run.client.set_tag(run.run_id, record.PRUNED_TAG, str(pruned))
            _end_run(run, "KILLED")
            raise
        except KeyboardInterrupt:
            _end_run(run, "KILLED")
            raise
        except BaseException as error:
            run.client.set_tag(run.run_id, record.ERROR_TAG,
                               f"{type(error).__name__}: {error}"[:5000])
            _end_run(run, "FAILED")
            raise
        _end_run(run, "FINISHED")
