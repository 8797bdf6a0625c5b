"""One self-contained HTML file comparing runs: the ranked table, the figures embedded as
PNG data and what differs between the best run and the runner-up, so it can be mailed or
attached to a ticket and opened without a server."""
import base64
import html
import io
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Optional, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from sweepbook.compare import plots as compare_plots
from sweepbook.compare import runs as compare
from sweepbook.compare.diff import diff
from sweepbook.compare.search import SEARCH_FIGURES, search_figures
from sweepbook.params import redact_uri
from sweepbook.tracking.record import FIGURES_FOLDER

CURVE_KEYS = ("val_loss", "val_acc", "val_rmse")  # per-epoch histories the training loop logs
BEST_RUN_FIGURES = {  # figures the example notebooks log, shown for the best run when present
    f"{FIGURES_FOLDER}/confusion_matrix.png": "confusion matrix on the test split",
    f"{FIGURES_FOLDER}/predicted_vs_true.png": "predicted against true on the test split",
}
STYLE = """body{font-family:sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}
img{max-width:100%;display:block;margin:1em 0}"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed (reports make many)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def comparison_figures(scope: compare.Scope, runs: pd.DataFrame, metric: str,
                       curve_keys: Sequence[str] = CURVE_KEYS) -> Dict[str, Figure]:
    """The figures compare.ipynb shows, by title."""
    params = compare.swept_params(runs)
    figures = {f"{metric} against each swept parameter":
               compare_plots.metric_vs_params(runs, metric, params)}
    keys = [key for key in curve_keys if key in compare.metric_names(runs)]
    if keys:
        histories = compare.metric_histories(scope, list(runs["run_id"]), keys)
        names = dict(zip(runs["run_id"], runs["run_name"]))
        figures["Learning curves"] = compare_plots.overlaid_curves(histories, names, keys)
    if params:
        figures["Parallel coordinates"] = compare_plots.parallel_coordinates(runs, params,
                                                                             metric)
    return figures


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def _image(png: bytes, title: str) -> str:
    return f'<img alt="{html.escape(title)}" src="{png_data_uri(png)}">'


def search_section(scope: compare.Scope) -> str:
    """The search's own figures (its trials as Optuna saw them), or nothing for a scope that
    is no search."""
    with tempfile.TemporaryDirectory() as folder:
        images = [f"<p>{html.escape(SEARCH_FIGURES[path.name])}</p>\n"
                  + _image(path.read_bytes(), SEARCH_FIGURES[path.name])
                  for path in search_figures(scope, folder)]
    return _section("The search", "\n".join(images)) if images else ""


def runner_up_section(scope: compare.Scope, runs: pd.DataFrame, metric: str,
                      direction: Optional[str]) -> str:
    """What differs between the best run and the next best (FINISHED runs with the metric),
    or nothing when there is no runner-up."""
    contenders = compare.finished_ranked(runs, metric, direction)
    if len(contenders) < 2:
        return ""
    best, runner_up = contenders["run_id"].iloc[:2]
    try:
        body = diff(best, runner_up, scope.tracking_uri).html()
    except compare.ComparisonError as error:  # a run sweepbook did not record
        body = f"<p>{html.escape(str(error))}</p>"
    return _section("Best run against the runner-up", body)


def summary(scope: compare.Scope, count: int, metric: str, direction: Optional[str]) -> str:
    """The report's first line: how many runs from which store (its password hidden: a report
    is mailed around), ranked how, written when."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    store = html.escape(redact_uri(scope.tracking_uri))
    return (f"<p>{count} runs in {store}, ranked by {metric} "
            f"({compare.direction_for(metric, direction)}); written {when}.</p>")


def render(scope: compare.Scope, runs: pd.DataFrame, metric: str,
           direction: Optional[str]) -> str:
    """The report's HTML text."""
    table = compare.summary_table(runs, metric, direction, extra_metrics=["test_loss"])
    best = compare.best_run(runs, metric, direction)
    title = f"sweepbook report: {scope.title}"
    parts = [f"<h1>{html.escape(title)}</h1>", summary(scope, len(runs), metric, direction),
             _section("Best run", f"<p><b>{html.escape(str(best['run_name']))}</b> "
                      f"(run {best['run_id']}): {metric} = {best[f'metrics.{metric}']:.4f}</p>"),
             _section("Runs", table.to_html(float_format=lambda v: f"{v:.4g}")),
             search_section(scope)]
    for figure_title, figure in comparison_figures(scope, runs, metric).items():
        parts.append(_section(figure_title, _image(figure_png(figure), figure_title)))
    for path, caption in BEST_RUN_FIGURES.items():
        png = compare.read_artifact(scope, best["run_id"], path)
        if png:
            parts.append(_section(f"Best run: {caption}", _image(png, caption)))
    parts.append(runner_up_section(scope, runs, metric, direction))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(scope: compare.Scope, metric: str, direction: Optional[str],
                 path: Path) -> Path:
    """Write the report of `scope`'s runs to `path` (folders created)."""
    runs = compare.load_runs(scope)
    text = render(scope, runs, metric, direction)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
