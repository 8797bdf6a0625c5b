"""Models of notebooks/regress.ipynb: the `regressor` config group's targets (conf/regressor/).

A module of your own next to the notebook: the notebook's kernel, `sweepbook run` and
`sweepbook sweep` all import it from this folder. Each class takes `in_features` (the notebook
passes it from the data) and `target_mean` (the training targets' mean, also from the data),
plus the keys of its config, and returns one value per sample, shape (n, 1).

Why `target_mean`: the target stays in its own units (disease progression, mean ~150), and Adam
moves a parameter by about `lr` per step, so an output bias starting at 0 would spend its whole
budget climbing to the mean. Starting the output there, training learns only the deviations,
and the linear model and the MLP train well at the same learning rate.

The `Range` annotations are what validation checks: `regressor.hidden=0` is refused, naming
the key, before any job starts.
"""
from typing import Annotated

from torch import Tensor, nn

from sweepbook.schema import Range


class Linear(nn.Module):
    """Ordinary linear regression: the baseline, and hard to beat on 442 patients."""

    def __init__(self, in_features: Annotated[int, Range(ge=1)], target_mean: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(in_features, 1)
        nn.init.constant_(self.linear.bias, target_mean)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class MLPRegressor(nn.Module):
    """`depth` hidden ReLU layers of width `hidden`, dropout after each: can bend where a
    line cannot, and overfit where a line cannot."""

    def __init__(self, in_features: Annotated[int, Range(ge=1)],
                 hidden: Annotated[int, Range(ge=1)] = 64, depth: Annotated[int, Range(ge=1)] = 1,
                 dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0, target_mean: float = 0.0):
        super().__init__()
        layers, width = [], in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        output = nn.Linear(width, 1)
        nn.init.constant_(output.bias, target_mean)
        self.net = nn.Sequential(*layers, output)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
