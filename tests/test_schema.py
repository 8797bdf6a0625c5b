"""What sweepbook reads is typed and range-checked before any work starts."""
import pytest

from sweepbook.config import ConfigError, compose
from sweepbook.schema import Range, RunSettings, TrainingConfig, settings_problems


@pytest.mark.parametrize("override, says", [
    ("training.epochs=-3", "training.epochs=-3 is out of range: must be >= 1"),
    ("training.batch_size=0", "training.batch_size=0 is out of range: must be >= 1"),
    ("training.device=bogus", "training.device='bogus' is not a known device: valid are auto"),
    ("seed=-1", "seed=-1 is out of range: must be >= 0 and < 4294967296"),
    ("tracking.flush_size=0", "tracking.flush_size=0 is out of range: must be >= 1"),
    ("expname=", "expname='' is empty"),
])
def test_values_out_of_range_name_the_key(override, says):
    with pytest.raises(ConfigError) as error:
        compose([override])
    assert says in str(error.value)


def test_known_devices_pass_where_the_machine_has_them(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert compose([f"training.device={device}"]).training.device == device
    with pytest.raises(ConfigError, match=r"'cuda:2' cannot be used: 2 are visible \(cuda:0 to "
                                          r"cuda:1\)"):
        compose(["training.device=cuda:2"])


def test_cuda_is_refused_at_compose_where_no_cuda_device_is_visible(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="training.device='cuda' cannot be used: no CUDA "
                                          "device is visible on this machine"):
        compose(["training.device=cuda"])


def test_typed_sections_convert_and_refuse_wrong_types():
    assert compose(["training.epochs=3"]).training.epochs == 3
    with pytest.raises(ConfigError, match=r"(?s)'abc'.*Integer.*training.epochs"):
        compose(["training.epochs=abc"])


def test_every_problem_is_listed():
    settings = RunSettings(seed=-1, training=TrainingConfig(epochs=0, device="tpu"))
    assert len(settings_problems(settings)) == 3


def test_range_reports_all_its_bounds():
    assert Range(gt=0, lt=1).problem(0) == "must be > 0 and < 1"
    assert Range(ge=1).problem(1) is None and Range(ge=1).problem(None) is None
    assert Range(ge=1).problem("x") is None  # types are judged elsewhere
