"""What a sweep tells its caller: one row per job, and the sweep's overall outcome."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sweepbook.tracking.record import COUNTED_STATUSES

SKIPPED = "SKIPPED"  # a job whose config finished in an earlier attempt


@dataclass
class JobResult:
    index: int
    name: str
    status: str  # FINISHED, FAILED, KILLED, SKIPPED, NOT STARTED
    metric: Optional[float]
    seconds: Optional[float]
    notebook: Optional[str]  # the executed copy
    run_id: Optional[str]
    error: Optional[str] = None


@dataclass
class SweepResult:
    sweep_id: str
    parent_run_id: str
    metric: str
    results: List[JobResult] = field(default_factory=list)
    stopped_by: Optional[int] = None  # the signal that stopped it: Ctrl-C, SIGTERM, SIGHUP
    aborted: Optional[str] = None  # why the sweep itself stopped (its executor broke)
    tracking_uri: Optional[str] = None  # the store holding its runs

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    def counts(self) -> dict:
        """Jobs per status, for the statuses the parent run records."""
        return {status: self.count(status) for status in COUNTED_STATUSES}

    @property
    def ok(self) -> bool:
        return (not self.interrupted and not self.aborted
                and self.count("FAILED") == self.count("KILLED") == 0)

    def table(self):
        """One row per job: status, the key metric, duration, executed notebook."""
        import pandas as pd

        rows = [{"job": r.index, "name": r.name, "status": r.status, self.metric: r.metric,
                 "seconds": None if r.seconds is None else round(r.seconds, 1),
                 "notebook": r.notebook, "run_id": r.run_id} for r in self.results]
        return pd.DataFrame(rows).set_index("job")


@dataclass
class BestTrial:
    number: int  # the trial's number in its study
    value: float
    params: Dict[str, Any]  # as sampled: config key -> value
    run_id: Optional[str]  # its MLflow run


@dataclass
class TuneResult(SweepResult):
    """A search's outcome: a row per trial (earlier attempts' as SKIPPED), and the best one
    (a COMPLETE trial: never a pruned one)."""
    study: str = ""
    storage: str = ""  # the study's database (redacted)
    best: Optional[BestTrial] = None

    def table(self):
        table = super().table()
        table.index.name = "trial"
        return table
