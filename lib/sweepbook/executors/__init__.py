"""Where jobs run: an Executor per backend, chosen by name (`get_executor("local")`)."""
from sweepbook.executors.base import Executor, JobSpec, Outcome

__all__ = ["Executor", "JobSpec", "Outcome", "get_executor", "EXECUTORS"]

EXECUTORS = {"local": "sweepbook.executors.local:LocalExecutor"}  # name -> class, loaded on use


def get_executor(name: str, **options) -> Executor:
    """The executor `name` (see EXECUTORS), made with `options` (workers, timeout, ...)."""
    import importlib

    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)
