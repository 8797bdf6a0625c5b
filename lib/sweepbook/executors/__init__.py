"""Where jobs run: an Executor per backend, chosen by name (`get_executor("local")`)."""
from sweepbook.executors.base import Executor, JobSpec, Outcome

__all__ = ["Executor", "JobSpec", "Outcome", "get_executor", "make_executor", "EXECUTORS"]

EXECUTORS = {"local": "sweepbook.executors.local:LocalExecutor",  # name -> class, loaded on use
             "ray": "sweepbook.executors.ray_tasks:RayExecutor"}


def get_executor(name: str, **options) -> Executor:
    """The executor `name` (see EXECUTORS), made with `options` (workers, timeout, ...)."""
    import importlib

    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    module, _, cls = EXECUTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**options)


def make_executor(name: str, overrides=(), **given) -> Executor:
    """The executor `name` as conf/executor/<name>.yaml, `executor.KEY=VALUE` overrides and
    the `given` options (None: not given) say (settings.py); bad values raise ConfigError."""
    import dataclasses

    from sweepbook.executors.settings import executor_settings

    settings = executor_settings(name, overrides, **given)
    return get_executor(name, **{k: v for k, v in dataclasses.asdict(settings).items()
                                 if k != "name"})
