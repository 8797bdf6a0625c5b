import pytest
import torch

from sweepbook.config import compose
from sweepbook.models import CNN, MLP, build_model


@pytest.mark.parametrize("name, cls", [("cnn", CNN), ("mlp", MLP), ("resnet18", torch.nn.Module)])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_every_model_maps_images_to_class_logits(name, cls, shape):
    model = build_model(compose([f"model={name}"]).model, shape, num_classes=10)
    assert isinstance(model, cls)
    assert model(torch.rand(3, *shape)).shape == (3, 10)


def test_default_cnn_is_small():
    model = build_model(compose().model, (1, 8, 8), 10)
    assert sum(p.numel() for p in model.parameters()) == 6090


def test_model_sizes_follow_the_config():
    wide = build_model(compose(["model=mlp", "model.hidden=7"]).model, (1, 8, 8), 10)
    assert wide.net[1].out_features == 7
