"""What a sweep or a search shows while it runs: in a Jupyter kernel, one table updated in
place (a row per job, its state and metric, the best so far); in a terminal, a progress bar
(on stderr, so that a closed pipe never stops the driver). Both are told each job as it
starts and ends."""
import contextvars
import html
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from sweepbook.sweep.plan import Job
from sweepbook.sweep.results import SKIPPED, JobResult

RUNNING = "RUNNING"
BEST_STATUSES = ("FINISHED", SKIPPED)  # SKIPPED: finished in an earlier attempt
STATE_ORDER = ("FINISHED", "PRUNED", "FAILED", "KILLED", SKIPPED)
REFRESH_SECONDS = 0.5  # the table is redrawn at most this often, and always at the end
ENDED_ROWS = 30  # ended rows shown (the latest), besides the running ones and the best


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


@dataclass
class Row:
    """One job or trial as the live table shows it."""
    index: int
    name: str
    state: str  # RUNNING, then its result's status
    metric: Optional[float] = None
    seconds: Optional[float] = None
    error: Optional[str] = None

    @classmethod
    def of(cls, result: JobResult) -> "Row":
        return cls(result.index, result.name, result.status, result.metric, result.seconds,
                   result.error)


def best_row(rows: List[Row], direction: str) -> Optional[Row]:
    """The best finished row by `direction` ('max' or 'min'): a pruned, failed or killed job
    is never the best, whatever metric it reported before it stopped."""
    scored = [row for row in rows if row.state in BEST_STATUSES and row.metric is not None
              and not math.isnan(row.metric)]
    if not scored:
        return None
    pick = min if direction == "min" else max
    return pick(scored, key=lambda row: row.metric)


def shown_rows(rows: List[Row], best: Optional[Row], ended_rows: int) -> List[Row]:
    """The rows worth a line in a large sweep: every running one, the latest `ended_rows`
    ended ones and the best, in job order. `rows` come in the order they last changed."""
    ended = [row for row in rows if row.state != RUNNING]
    latest = ended[-ended_rows:] if ended_rows > 0 else []
    return sorted([row for row in rows if row.state == RUNNING or row is best]
                  + [row for row in latest if row is not best], key=lambda row: row.index)


def _number(value: Optional[float], form: str) -> str:
    return "" if value is None else format(value, form)


def summary(title: str, total: int, rows: List[Row], metric: str, best: Optional[Row]) -> str:
    """One line: jobs done of all, per state, and the best so far."""
    counts = {state: sum(row.state == state for row in rows)
              for state in (RUNNING, *STATE_ORDER)}
    done = len(rows) - counts[RUNNING]
    states = ", ".join(f"{count} {'earlier' if state == SKIPPED else state.lower()}"
                       for state, count in counts.items() if count)
    line = f"{title}: {done} of {total} done" + (f" ({states})" if states else "")
    if best is None:
        return f"{line}; best {metric}: none yet"
    return f"{line}; best {metric}: {best.metric:.4g} (#{best.index} {best.name})"


def render(title: str, total: int, rows: List[Row], metric: str, direction: str,
           ended_rows: int = ENDED_ROWS) -> Dict[str, str]:
    """The live table as a display bundle (HTML, and plain text for consoles): a summary
    line, then a row per shown job, the best in bold. `rows` come in the order they last
    changed (see shown_rows)."""
    best = best_row(rows, direction)
    shown = shown_rows(rows, best, ended_rows)
    line = summary(title, total, rows, metric, best)
    hidden = len(rows) - len(shown)
    note = f"{hidden:,} more ended rows hidden: the result's table() has them all" \
        if hidden else ""
    cells = []
    for row in shown:
        why = f' title="{html.escape(row.error)}"' if row.error else ""
        bold = ' style="font-weight:bold"' if row is best else ""
        cells.append(f"<tr{bold}><td>{row.index}</td><td>{html.escape(row.name)}</td>"
                     f"<td{why}>{row.state}</td><td>{_number(row.metric, '.4g')}</td>"
                     f"<td>{_number(row.seconds, '.1f')}</td></tr>")
    head = "".join(f"<th>{html.escape(name)}</th>"
                   for name in ("#", "name", "state", metric, "seconds"))
    page = (f"<p>{html.escape(line)}</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(cells)}</tbody></table>"
            + (f"<p><i>{html.escape(note)}</i></p>" if note else ""))
    text = [line] + [f"{row.index:>5}  {row.state:<8}  {_number(row.metric, '.4g'):>8}  "
                     f"{row.name}" for row in shown] + ([note] if note else [])
    return {"text/html": page, "text/plain": "\n".join(text)}


class LiveTable:
    """The table of a run of jobs inside a Jupyter kernel: one display, updated in place as
    jobs start and end. Updates closer than `refresh` seconds are merged into one, drawn by
    a timer thread, so that a large sweep never floods the front end."""

    def __init__(self, title: str, total: int, earlier: List[JobResult], metric: str,
                 direction: str, refresh: float = REFRESH_SECONDS):
        from IPython.display import display

        self.title, self.total, self.metric, self.direction = title, total, metric, direction
        self.refresh = refresh
        # copied: a search's earlier rows are the list its result grows
        self.rows: Dict[int, Row] = {result.index: Row.of(result) for result in earlier}
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self._closed = False
        self._drawn_at = time.monotonic()
        self.handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> Dict[str, str]:
        return render(self.title, self.total, list(self.rows.values()), self.metric,
                      self.direction)

    def _set(self, row: Row) -> None:
        with self._lock:
            self.rows.pop(row.index, None)  # last changed goes last (shown_rows)
            self.rows[row.index] = row
            wait = self._drawn_at + self.refresh - time.monotonic()
            if wait <= 0:
                self._draw()
            elif self._timer is None:
                # the kernel routes the timer's update by the caller's context (its cell)
                self._timer = threading.Timer(wait, contextvars.copy_context().run,
                                              (self._draw_later,))
                self._timer.daemon = True
                self._timer.start()

    def _draw(self) -> None:
        self._drawn_at = time.monotonic()
        self.handle.update(self._bundle(), raw=True)

    def _draw_later(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._draw()

    def started(self, job: Job) -> None:
        self._set(Row(job.index, job.name, RUNNING))

    def ended(self, result: JobResult) -> None:
        self._set(Row.of(result))

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._closed = True
            self._draw()


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel (JupyterLab, VS Code, papermill), not a
    terminal or a terminal IPython. IPython is only asked when something imported it."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None) is not None


def progress(title: str, total: int, earlier: List[JobResult], metric: str, direction: str,
             quiet: bool):
    """How a run of `total` jobs (`earlier` of them done before) shows its progress: a live
    table in a Jupyter kernel, a bar in a terminal, nothing when `quiet`."""
    if not quiet and in_kernel():
        return LiveTable(title, total, earlier, metric, direction)
    return TerminalProgress(title, total, earlier, quiet)
