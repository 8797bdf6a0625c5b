"""Imported once by the sweep's fork server (multiprocessing's preload), never by jobs.

Every job is forked from that server, so it starts with torch, MLflow, Hydra, papermill and
IPython imported and their first-use costs already paid: the first training step (allocator,
thread pool), the first store query (engine, schema check), the first rendered figure (fonts).
Without this each forked job paid about 2 s.
"""
import io
import os

import matplotlib_inline.backend_inline  # noqa: F401  (the notebooks' %matplotlib inline)
import mlflow.pytorch  # noqa: F401  (log_model)
import torch
from mlflow.tracking import MlflowClient

from sweepbook import config, data, engine, models, plots, tracking, training  # noqa: F401


def warm_up() -> None:
    config.compose()
    model = models.CNN(1, 10)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    data.load_digits(0.1, 0.1, seed=0)
    figure = plots.confusion_matrix([0, 1], [0, 1], ["0", "1"])
    figure.savefig(io.BytesIO(), format="png")
    plots.plt.close(figure)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments(max_results=1)
    engine.NotebookShell.create()


warm_up()
