"""What sweepbook itself reads from a config, typed and range-checked before any work starts.

Everything else belongs to the user: model, data and optimizer options are `_target_` configs
(checked against their targets' signatures, see targets.py), and any key may be added. The
sections below are sweepbook's: the run's identity, where files go, how it is tracked, and
the training loop. A wrong type or a value out of range fails with the key's name.

`Range` is also the way a user's own class states its ranges: annotate a constructor
parameter `hidden: Annotated[int, Range(ge=1)]` (or use `PositiveInt`, `Fraction`, ...) and
validation refuses `model.hidden=0` before any job runs.
"""
import operator
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Annotated, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

_TESTS = {"ge": (">=", operator.ge), "gt": (">", operator.gt), "le": ("<=", operator.le),
          "lt": ("<", operator.lt)}
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")  # what select_device understands


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ge/le inclusive, gt/lt exclusive."""
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None

    def problem(self, value: Any) -> Optional[str]:
        """Why `value` is out of range, or None when it fits (non-numbers are not judged)."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        bounds = {name: getattr(self, name) for name in _TESTS if getattr(self, name) is not None}
        if all(_TESTS[name][1](value, bound) for name, bound in bounds.items()):
            return None
        return "must be " + " and ".join(f"{_TESTS[name][0]} {bound}"
                                         for name, bound in bounds.items())


@dataclass(frozen=True)
class SumBelow:
    """A rule over several parameters of one target: their sum stays below `limit` (shares
    of one whole, such as validation and test fractions)."""
    names: Tuple[str, ...]
    limit: float = 1.0

    def problem(self, values: Dict[str, Any]) -> Optional[str]:
        """Why the values break the rule, or None (non-numbers are not judged)."""
        numbers = [values.get(name) for name in self.names]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            return None
        if sum(numbers) < self.limit:
            return None
        given = " + ".join(f"{name}={value!r}" for name, value in zip(self.names, numbers))
        return f"{given} = {sum(numbers):g} must be below {self.limit:g}"


RULES_ATTRIBUTE = "__sweepbook_rules__"


def rules(*given: SumBelow) -> Callable:
    """Decorate a target with rules over several of its parameters; validation checks them
    with the parameters' defaults filled in (targets.py), before any job runs."""
    def mark(target: Callable) -> Callable:
        setattr(target, RULES_ATTRIBUTE, (*getattr(target, RULES_ATTRIBUTE, ()), *given))
        return target
    return mark


PositiveInt = Annotated[int, Range(ge=1)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(gt=0, lt=1)]  # a share strictly between 0 and 1


def _bounded(default: Any, **bounds: float) -> Any:
    return field(default=default, metadata={"range": Range(**bounds)})


@dataclass
class PathsConfig:
    root_dir: str = "."  # project root; conf/paths sets it to an absolute path
    data_dir: str = "data"  # where datasets live (<data_dir>/FashionMNIST/raw/...)
    output_dir: str = "outputs"  # per-run local files: <output_dir>/<expname>/<run_id>/


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLflow tracking URI; MLFLOW_TRACKING_URI wins when set
    artifact_root: Optional[str] = None  # None: beside the SQLite file, or the server's choice
    log_model: bool = True  # log the trained model with mlflow.pytorch
    system_metrics: bool = False  # record CPU/memory/GPU usage while the run is open
    system_metrics_interval: float = _bounded(1.0, gt=0)  # seconds between samples
    flush_interval: float = _bounded(5.0, ge=0)  # seconds metrics may wait before a write
    flush_size: int = _bounded(1000, ge=1)  # buffered metrics that force a write


@dataclass
class TrainingConfig:
    epochs: int = _bounded(20, ge=1)  # passes over the training data
    batch_size: int = _bounded(64, ge=1)  # samples per optimizer step
    device: str = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    progress: bool = True  # show a progress bar (notebook-aware)
    log_every_n_steps: int = _bounded(10, ge=1)  # train_loss logged as the mean of n steps


@dataclass
class RunSettings:
    """The keys sweepbook reads from every primary config; absent ones take these defaults,
    except `paths` and `tracking`, which a config must give (conf/paths, conf/tracking)."""
    expname: str = "sweepbook"  # MLflow experiment
    runname: str = ""  # MLflow run name; empty: named from the overrides
    seed: int = _bounded(0, ge=0, lt=2**32)  # seeds python, numpy and torch, and data splits
    paths: PathsConfig = field(default_factory=PathsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    training: Optional[TrainingConfig] = None  # sweepbook's training loop, when a config has one


@dataclass
class LocalExecutorConfig:
    """conf/executor/local.yaml: each job a process on this machine."""
    name: str = "local"  # the backend (executors.EXECUTORS)
    workers: Optional[int] = _bounded(None, ge=1)  # jobs at once; none: the cores, at most 4
    engine: str = "fork"  # fork: forked from a warm template; kernel: a Jupyter kernel per job
    timeout: Optional[float] = _bounded(None, gt=0)  # seconds a job may take; none: no limit
    gpus_per_job: int = _bounded(1, ge=0)  # GPUs each job gets (CUDA_VISIBLE_DEVICES) when
    #                                        some are visible; 0: every job sees them all


@dataclass
class RayExecutorConfig:
    """conf/executor/ray.yaml: each job a Ray task, on a local Ray or a cluster."""
    name: str = "ray"  # the backend (executors.EXECUTORS)
    address: Optional[str] = None  # none: a local Ray for this sweep only; auto or HOST:PORT:
    #                                join a running cluster
    workers: Optional[int] = _bounded(None, ge=1)  # jobs at once; none: the cluster's CPUs
    #                                                divided by num_cpus
    num_cpus: float = _bounded(1.0, gt=0)  # CPUs each job's task reserves
    num_gpus: float = _bounded(0.0, ge=0)  # GPUs each job's task reserves
    timeout: Optional[float] = _bounded(None, gt=0)  # seconds a job may take; none: no limit


EXECUTOR_SETTINGS = {"local": LocalExecutorConfig, "ray": RayExecutorConfig}


def range_problems(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any, str]]:
    """(dotted key, value, why) for every bounded field of a dataclass tree out of range."""
    for spec in fields(node):
        value, key = getattr(node, spec.name), f"{prefix}{spec.name}"
        if is_dataclass(value):
            yield from range_problems(value, f"{key}.")
        elif "range" in spec.metadata and spec.metadata["range"].problem(value):
            yield key, value, spec.metadata["range"].problem(value)


def _cuda_problem(device: str) -> Optional[str]:
    """Why a cuda device cannot be used here (torch is imported only when one is asked for)."""
    if not device.startswith("cuda"):
        return None
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index < visible:
        return None
    seen = f"{visible} are visible (cuda:0 to cuda:{visible - 1})" if visible else \
        "no CUDA device is visible on this machine"
    return (f"training.device={device!r} cannot be used: {seen}; use training.device=auto "
            "or cpu")


def settings_problems(settings: RunSettings) -> List[str]:
    """Readable reasons why typed settings cannot run (ranges, device, empty expname)."""
    problems = [f"{key}={value!r} is out of range: {why}"
                for key, value, why in range_problems(settings)]
    if not settings.expname.strip():
        problems.append("expname='' is empty: name the MLflow experiment")
    if settings.training and not DEVICE.fullmatch(settings.training.device):
        problems.append(f"training.device={settings.training.device!r} is not a known device: "
                        "valid are auto, cpu, cuda, cuda:N, mps")
    elif settings.training:
        problems += filter(None, [_cuda_problem(settings.training.device)])
    return problems


def _typed_keys(node: Any = RunSettings, prefix: str = "") -> Iterator[Tuple[str, bool]]:
    """(dotted key, whether it is a section) of every key RunSettings types."""
    for spec in fields(node):
        kind = next((a for a in getattr(spec.type, "__args__", ()) if is_dataclass(a)),
                    spec.type)
        yield f"{prefix}{spec.name}", is_dataclass(kind)
        if is_dataclass(kind):
            yield from _typed_keys(kind, f"{prefix}{spec.name}.")


def deletion_problems(overrides: Sequence[str]) -> List[str]:
    """`~key` overrides deleting what sweepbook reads: it would run on silent defaults."""
    typed = dict(_typed_keys())
    problems = []
    for override in (o for o in overrides if o.startswith("~")):
        key = override[1:].split("=")[0]
        if key in typed:
            example = f"{key}.<key>=..." if typed[key] else f"{key}=..."
            problems.append(f"{override}: {key} is read by sweepbook (see sweepbook.schema) "
                            f"and cannot be deleted; set its values instead, e.g. {example}")
    return problems
