"""Models for the `model` config group: each a `_target_` that takes the data's
`input_shape` and `num_classes` (given when built) plus its own keys from the config."""
import math
from typing import Sequence

from torch import nn

from sweepbook.schema import PositiveInt
from sweepbook.targets import build


class CNN(nn.Module):
    """Two 3x3 conv blocks and a linear head (6k parameters at channels=16).

    Max-pooling after the first block keeps it fast; adaptive pooling makes it size-agnostic.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int,
                 channels: PositiveInt = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(2 * channels * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """Flattened pixels, one hidden ReLU layer."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: PositiveInt = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden),
                                 nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


def resnet18(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (random init, no download) with a stem for small images."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(model_cfg, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The model `model_cfg` names (`_target_` and its keys) for inputs of `input_shape`."""
    return build(model_cfg, "model", input_shape=tuple(input_shape), num_classes=num_classes)
