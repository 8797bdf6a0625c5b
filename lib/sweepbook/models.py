"""Models built from the `model` config group, sized for the dataset's images."""
from typing import Sequence

from torch import nn


class CNN(nn.Module):
    """Two 3x3 conv blocks and a linear head (6k parameters at channels=16).

    Max-pooling after the first block keeps it fast; adaptive pooling makes it size-agnostic.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(2 * channels * 4, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class MLP(nn.Module):
    """Flattened pixels, one hidden ReLU layer."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x):
        return self.net(x)


def resnet18(in_channels: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (random init, no download) with a stem for small images."""
    from torchvision.models import resnet18 as tv_resnet18

    model = tv_resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(model_cfg, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The architecture `model_cfg.name` names, for images of `input_shape` (C, H, W)."""
    name = str(getattr(model_cfg.name, "value", model_cfg.name))
    channels, height, width = input_shape
    if name == "cnn":
        return CNN(channels, num_classes, model_cfg.channels)
    if name == "mlp":
        return MLP(channels * height * width, num_classes, model_cfg.hidden)
    if name == "resnet18":
        return resnet18(channels, num_classes)
    raise ValueError(f"unknown model {name!r}; valid: cnn, mlp, resnet18")
