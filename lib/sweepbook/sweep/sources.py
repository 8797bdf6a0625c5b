"""Where a sweep's jobs come from. The driver asks a source for the next job while it has
room, and tells it each result: a grid hands out its planned jobs in order and learns
nothing; a search (an Optuna study) would choose its next job from the results so far."""
from collections import deque
from typing import Iterable, Optional

from sweepbook.sweep.plan import Job
from sweepbook.sweep.results import JobResult


class GridSource:
    """Every planned job, in order."""

    def __init__(self, jobs: Iterable[Job]):
        self._queue = deque(jobs)

    def ask(self) -> Optional[Job]:
        """The next job to run, or None when there is none."""
        return self._queue.popleft() if self._queue else None

    def tell(self, job: Job, result: JobResult) -> None:
        """A job's result: a grid runs its plan whatever the results."""

    @property
    def exhausted(self) -> bool:
        return not self._queue
