"""Where jobs run, behind one small interface: start a job, poll for the ones that ended,
cancel the rest. Each backend (local processes today) is a sibling of the others; the sweep
driver never knows which one it has.

A job is one papermill execution of a notebook (job.py). It records its own run: its executed
notebook and log are logged by the job itself, so its record is complete even when the
driver is gone. An Outcome tells the driver only what the job could not: how it ended.
"""
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional

from sweepbook.tracking.record import LAUNCH_TAG


@dataclass
class JobSpec:
    index: int
    name: str  # the run's name, also for a placeholder run
    notebook: str  # the notebook to execute
    output: str  # the executed copy
    log: str  # the job process's own stdout and stderr
    parameters: Dict  # papermill parameters: overrides, parent_run_id, tags (with the launch id)
    env: Dict[str, str]  # the job's whole environment, the tracking URI included
    experiment_id: str  # where a placeholder run goes if the notebook never opens one
    threads: int = 1  # torch threads for this job (cores shared among workers)
    orphaned: str = ""  # why the job stops if its parent process dies; "": its driver died
    kernel_start_retries: int = 1

    @property
    def launch_id(self) -> str:
        return self.parameters["tags"][LAUNCH_TAG]


@dataclass
class Outcome:
    spec: JobSpec
    status: str  # FINISHED, FAILED, KILLED or PRUNED, as far as the executor can tell
    reason: Optional[str]  # why it did not finish, when the executor knows (timeout, cancel)
    run_id: Optional[str]  # the job's run, when it reported it (not a job killed first)
    seconds: float
    notebook: Optional[str] = None  # where the executed copy can be read, if anywhere


class Executor(ABC):
    """Runs at most `workers` jobs at once, each within `timeout` seconds."""

    def __init__(self, workers: int, timeout: Optional[float] = None):
        self.workers = workers
        self.timeout = timeout

    def warm_up(self, notebook: str, overrides: List[str]) -> None:
        """Start getting warm for jobs of `notebook` (not checked yet: it may not even exist)
        with the first job's `overrides`, before the driver reads the notebook and validates
        the jobs. Nothing by default."""

    def prepare(self, notebook: str, config_name: str, overrides: List[str]) -> None:
        """Get ready before the first job (start workers, warm them up with the sweep's first
        job: its notebook, primary config and overrides) while the driver still validates
        and creates the store. Nothing by default."""

    def use_device(self, device: str) -> None:
        """The jobs train on `device` (training.device: auto, cpu, cuda, cuda:N, mps); an
        executor that shares GPUs out decides here. Nothing by default."""

    def check_store(self, tracking_uri: str) -> None:
        """Refuse (ConfigError) a store the jobs cannot reach from where they run. Nothing by
        default: local jobs reach what the driver reaches."""

    def store_ready(self, tracking_uri: str) -> None:
        """The store exists now: workers may open it. Nothing by default."""

    def close(self) -> None:
        """Let go of what prepare() took. Nothing by default."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    @abstractmethod
    def running(self) -> int:
        """Jobs started and not yet reported by poll() or cancel()."""

    @property
    def threads_per_job(self) -> int:
        """Torch threads for each job: the cores shared by the workers."""
        return max(1, (os.cpu_count() or 1) // self.workers)

    def has_room(self) -> bool:
        return self.running < self.workers

    @abstractmethod
    def start(self, spec: JobSpec) -> None:
        """Start one job."""

    @abstractmethod
    def poll(self, seconds: float = 0.2) -> List[Outcome]:
        """Jobs that ended, or ran out of time, within `seconds`."""

    @abstractmethod
    def cancel(self, reason: str) -> List[Outcome]:
        """Stop every running job; each ends KILLED with `reason`."""
