"""The training loop: seeded, device-aware, reporting metrics through a callback.

It knows nothing of MLflow: `log(metrics, step)` is whatever the caller passes (the tracked
run's buffer in the notebook, nothing in the benchmark's untracked baseline).
"""
import os
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sweepbook.data import Dataset, Split, batches

LogFn = Callable[[Dict[str, float], int], None]
CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG", ":4096:8"  # deterministic


def _accuracy(predicted: Tensor, truth: Tensor) -> float:
    return (predicted == truth).float().mean().item()


def _rmse(predicted: Tensor, truth: Tensor) -> float:
    return (predicted - truth).pow(2).mean().sqrt().item()


def _squared_error(outputs: Tensor, truth: Tensor, reduction: str = "mean") -> Tensor:
    return F.mse_loss(outputs.squeeze(-1), truth, reduction=reduction)


@dataclass(frozen=True)
class Task:
    """What a model learns: the loss it trains on, the score logged with it, and how its
    outputs become predictions."""
    score_name: str  # logged as val_<score_name> per epoch
    loss: Callable[..., Tensor]  # (outputs, truth, reduction=...) -> loss
    score: Callable[[Tensor, Tensor], float]  # (predictions, truth) -> score
    predict: Callable[[Tensor], Tensor]  # outputs -> predictions


CLASSIFICATION = Task("acc", F.cross_entropy, _accuracy, lambda outputs: outputs.argmax(1))
REGRESSION = Task("rmse", _squared_error, _rmse, lambda outputs: outputs.squeeze(-1))


@dataclass
class Evaluation:
    loss: float
    score: float  # the task's score: accuracy, or RMSE for regression
    predictions: torch.Tensor  # predicted class or value per sample, on the cpu


@dataclass
class History:
    score_name: str = "acc"
    train_loss: List[float] = field(default_factory=list)  # one per optimizer step
    val_loss: List[float] = field(default_factory=list)  # one per epoch
    val_score: List[float] = field(default_factory=list)  # one per epoch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch. With `deterministic`, torch also picks deterministic
    algorithms (cuDNN, cuBLAS) and warns on an op that has none (some CUDA ops): on the same
    hardware, with the same thread count, a seed then gives bit-identical results."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault(CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE)  # read at cuBLAS's start
        # torch.use_deterministic_algorithms(True, warn_only=True) without what it adds for
        # torch.compile, which costs 1.4 s of imports (torch._inductor) in every process
        torch._C._set_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def select_device(name: str = "auto") -> torch.device:
    """`auto` picks cuda, then Apple's mps, then the cpu; anything else is taken as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def build_optimizer(params, opt_cfg) -> torch.optim.Optimizer:
    """The optimizer `opt_cfg` names (`_target_: torch.optim.Adam`, `_partial_: true`, ...)."""
    from hydra.utils import instantiate

    return instantiate(opt_cfg)(params)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512,
             device: Optional[torch.device] = None, task: Task = CLASSIFICATION) -> Evaluation:
    """Mean loss, the task's score and the predictions of `model` on a split."""
    device = device or next(model.parameters()).device
    model.eval()
    total_loss, predictions = 0.0, []
    for x, y in batches(split, batch_size):
        outputs = model(x.to(device))
        total_loss += task.loss(outputs, y.to(device), reduction="sum").item()
        predictions.append(task.predict(outputs).cpu())
    predicted = torch.cat(predictions)
    return Evaluation(total_loss / len(split), task.score(predicted, split.y), predicted)


def _progress(epochs: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(range(epochs), desc="epochs", disable=not enabled, leave=True)


def fit(model: nn.Module, dataset: Dataset, cfg, log: Optional[LogFn] = None,
        task: Task = CLASSIFICATION) -> History:
    """Train on dataset.train, validate every epoch; logs train_loss every
    `training.log_every_n_steps` steps (the mean over them, at the last one's step: a row in
    MLflow costs more than a step here), val_loss and val_<score> per epoch. The optimizer is
    built here from cfg.optimizer, fresh each call."""
    log = log or (lambda metrics, step: None)
    device = select_device(cfg.training.device)
    model.to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    history, step = History(task.score_name), 0
    every = cfg.training.get("log_every_n_steps", 1)  # rows, not steps, cost in MLflow
    last_step = cfg.training.epochs * -(-len(dataset.train) // cfg.training.batch_size)
    score_key = f"val_{task.score_name}"
    bar = _progress(cfg.training.epochs, cfg.training.progress)
    for epoch in bar:
        model.train()
        for x, y in batches(dataset.train, cfg.training.batch_size, True, shuffler):
            loss = task.loss(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.train_loss.append(loss.item())
            step += 1
            if step % every == 0 or step == last_step:
                window = history.train_loss[-((step - 1) % every + 1):]
                log({"train_loss": sum(window) / len(window)}, step - 1)
        val = evaluate(model, dataset.val, device=device, task=task)
        history.val_loss.append(val.loss)
        history.val_score.append(val.score)
        log({"val_loss": val.loss, score_key: val.score}, epoch)
        bar.set_postfix({"loss": f"{history.train_loss[-1]:.3f}", score_key: f"{val.score:.3f}"})
    return history
