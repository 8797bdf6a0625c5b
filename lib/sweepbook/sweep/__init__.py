"""Sweeps: a plan of validated jobs, a source that hands them out, a driver that runs them on
an executor, and a recorder that keeps MLflow truthful. `run_sweep` is loaded on first use."""
__all__ = ["run_sweep", "SweepResult", "JobResult"]

_HOMES = {"run_sweep": "sweepbook.sweep.driver", "SweepResult": "sweepbook.sweep.results",
          "JobResult": "sweepbook.sweep.results"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
