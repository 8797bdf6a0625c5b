"""Comparison figures drawn from a small runs frame: what is on the axes."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sweepbook.compare import plots as compare_plots


def runs_frame():
    return pd.DataFrame({
        "run_id": ["a", "b", "c", "d"],
        "run_name": ["cnn-small", "cnn-big", "mlp-small", "failed"],
        "params.model.name": ["cnn", "cnn", "mlp", "mlp"],
        "params.optimizer.lr": ["0.0001", "0.1", "0.001", "1"],
        "metrics.test_acc": [0.9, 0.5, 0.8, np.nan],
    })


def test_encode_keeps_numbers_and_codes_categories():
    numbers, labels = compare_plots.encode(pd.Series(["0.1", "1e-3"]))
    assert labels is None and list(numbers) == [0.1, 0.001]
    codes, labels = compare_plots.encode(pd.Series(["mlp", "cnn", "mlp"]))
    assert labels == ["cnn", "mlp"] and list(codes) == [1, 0, 1]


def test_metric_vs_params_has_a_panel_per_param_and_skips_runs_without_it():
    figure = compare_plots.metric_vs_params(runs_frame(), "test_acc",
                                            ["params.model.name", "params.optimizer.lr"])
    names, rates = figure.axes
    assert [t.get_text() for t in names.get_xticklabels()] == ["cnn", "mlp"]
    assert rates.get_xscale() == "log"  # 1e-4 .. 0.1 spans three decades
    assert list(rates.collections[0].get_offsets()[:, 1]) == [0.9, 0.5, 0.8]


def test_overlaid_curves_draw_a_labelled_line_per_run():
    histories = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "key": ["val_acc"] * 4,
                              "step": [0, 1, 0, 1], "value": [0.5, 0.9, 0.4, 0.5]})
    figure = compare_plots.overlaid_curves(histories, {"a": "cnn-small", "b": "cnn-big"},
                                           ["val_acc"])
    lines = figure.axes[0].lines
    assert [line.get_label() for line in lines] == ["cnn-small", "cnn-big"]
    assert list(lines[0].get_ydata()) == [0.5, 0.9]


def test_parallel_coordinates_scale_each_axis_and_colour_by_the_metric():
    figure = compare_plots.parallel_coordinates(
        runs_frame(), ["params.model.name", "params.optimizer.lr"], "test_acc")
    axes = figure.axes[0]
    lines = axes.lines[3:]  # after the three vertical axes: one line per run with the metric
    assert len(lines) == 3
    best = lines[0]  # cnn, lr 1e-4, acc 0.9: bottom, bottom (log scale), top
    assert list(best.get_ydata()) == [0.0, 0.0, 1.0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["model.name", "optimizer.lr",
                                                              "test_acc"]
    viridis = plt.get_cmap("viridis")
    assert tuple(best.get_color()) == viridis(1.0)  # the best score
    assert tuple(lines[1].get_color()) == viridis(0.0)  # the worst


def test_a_param_only_some_runs_have_is_shown_unset():
    from sweepbook.compare.plots import encode

    numbers, labels = encode(pd.Series(["16", None, "32", float("nan")]))
    assert labels == ["16", "32", "unset"] and numbers.tolist() == [0, 2, 1, 2]
