"""The training loop: seeded, device-aware, reporting metrics through a callback.

It knows nothing of MLflow: `log(metrics, step)` is whatever the caller passes (the tracked
run's buffer in the notebook, nothing in the benchmark's untracked baseline).
"""
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sweepbook.data import Dataset, Split, batches

LogFn = Callable[[Dict[str, float], int], None]


@dataclass
class Evaluation:
    loss: float
    acc: float
    predictions: torch.Tensor  # predicted class per sample, on the cpu


@dataclass
class History:
    train_loss: List[float] = field(default_factory=list)  # one per optimizer step
    val_loss: List[float] = field(default_factory=list)  # one per epoch
    val_acc: List[float] = field(default_factory=list)  # one per epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    name = str(getattr(opt_cfg.name, "value", opt_cfg.name))
    if name == "adam":
        return torch.optim.Adam(params, lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=opt_cfg.lr, momentum=opt_cfg.momentum,
                               weight_decay=opt_cfg.weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512,
             device: Optional[torch.device] = None) -> Evaluation:
    """Mean cross-entropy, accuracy and predictions of `model` on a split."""
    device = device or next(model.parameters()).device
    model.eval()
    total_loss, predictions = 0.0, []
    for x, y in batches(split, batch_size):
        logits = model(x.to(device))
        total_loss += F.cross_entropy(logits, y.to(device), reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions)
    acc = (predicted == split.y).float().mean().item()
    return Evaluation(total_loss / len(split), acc, predicted)


def _progress(epochs: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(range(epochs), desc="epochs", disable=not enabled, leave=True)


def fit(model: nn.Module, dataset: Dataset, cfg, log: Optional[LogFn] = None) -> History:
    """Train on dataset.train, validate every epoch; logs train_loss per step, val_* per epoch."""
    log = log or (lambda metrics, step: None)
    device = select_device(cfg.training.device)
    model.to(device)
    optimizer = build_optimizer(model.parameters(), cfg.optimizer)
    shuffler = torch.Generator().manual_seed(cfg.seed)
    history, step = History(), 0
    bar = _progress(cfg.training.epochs, cfg.training.progress)
    for epoch in bar:
        model.train()
        for x, y in batches(dataset.train, cfg.training.batch_size, True, shuffler):
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.train_loss.append(loss.item())
            log({"train_loss": history.train_loss[-1]}, step)
            step += 1
        val = evaluate(model, dataset.val, device=device)
        history.val_loss.append(val.loss)
        history.val_acc.append(val.acc)
        log({"val_loss": val.loss, "val_acc": val.acc}, epoch)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val_acc=f"{val.acc:.3f}")
    return history
