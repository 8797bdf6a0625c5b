"""Two runs side by side, to explain why their results differ: the params that differ, their
metrics, where each came from (commit, dirty tree, notebook and data digests), their notebooks'
code cells and the package versions that differ. `sweepbook diff A B`, `compare.diff(a, b)` in
a notebook, and the report's best run against its runner-up.

The code cells are read from each run's executed notebook (logged at its run's root) and
compared as text with difflib. nbdime is not used: what it adds is diffing outputs and
metadata (they differ between any two runs) and a web view (neither a terminal nor a report can
show one); on code cells alone it gives the same unified diff. Papermill's injected-parameters
cell is left out: the overrides, under source, say what it held.
"""
import difflib
import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sweepbook.compare.runs import PROGRESS_BAR_ENV, ComparisonError
from sweepbook.env import patched_environ
from sweepbook.notebook import code_sources
from sweepbook.params import redact_uri
from sweepbook.tracking import record
from sweepbook.tracking.location import sqlite_file

CELL_MARK = "# %%"  # between code cells, as in jupytext's percent format
SOURCE_TAGS = {  # shown as: tag
    "notebook": record.SOURCE_NAME_TAG,
    "config": record.CONFIG_NAME_TAG,
    "overrides": record.OVERRIDES_TAG,
    "commit": record.GIT_COMMIT_TAG,
    "dirty": record.GIT_DIRTY_TAG,
    "notebook sha256": record.NOTEBOOK_HASH_TAG,
    "data digest": record.DATA_DIGEST_TAG,
}
DIGESTS = ("commit", "notebook sha256", "data digest")  # shown shortened
SHORT = 12
VERSION_PREFIX = record.VERSION_TAG.format("")
MISSING = "-"
COLOURS = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}  # added, removed, hunk lines


class Side(NamedTuple):
    run_id: str
    name: str
    status: str


class Change(NamedTuple):
    key: str
    a: Optional[str]  # None: run A has no such key
    b: Optional[str]


class MetricChange(NamedTuple):
    key: str
    a: Optional[float]  # latest value; None: run A did not log it
    b: Optional[float]
    delta: Optional[float]  # b - a, where both logged it


@dataclass
class RunDiff:
    """What differs between runs A and B. `text()` for a terminal, `html()` for a report;
    a notebook shows the HTML."""
    a: Side
    b: Side
    params: List[Change]  # only the params that differ
    metrics: List[MetricChange]  # every metric either run logged
    source: List[Change]  # every source field, equal or not
    code: List[str]  # unified diff of the code cells: empty when they are the same or unknown
    code_note: str  # how the code cells compare, in words
    versions: List[Change]  # only the package versions that differ

    def text(self) -> str:
        lines = [*_columns([["run A", *self.a], ["run B", *self.b]], indent="")]
        lines += _text_section("params that differ", ["param", "A", "B"],
                               [_shown(c) for c in self.params])
        lines += _text_section("metrics (latest values)", ["metric", "A", "B", "B - A"],
                               [_metric_row(m) for m in self.metrics])
        lines += _text_section("source", ["", "A", "B", ""], _source_rows(self.source))
        lines += ["", f"code cells: {self.code_note}", *self.code]
        lines += _text_section("package versions that differ", ["package", "A", "B"],
                               [_shown(c) for c in self.versions])
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        runs = "<br>".join(f"{label}: <b>{html.escape(side.name)}</b> (run {side.run_id}, "
                           f"{side.status})" for label, side in (("A", self.a), ("B", self.b)))
        parts = [f"<p>{runs}</p>",
                 _html_section("Params that differ", ["param", "A", "B"],
                               [_shown(c) for c in self.params]),
                 _html_section("Metrics (latest values)", ["metric", "A", "B", "B - A"],
                               [_metric_row(m) for m in self.metrics]),
                 _html_section("Source", ["", "A", "B", ""], _source_rows(self.source)),
                 f"<h3>Code cells</h3>\n<p>{html.escape(self.code_note)}</p>",
                 _code_html(self.code),
                 _html_section("Package versions that differ", ["package", "A", "B"],
                               [_shown(c) for c in self.versions])]
        return "<div>\n" + "\n".join(part for part in parts if part) + "\n</div>"

    def _repr_html_(self) -> str:
        return self.html()

    def __str__(self) -> str:
        return self.text()


def diff(a, b, tracking_uri: Optional[str] = None) -> RunDiff:
    """Runs `a` and `b` (run ids, or rows of load_runs) of the store `tracking_uri` (default:
    the config's store; $MLFLOW_TRACKING_URI wins) side by side. Both must be runs sweepbook
    recorded (start_run tags them with their primary config)."""
    if tracking_uri is None:
        from sweepbook.config import default_store_uri

        tracking_uri = default_store_uri()
    run_ids = [run if isinstance(run, str) else str(run["run_id"]) for run in (a, b)]
    database = sqlite_file(tracking_uri)
    if database and not database.is_file():  # MLflow would create it just to look
        raise ComparisonError(f"no run {run_ids[0]!r} in {redact_uri(tracking_uri)}: there is "
                              f"no store at {database}")
    client = MlflowClient(tracking_uri)
    first, second = (_recorded_run(client, run_id) for run_id in run_ids)
    code, note = _code_diff(client, first, second)
    return RunDiff(a=_side(first), b=_side(second),
                   params=_differing(first.data.params, second.data.params),
                   metrics=_metrics(first.data.metrics, second.data.metrics),
                   source=[Change(name, first.data.tags.get(tag), second.data.tags.get(tag))
                           for name, tag in SOURCE_TAGS.items()],
                   code=code, code_note=note,
                   versions=_differing(_versions(first.data.tags), _versions(second.data.tags)))


def _recorded_run(client: MlflowClient, run_id: str):
    """The run, refused with the reason when it is not one that sweepbook recorded."""
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ComparisonError(f"no run {run_id!r} in {redact_uri(client.tracking_uri)}; "
                              f"`sweepbook runs` lists the runs and their ids") from None
    tags = run.data.tags
    if tags.get(record.ROLE_TAG) == record.PARENT_ROLE:
        sweep = tags.get(record.SWEEP_TAG)
        raise ComparisonError(f"run {run_id} is the parent run of sweep {sweep}: it trained "
                              f"nothing; diff two of its runs (sweepbook runs --sweep {sweep})")
    if record.CONFIG_NAME_TAG not in tags:
        raise ComparisonError(f"run {run_id} was not made by sweepbook (it has no "
                              f"{record.CONFIG_NAME_TAG} tag): diff compares runs that "
                              f"sweepbook run, sweep, tune or a notebook's start_run recorded")
    return run


def _side(run) -> Side:
    return Side(run.info.run_id, run.info.run_name or "", run.info.status)


def _differing(a: dict, b: dict) -> List[Change]:
    return [Change(key, a.get(key), b.get(key)) for key in sorted({*a, *b})
            if a.get(key) != b.get(key)]


def _metrics(a: dict, b: dict) -> List[MetricChange]:
    return [MetricChange(key, a.get(key), b.get(key),
                         b[key] - a[key] if key in a and key in b else None)
            for key in sorted({*a, *b})]


def _versions(tags: dict) -> dict:
    return {key[len(VERSION_PREFIX):]: value for key, value in tags.items()
            if key.startswith(VERSION_PREFIX)}


def _code_diff(client: MlflowClient, a, b) -> Tuple[List[str], str]:
    """The unified diff of the runs' code cells, and how they compare in words."""
    notebooks = []
    for run in (a, b):
        found = _executed_notebook(client, run.info.run_id)
        if found is None:
            return [], (f"run {run.info.run_id} logged no executed notebook, so they cannot be "
                        f"compared (sweepbook run, sweep and tune log it)")
        notebooks.append(found)
    (name_a, cells_a), (name_b, cells_b) = notebooks
    lines = list(difflib.unified_diff(
        _code_lines(cells_a), _code_lines(cells_b), lineterm="",
        fromfile=f"A {name_a} (run {a.info.run_id[:8]})",
        tofile=f"B {name_b} (run {b.info.run_id[:8]})"))
    if not lines:
        return [], "the same in both executed notebooks"
    return lines, ("they differ (a unified diff of the executed notebooks' code cells, "
                   "papermill's injected parameters left out)")


def _executed_notebook(client: MlflowClient, run_id: str) -> Optional[Tuple[str, List[str]]]:
    """The name of the executed notebook logged at the run's root and its code cells'
    sources, papermill's injected cell left out; None when it logged none."""
    names = sorted(artifact.path for artifact in client.list_artifacts(run_id)
                   if not artifact.is_dir and artifact.path.endswith(".ipynb"))
    if not names:
        return None
    # MLflow draws a progress bar on stderr even for one small file
    with tempfile.TemporaryDirectory() as work, patched_environ({PROGRESS_BAR_ENV: "false"}):
        notebook = json.loads(Path(client.download_artifacts(run_id, names[0], work))
                              .read_text(encoding="utf-8"))
    return names[0], code_sources(notebook)


def _code_lines(cells: Sequence[str]) -> List[str]:
    lines = []
    for source in cells:
        lines += [CELL_MARK, *source.splitlines()]
    return lines


# --- how a diff is shown ---

def _value(value: Optional[str], key: str = "") -> str:
    if value is None:
        return MISSING
    return value[:SHORT] if key in DIGESTS else value


def _shown(change: Change) -> List[str]:
    return [change.key, _value(change.a), _value(change.b)]


def _number(value: Optional[float], sign: str = "") -> str:
    return MISSING if value is None else f"{value:{sign}.6g}"


def _metric_row(metric: MetricChange) -> List[str]:
    return [metric.key, _number(metric.a), _number(metric.b), _number(metric.delta, "+")]


def _source_rows(source: Sequence[Change]) -> List[List[str]]:
    return [[c.key, _value(c.a, c.key), _value(c.b, c.key), "differs" if c.a != c.b else ""]
            for c in source]


def _columns(rows: Sequence[Sequence[str]], indent: str = "  ") -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths))).rstrip()
            for row in rows]


def _text_section(title: str, header: List[str], rows: List[List[str]]) -> List[str]:
    return ["", f"{title}:", *(_columns([header, *rows]) if rows else ["  none"])]


def _html_section(title: str, header: List[str], rows: List[List[str]]) -> str:
    heading = f"<h3>{html.escape(title)}</h3>"
    if not rows:
        return f"{heading}\n<p>none</p>"
    body = "\n".join(f"<tr>{_cells(row, 'td')}</tr>" for row in rows)
    return f"{heading}\n<table>\n<tr>{_cells(header, 'th')}</tr>\n{body}\n</table>"


def _cells(row: Sequence[str], tag: str) -> str:
    return "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)


def _code_html(lines: List[str]) -> str:
    if not lines:
        return ""
    shown = []
    for line in lines:
        colour = None if line.startswith(("+++", "---")) else COLOURS.get(line[:1])
        text = html.escape(line)
        shown.append(f'<span style="background:{colour}">{text}</span>' if colour else text)
    return ('<pre style="border:1px solid #ccc;padding:0.5em;overflow-x:auto">'
            + "\n".join(shown) + "</pre>")
