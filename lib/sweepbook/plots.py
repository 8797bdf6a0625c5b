"""Figures of a training run; each returns a matplotlib Figure to show inline and log."""
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from sweepbook.data import Split
from sweepbook.training import History


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def learning_curves(history: History) -> Figure:
    """Training loss per step (raw and smoothed), validation loss and score per epoch."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.5))
    steps_per_epoch = len(history.train_loss) / max(1, len(history.val_loss))
    steps = np.arange(len(history.train_loss)) / steps_per_epoch
    smooth = _smooth(history.train_loss, round(steps_per_epoch))
    loss_ax.plot(steps, history.train_loss, alpha=0.3, label="train (step)")
    loss_ax.plot(steps[len(steps) - len(smooth):], smooth, label="train (smoothed)")
    epochs = np.arange(1, len(history.val_loss) + 1)
    loss_ax.plot(epochs, history.val_loss, "o-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    loss_ax.legend()
    acc_ax.plot(epochs, history.val_score, "o-", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel=history.score_name,
               title=f"Validation {history.score_name}")
    fig.tight_layout()
    return fig


def confusion_matrix(truth, predicted, classes: Sequence[str]) -> Figure:
    """Counts of true class (rows) against predicted class (columns)."""
    n = len(classes)
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (np.asarray(truth), np.asarray(predicted)), 1)
    fig, ax = plt.subplots(figsize=(0.5 * n + 2.5, 0.5 * n + 2))
    ax.imshow(counts, cmap="Blues")
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, count, ha="center", va="center",
                    color="white" if count > counts.max() / 2 else "black", fontsize=8)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true",
           title=f"Confusion matrix (accuracy {np.trace(counts) / counts.sum():.3f})")
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    fig.tight_layout()
    return fig


def sample_predictions(split: Split, predicted, classes: Sequence[str], n: int = 24) -> Figure:
    """A mosaic of images labelled 'prediction (truth)', wrong ones in red.

    One Axes for the whole mosaic: a grid of 24 Axes took most of a job's plotting time.
    """
    n = min(n, len(split))
    cols = min(8, n)
    rows = -(-n // cols)
    height, width = split.x.shape[-2:]
    label_rows = max(3, height // 3)  # blank pixels above each image for its label
    cell_height, cell_width = height + label_rows, width + 1
    mosaic = np.zeros((rows * cell_height, cols * cell_width))
    fig, ax = plt.subplots(figsize=(1.3 * cols, 1.5 * rows))
    for i in range(n):
        row, col = divmod(i, cols)
        top, left = row * cell_height + label_rows, col * cell_width
        mosaic[top:top + height, left:left + width] = split.x[i, 0].numpy()
        truth, guess = int(split.y[i]), int(predicted[i])
        ax.text(left + width / 2, top - 0.6, f"{classes[guess]} ({classes[truth]})",
                ha="center", va="bottom", fontsize=8,
                color="black" if guess == truth else "red")
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title("Sample predictions: predicted (true)")
    fig.tight_layout()
    return fig


def predicted_vs_true(truth, predicted) -> Figure:
    """A regressor's predictions against the true values, with the diagonal of perfection."""
    truth, predicted = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    low, high = min(truth.min(), predicted.min()), max(truth.max(), predicted.max())
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(truth, predicted, alpha=0.6, s=14)
    ax.plot([low, high], [low, high], color="grey", lw=1)
    ax.set(xlabel="true", ylabel="predicted", title=f"Predicted against true (RMSE {rmse:.2f})")
    fig.tight_layout()
    return fig
