"""sweepbook: Hydra configs, PyTorch training, MLflow tracking and papermill sweeps, glued.

The public API, for notebooks and scripts (each loaded on first use: importing sweepbook
itself imports nothing heavy):

    from sweepbook import compose, start_run, run_sweep, run_tune, compare
"""
import importlib

__all__ = [
    "compose", "composition", "ConfigError",  # config
    "Range", "PositiveInt", "PositiveFloat", "NonNegativeFloat", "Fraction",  # schema
    "load_dataset", "build_model", "fit", "evaluate", "seed_everything",  # training
    "CLASSIFICATION", "REGRESSION",
    "start_run", "TrackedRun",  # tracking
    "run_sweep", "SweepResult", "run_tune", "TuneResult", "TrialPruned",  # sweep, search
    "compare",  # the read side: runs, plots, report, registry
]

_HOMES = {
    "compose": "sweepbook.config", "composition": "sweepbook.config",
    "ConfigError": "sweepbook.config",
    "Range": "sweepbook.schema", "PositiveInt": "sweepbook.schema",
    "PositiveFloat": "sweepbook.schema", "NonNegativeFloat": "sweepbook.schema",
    "Fraction": "sweepbook.schema",
    "load_dataset": "sweepbook.data", "build_model": "sweepbook.models",
    "fit": "sweepbook.training", "evaluate": "sweepbook.training",
    "seed_everything": "sweepbook.training", "CLASSIFICATION": "sweepbook.training",
    "REGRESSION": "sweepbook.training",
    "start_run": "sweepbook.tracking.run", "TrackedRun": "sweepbook.tracking.run",
    "run_sweep": "sweepbook.sweep.driver", "SweepResult": "sweepbook.sweep.results",
    "run_tune": "sweepbook.sweep.tune", "TuneResult": "sweepbook.sweep.results",
    "TrialPruned": "sweepbook.tracking.trial",
}


def __getattr__(name):
    if name == "compare":
        return importlib.import_module("sweepbook.compare")
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
