"""Tracking: the run record's names (record), the store (store, readers), and `start_run`.

`start_run` and `TrackedRun` are loaded on first use, so that `sweepbook.tracking.record`
can be imported without MLflow.
"""
__all__ = ["start_run", "TrackedRun"]


def __getattr__(name):
    if name in __all__:
        from sweepbook.tracking import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
