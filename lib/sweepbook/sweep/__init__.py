"""Sweeps and searches: a plan of validated jobs (or a search space), a source that hands them
out (a grid, an Optuna study), a driver that runs them on an executor, and a recorder that
keeps MLflow truthful. `run_sweep` and `run_tune` are loaded on first use."""
__all__ = ["run_sweep", "SweepResult", "JobResult", "run_tune", "TuneResult"]

_HOMES = {"run_sweep": "sweepbook.sweep.driver", "SweepResult": "sweepbook.sweep.results",
          "JobResult": "sweepbook.sweep.results", "run_tune": "sweepbook.sweep.tune",
          "TuneResult": "sweepbook.sweep.results"}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
