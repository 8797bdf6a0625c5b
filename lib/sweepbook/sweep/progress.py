"""What a sweep or a search shows while it runs: a progress bar in a terminal (on stderr, so
that a closed pipe never stops the driver). Both are told each job as it starts and ends."""
import sys
from typing import List

from sweepbook.sweep.plan import Job
from sweepbook.sweep.results import JobResult


class _StderrOrNothing:
    """The progress bar's stream: a closed pipe (`sweepbook sweep ... | tee log` after Ctrl-C)
    must never stop the driver from recording the jobs."""

    def write(self, text: str) -> None:
        try:
            sys.stderr.write(text)
        except (OSError, ValueError):
            pass

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):  # encoding, isatty, ...: the terminal's
        return getattr(sys.stderr, name)


class TerminalProgress:
    """A tqdm bar: jobs done of all, with the failed and running counts."""

    def __init__(self, title: str, total: int, earlier: List[JobResult], quiet: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=len(earlier), desc=title, unit="job",
                        disable=quiet, file=_StderrOrNothing())
        self.running = self.failed = 0

    def _show_counts(self) -> None:
        self.bar.set_postfix(failed=self.failed, running=self.running, refresh=False)

    def started(self, job: Job) -> None:
        self.running += 1
        self._show_counts()

    def ended(self, result: JobResult) -> None:
        self.running = max(0, self.running - 1)
        self.failed += result.status == "FAILED"
        self._show_counts()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress(title: str, total: int, earlier: List[JobResult], metric: str, direction: str,
             quiet: bool):
    """How a run of `total` jobs (`earlier` of them done before) shows its progress."""
    return TerminalProgress(title, total, earlier, quiet)
