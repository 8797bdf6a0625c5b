import pytest
import torch

from sweepbook.config import compose
from sweepbook.data import load_dataset
from sweepbook.models import build_model
from sweepbook.training import (REGRESSION, build_optimizer, evaluate, fit, seed_everything,
                                select_device)


def train(overrides):
    cfg = compose(["training.progress=false", *overrides])
    seed_everything(cfg.seed)
    data = load_dataset(cfg.data, cfg.seed)
    model = build_model(cfg.model, data.input_shape, len(data.classes))
    logged = []
    history = fit(model, data, cfg, log=lambda metrics, step: logged.append((step, metrics)))
    return model, data, history, logged


def test_fit_reports_step_and_epoch_metrics():
    _, data, history, logged = train(["training.epochs=2", "data.limit=200",
                                      "training.log_every_n_steps=1"])
    steps = [step for step, m in logged if "train_loss" in m]
    epochs = [(step, sorted(m)) for step, m in logged if "val_acc" in m]
    assert steps == list(range(8))  # 200 samples / 64 per batch = 4 steps per epoch
    assert epochs == [(0, ["val_acc", "val_loss"]), (1, ["val_acc", "val_loss"])]
    assert len(history.train_loss) == 8 and len(history.val_score) == 2


def test_fit_logs_the_mean_train_loss_of_every_n_steps_and_of_the_last_few():
    _, data, history, logged = train(["training.epochs=2", "data.limit=200",
                                      "training.log_every_n_steps=3"])
    losses = [(step, m["train_loss"]) for step, m in logged if "train_loss" in m]
    every_step = history.train_loss  # 8 steps: windows 0-2, 3-5, then the last two
    assert [step for step, _ in losses] == [2, 5, 7]
    expected = [sum(every_step[0:3]) / 3, sum(every_step[3:6]) / 3, sum(every_step[6:8]) / 2]
    assert [value for _, value in losses] == pytest.approx(expected)


def test_default_config_learns_digits():
    model, data, history, _ = train([])
    assert evaluate(model, data.test).score >= 0.95
    assert history.val_loss[-1] < history.val_loss[0]


def test_same_seed_same_model():
    first, *_ = train(["model=mlp", "training.epochs=1"])
    second, *_ = train(["model=mlp", "training.epochs=1"])
    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_evaluate_counts_correct_predictions():
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor([0.0, 5.0]))

        def forward(self, x):
            return self.bias.expand(len(x), 2)

    from sweepbook.data import Split
    split = Split(torch.zeros(4, 1, 2, 2), torch.tensor([1, 1, 0, 1]))
    result = evaluate(Constant(), split)
    assert result.score == 0.75 and result.predictions.tolist() == [1, 1, 1, 1]


def test_device_and_optimizer_follow_the_config():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cuda", "mps", "cpu")
    cfg = compose(["optimizer=sgd", "optimizer.lr=0.3", "optimizer.momentum=0.5"])
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.optimizer)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["lr"] == 0.3 and optimizer.defaults["momentum"] == 0.5


def test_regression_task_reports_rmse_and_trains_on_squared_error():
    from sweepbook.data import Split

    class Line(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.tensor([2.0]))

        def forward(self, x):
            return x * self.weight

    split = Split(torch.tensor([[1.0], [2.0]]), torch.tensor([2.0, 6.0]))
    result = evaluate(Line(), split, task=REGRESSION)
    assert result.predictions.tolist() == [2.0, 4.0]
    assert result.loss == 2.0 and abs(result.score - 2.0 ** 0.5) < 1e-6  # errors 0 and 2


def test_regression_fit_logs_val_rmse_per_epoch():
    from sweepbook.data import load_diabetes

    cfg = compose(["training.progress=false", "training.epochs=3", "optimizer.lr=0.05"])
    data = load_diabetes(seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 1))
    logged = []
    history = fit(model, data, cfg, log=lambda metrics, step: logged.append(metrics),
                  task=REGRESSION)
    assert [sorted(m) for m in logged if "val_rmse" in m] == [["val_loss", "val_rmse"]] * 3
    assert history.score_name == "rmse" and len(history.val_score) == 3


def test_seed_everything_makes_torch_pick_deterministic_algorithms():
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        torch.use_deterministic_algorithms(False)
        seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()  # CUDA ops without one warn
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
