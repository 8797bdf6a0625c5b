"""Where a sweep's jobs come from. The driver asks a source for the next job while it has
room, and tells it each result: a grid hands out its planned jobs in order and learns
nothing; a search (an Optuna study) chooses each next trial from the results so far."""
import math
from collections import deque
from typing import Callable, Dict, Iterable, List, Optional

from sweepbook.sweep.plan import Job
from sweepbook.sweep.results import JobResult
from sweepbook.sweep.space import SearchSpace
from sweepbook.tracking.record import PRUNED


class GridSource:
    """Every planned job, in order."""

    def __init__(self, jobs: Iterable[Job]):
        self._queue = deque(jobs)

    def ask(self) -> Job:
        """The next job to run (call only while not exhausted)."""
        return self._queue.popleft()

    def tell(self, job: Job, result: JobResult) -> None:
        """A job's result: a grid runs its plan whatever the results."""

    @property
    def exhausted(self) -> bool:
        return not self._queue

    def unstarted(self) -> List[Job]:
        """Jobs never handed out (a stopped sweep's)."""
        return list(self._queue)


class StudySource:
    """Trials of an Optuna study (study.py), until `trials` count in it (interrupted ones do
    not). Each trial's overrides are validated by `make_job` as a sweep job's are; the job
    carries its trial's link for the notebook's run to report to (tracking/trial.py).
    `told(job, result, trial)` hears each result once the study has it."""

    def __init__(self, study, space: SearchSpace, trials: int, metric: str,
                 make_job: Callable[[int, List[str]], Job], link: Callable,
                 told: Callable = lambda job, result, trial: None):
        from sweepbook.sweep.study import counted

        self.study, self.space, self.trials, self.metric = study, space, trials, metric
        self.make_job, self.link, self.told = make_job, link, told
        self._asked: Dict[int, object] = {}  # trial number -> its optuna Trial, while running
        self._counted = len(counted(study))

    @property
    def exhausted(self) -> bool:
        return self._counted + len(self._asked) >= self.trials

    def ask(self) -> Job:
        trial = self.study.ask(self.space.distributions)
        self._asked[trial.number] = trial
        job = self.make_job(trial.number, self.space.overrides(trial.params))
        job.environment = self.link(trial).environment()
        return job

    def tell(self, job: Job, result: JobResult) -> None:
        from sweepbook.sweep.study import interrupt, tell_failed

        trial = self._asked.pop(job.index)
        if result.status == "FINISHED" and not _usable(result.metric):
            result.status = "FAILED"  # the search cannot use it: the recorder says why in MLflow
            result.error = (f"its run logged no metric named {self.metric!r}: the search "
                            f"optimizes it (give --metric with a metric the notebook logs)"
                            if result.metric is None else
                            f"its {self.metric} is {result.metric}: not a number to optimize")
        if result.status == "FINISHED":
            frozen = self.study.tell(trial, result.metric)
        elif result.status == PRUNED:
            frozen = self.study.tell(trial, state=_state("PRUNED"))
        elif result.status == "KILLED":  # stopped with its sweep: run again by the next command
            frozen = interrupt(self.study, trial, result.error)
        else:
            frozen = tell_failed(self.study, trial, result.error or result.status)
        self._counted += result.status != "KILLED"
        self.told(job, result, frozen)

    def unstarted(self) -> List[Job]:
        """A search hands out no job it will not run."""
        return []

    def abandon(self, reason: str) -> None:
        """Trials asked for and never told (the loop broke before their result): interrupted,
        so that no trial is left RUNNING and the next command runs them again."""
        from sweepbook.sweep.study import interrupt

        for trial in self._asked.values():
            interrupt(self.study, trial, reason)
        self._asked.clear()


def _usable(metric: Optional[float]) -> bool:
    return metric is not None and math.isfinite(metric)


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
