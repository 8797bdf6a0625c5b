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


def test_known_devices_pass():
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert compose([f"training.device={device}"]).training.device == device


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
