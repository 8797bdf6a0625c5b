"""Imported once by the sweep's fork server (multiprocessing's preload), never by jobs.

Every job is forked from that server, so it starts with torch, MLflow, Hydra, papermill and
IPython imported and their first-use costs already paid: the first training step (allocator,
thread pool), the first store query (engine, schema check), the first rendered figure (fonts).
Without this each forked job paid several seconds. The store query waits for the driver to
have created the store (workers.StoreHandoff).
"""
import io
import os
import sys
import tempfile

from sweepbook.workers import STORE_LOCK_ENV, handed_over_store

# Opened before the slow imports: the driver deletes the file when its sweep ends.
_store_lock = open(os.environ[STORE_LOCK_ENV]) if os.environ.get(STORE_LOCK_ENV) else None
# jsonschema (through papermill's nbformat) imports rfc3987_syntax when present: 1.8 s spent
# compiling a grammar for IRI formats that notebook validation never uses.
sys.modules.setdefault("rfc3987_syntax", None)

import matplotlib_inline.backend_inline  # noqa: F401  (the notebooks' %matplotlib inline)
import mlflow.pytorch  # noqa: F401  (log_model)
import torch
from mlflow.tracking import MlflowClient

from sweepbook import config, data, engine, models, plots, tracking, training  # noqa: F401


def warm_up() -> None:
    # One thread here: libgomp's thread pool does not survive fork, and a job whose parent
    # had started one hangs at its first parallel op. Each job sets its own thread count.
    torch.set_num_threads(1)
    config.compose()
    model = models.CNN(1, 10)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    data.load_digits(0.1, 0.1, seed=0)
    figure = plots.confusion_matrix([0, 1], [0, 1], ["0", "1"])
    figure.savefig(io.BytesIO(), format="png")
    plots.plt.close(figure)
    with tempfile.TemporaryDirectory() as folder, tracking.quiet_logger("mlflow.pytorch"):
        example = torch.rand(2, 1, 8, 8).numpy()  # log_model's first call costs over 1 s
        mlflow.pytorch.save_model(model, f"{folder}/model", input_example=example,
                                  serialization_format="pickle",
                                  pip_requirements=tracking.model_requirements())
    engine.NotebookShell.create()
    tracking_uri = handed_over_store(_store_lock) if _store_lock else ""
    if tracking_uri:
        MlflowClient(tracking_uri).search_experiments(max_results=1)


warm_up()
