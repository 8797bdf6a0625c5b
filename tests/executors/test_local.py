"""The local executor's pieces that need no notebook: engines, the store hand-off."""
import os

import pytest

from sweepbook.executors import get_executor
from sweepbook.executors.local import LocalExecutor, StoreHandoff, handed_over_store


def test_unknown_engine_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown engine 'gpu'; valid: fork, kernel"):
        LocalExecutor(workers=1, engine="gpu")


def test_executors_are_chosen_by_name():
    executor = get_executor("local", workers=2, engine="kernel")
    assert isinstance(executor, LocalExecutor) and executor.has_room()
    with pytest.raises(ValueError, match="unknown executor 'moon'; valid: local"):
        get_executor("moon", workers=1)


def test_store_handoff_passes_the_uri_once_released():
    before = dict(os.environ)
    with StoreHandoff() as handoff:
        reader = open(handoff.path)
        handoff.release("sqlite:////x/mlflow.db")
        assert handed_over_store(reader) == "sqlite:////x/mlflow.db"
        path = handoff.path
    assert not os.path.exists(path) and dict(os.environ) == before
