"""Structured-config schema: Hydra validates every composed config against it.

Plain YAML would accept ``training.epochs=abc``; these dataclasses make Hydra reject it
with the key and the expected type before any work starts.
"""
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore


class DatasetName(str, Enum):
    digits = "digits"
    fashion_mnist = "fashion_mnist"
    mnist = "mnist"


class ModelName(str, Enum):
    cnn = "cnn"
    mlp = "mlp"
    resnet18 = "resnet18"


class OptimizerName(str, Enum):
    adam = "adam"
    sgd = "sgd"


@dataclass
class PathsConfig:
    root_dir: str = "."  # project root; conf/paths sets it to an absolute path
    data_dir: str = "data"  # where torchvision datasets live (<data_dir>/FashionMNIST/raw/...)
    output_dir: str = "outputs"  # per-run local files: <output_dir>/<expname>/<run_id>/


@dataclass
class DataConfig:
    name: DatasetName = DatasetName.digits  # which dataset
    val_fraction: float = 0.1  # share of the training data held out for validation
    test_fraction: float = 0.1  # share held out for test (digits only; torchvision has its own)
    limit: Optional[int] = None  # keep only this many training samples (smoke runs)
    download: bool = False  # let torchvision download missing files (needs internet)


@dataclass
class ModelConfig:
    name: ModelName = ModelName.cnn  # which architecture
    channels: int = 16  # cnn: channels of the first conv layer (the second has twice as many)
    hidden: int = 128  # mlp: width of the hidden layer


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adam  # which torch.optim optimizer
    lr: float = 0.005  # learning rate
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0  # L2 penalty


@dataclass
class TrainingConfig:
    epochs: int = 20  # passes over the training data
    batch_size: int = 64  # samples per optimizer step
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    progress: bool = True  # show a progress bar (notebook-aware)


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlflow.db"  # MLflow tracking URI; MLFLOW_TRACKING_URI wins when set
    artifact_root: Optional[str] = None  # None: beside the SQLite file, or the server's choice
    log_model: bool = True  # log the trained model with mlflow.pytorch
    system_metrics: bool = False  # record CPU/memory/GPU usage while the run is open
    system_metrics_interval: float = 1.0  # seconds between system-metric samples
    flush_interval: float = 5.0  # seconds metrics may wait in the buffer before a write
    flush_size: int = 1000  # buffered metrics that force a write (MLflow's batch limit)


@dataclass
class TrainConfig:
    expname: str = "sweepbook"  # MLflow experiment
    runname: str = ""  # MLflow run name; empty: named from the overrides
    seed: int = 0  # seeds python, numpy and torch, and the data split
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def register_schema() -> None:
    """Make ``train_schema`` available to the defaults list of conf/train.yaml."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
