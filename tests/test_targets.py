"""Every `_target_` checked before any job runs: imports, keys, types, ranges, optimizers."""
from typing import Annotated, Optional

import pytest
from omegaconf import OmegaConf

from sweepbook.config import ConfigError, compose
from sweepbook.schema import Fraction, PositiveInt, Range
from sweepbook.targets import target_nodes, target_problems


def widget(size: PositiveInt, share: Fraction = 0.5, name: str = "w",
           tolerance: Optional[Annotated[float, Range(ge=0)]] = None):
    """A target with annotated parameters, as a user's own class would have."""


def open_widget(size: int, **options):
    """A target that takes any keyword."""


def check(node: dict) -> None:
    problems = target_problems(OmegaConf.create({"part": node}))
    if problems:
        raise ConfigError("\n".join(problems))


def test_nested_targets_are_found_with_their_keys():
    cfg = OmegaConf.create({"model": {"_target_": "a.B", "head": {"_target_": "a.C"}},
                            "layers": [{"_target_": "a.D"}], "plain": {"x": 1}})
    assert [key for key, _ in target_nodes(cfg)] == ["model", "model.head", "layers[0]"]


def test_a_target_that_does_not_import_is_named():
    with pytest.raises(ConfigError, match=r"part._target_='nowhere.Model' cannot be imported"):
        check({"_target_": "nowhere.Model"})


def test_a_misspelt_key_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"part.sise: test_targets.widget has no parameter "
                                          r"'sise'; valid: size, share, name, tolerance"):
        check({"_target_": "test_targets.widget", "sise": 3})
    check({"_target_": "test_targets.open_widget", "size": 3, "anything": 1})  # **kwargs


@pytest.mark.parametrize("key, value, says", [
    ("size", 0, r"part.size=0 is out of range: must be >= 1"),
    ("size", "big", r"part.size='big' is not a int"),
    ("size", 2.5, r"part.size=2.5 is not a int"),
    ("share", 1.0, r"part.share=1.0 is out of range: must be > 0 and < 1"),
    ("name", 3, r"part.name=3 is not a str"),
    ("tolerance", -1.0, r"part.tolerance=-1.0 is out of range: must be >= 0"),
])
def test_values_must_fit_the_targets_annotations(key, value, says):
    node = {"_target_": "test_targets.widget", "size": 2, key: value}
    with pytest.raises(ConfigError, match=says):
        check(node)


def test_fitting_values_pass_and_none_fits_optional():
    check({"_target_": "test_targets.widget", "size": 2, "share": 0.1, "tolerance": None})


def test_every_problem_of_a_config_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        compose(["model=mlp", "model.hidden=0", "data.test_fraction=0"])
    assert "model.hidden=0" in str(error.value) and "data.test_fraction=0" in str(error.value)


def test_torch_optimizers_check_their_own_values():
    with pytest.raises(ConfigError, match=r"optimizer.lr=-1 is out of range: must be > 0"):
        compose(["optimizer.lr=-1"])
    with pytest.raises(ConfigError, match=r"optimizer \(optimizer.lr=0.05, optimizer.momentum="
                                          r"-0.5, optimizer.weight_decay=0.0\) is refused by "
                                          r"torch.optim.SGD: Invalid momentum value: -0.5"):
        compose(["optimizer=sgd", "optimizer.momentum=-0.5"])
    assert compose(["optimizer=sgd", "optimizer.lr=0.3"]).optimizer.lr == 0.3


def test_check_targets_false_imports_nothing_of_the_targets():
    cfg = compose(["+model.typo=1"], check_targets=False)
    assert cfg.model.typo == 1


def test_keys_the_code_supplies_are_refused_not_silently_replaced():
    from sweepbook.data import load_dataset
    from sweepbook.models import build_model

    with pytest.raises(ValueError, match=r"data.seed: set by the code that builds data"):
        load_dataset(compose(["+data.seed=3"]).data, seed=0)
    with pytest.raises(ValueError, match=r"model.num_classes: set by the code that builds model"):
        build_model(compose(["+model.num_classes=3"]).model, (1, 8, 8), 10)
