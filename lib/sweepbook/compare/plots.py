"""Figures comparing runs (compare.ipynb, `sweepbook report`): matplotlib only, no torch, so
they render anywhere and embed in a static HTML file."""
from typing import List, Mapping, Optional, Sequence, Tuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

UNSET = "unset"  # a param some runs lack (a key only one model option has)
LOG_SPAN = 20  # numeric params spanning more than this factor get a log axis


def _short(column: str) -> str:
    return column.split(".", 1)[1] if column.startswith(("params.", "metrics.")) else column


def encode(values: pd.Series) -> Tuple[np.ndarray, Optional[List[str]]]:
    """Numbers as they are; anything else as category codes, with the categories."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(float), None
    texts = values.map(lambda value: UNSET if pd.isna(value) else str(value))
    labels = sorted(texts.unique())
    return texts.map(labels.index).to_numpy(float), labels


def _is_log(numbers: np.ndarray) -> bool:
    return bool((numbers > 0).all() and numbers.max() / numbers.min() > LOG_SPAN)


def _with_metric(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    return runs[runs[f"metrics.{metric}"].notna()]


def metric_vs_params(runs: pd.DataFrame, metric: str, params: Sequence[str]) -> Figure:
    """One panel per swept param: the metric of every run against that param's value."""
    runs = _with_metric(runs, metric)
    columns = list(params) or ["run_name"]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 3.2), squeeze=False)
    for ax, column in zip(axes[0], columns):
        x, labels = encode(runs[column])
        ax.scatter(x, runs[f"metrics.{metric}"], alpha=0.8)
        if labels:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        elif _is_log(x):
            ax.set_xscale("log")
        ax.set(xlabel=_short(column), ylabel=metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{metric} against each swept parameter")
    fig.tight_layout()
    return fig


def overlaid_curves(histories: pd.DataFrame, names: Mapping[str, str],
                    keys: Sequence[str]) -> Figure:
    """One panel per metric key, one line per run (labelled with `names[run_id]`)."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run_id, curve in histories[histories["key"] == key].groupby("run_id", sort=False):
            ax.plot(curve["step"], curve["value"], label=names.get(run_id, run_id[:8]))
        ax.set(xlabel="step", ylabel=key, title=key)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Learning curves of all runs")
    fig.tight_layout()
    return fig


def _scaled(numbers: np.ndarray, log: bool) -> np.ndarray:
    values = np.log10(numbers) if log else numbers
    span = values.max() - values.min()
    return (values - values.min()) / span if span else np.full_like(values, 0.5)


def _axis_labels(numbers: np.ndarray, labels: Optional[List[str]]) -> List[Tuple[float, str]]:
    """(height 0..1, text) of the ticks drawn along one vertical axis."""
    if labels:
        positions = _scaled(np.arange(len(labels), dtype=float), False)
        return list(zip(positions, labels))
    low, high = numbers.min(), numbers.max()
    return [(0.0, f"{low:.4g}"), (1.0, f"{high:.4g}")] if high != low else [(0.5, f"{low:.4g}")]


def parallel_coordinates(runs: pd.DataFrame, params: Sequence[str], metric: str) -> Figure:
    """A vertical axis per swept param and one for the metric; a line per run, coloured by
    the metric, so the combinations that score well stand out together."""
    runs = _with_metric(runs, metric)
    columns = [*params, f"metrics.{metric}"]
    score = runs[f"metrics.{metric}"].to_numpy(float)
    colours = plt.get_cmap("viridis")(_scaled(score, False))
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 * len(columns)), 4))
    heights = []
    for position, column in enumerate(columns):
        numbers, labels = encode(runs[column])
        log = labels is None and _is_log(numbers)
        heights.append(_scaled(numbers, log))
        ax.axvline(position, color="grey", lw=1)
        for height, text in _axis_labels(numbers, labels):
            ax.text(position + 0.03, height, text, fontsize=8, va="center")
    for row, colour in enumerate(colours):
        ax.plot(range(len(columns)), [h[row] for h in heights], color=colour, alpha=0.8)
    ax.set_xticks(range(len(columns)), [_short(c) for c in columns])
    ax.set(yticks=[], xlim=(-0.2, len(columns) - 0.6), ylim=(-0.05, 1.05),
           title=f"Parameters against {metric} (colour: {metric})")
    fig.colorbar(plt.cm.ScalarMappable(plt.Normalize(score.min(), score.max()), "viridis"),
                 ax=ax, label=metric)
    fig.tight_layout()
    return fig
