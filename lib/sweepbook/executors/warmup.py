"""Warming up the fork engine's template process (template.py calls `warm_up` there).

Every job is forked from that process, so it starts with torch, MLflow, Hydra, papermill and
IPython imported and their first-use costs already paid: the first training step (allocator,
thread pool), the first store query (engine, schema check), the first rendered figure (fonts),
the first `_target_` check. Without this each forked job paid several seconds. The store
query waits for the driver to have created the store (local.StoreHandoff).
"""
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from sweepbook.executors.local import (STORE_LOCK_ENV, TEMPLATE_FILES_ENV, WARMUP_CONFIG_ENV,
                                       handed_over_store)


def import_everything() -> None:
    # jsonschema (through papermill's nbformat) imports rfc3987_syntax when present: 1.8 s spent
    # compiling a grammar for IRI formats that notebook validation never uses.
    sys.modules.setdefault("rfc3987_syntax", None)
    import matplotlib_inline.backend_inline  # noqa: F401  (the notebooks' %matplotlib inline)
    import mlflow.pytorch  # noqa: F401  (log_model)
    import papermill  # noqa: F401

    from sweepbook import data, models, plots, targets, training  # noqa: F401
    from sweepbook.executors import engine, job  # noqa: F401
    from sweepbook.tracking import run  # noqa: F401


def pay_first_use_costs() -> None:
    import mlflow.pytorch
    import torch

    from sweepbook import data, models, plots
    from sweepbook.executors import engine
    from sweepbook.tracking.run import model_requirements, quiet_logger

    # One thread here: libgomp's thread pool does not survive fork, and a job whose parent
    # had started one hangs at its first parallel op. Each job sets its own thread count.
    torch.set_num_threads(1)
    model = models.CNN((1, 8, 8), 10)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 8, 8)).sum().backward()
    optimizer.step()
    data.load_digits(seed=0)
    figure = plots.confusion_matrix([0, 1], [0, 1], ["0", "1"])
    figure.savefig(io.BytesIO(), format="png")
    plots.plt.close(figure)
    with tempfile.TemporaryDirectory() as folder, quiet_logger("mlflow.pytorch"):
        example = torch.rand(2, 1, 8, 8).numpy()  # log_model's first call costs over 1 s
        mlflow.pytorch.save_model(model, f"{folder}/model", input_example=example,
                                  serialization_format="pickle",
                                  pip_requirements=model_requirements())
    engine.NotebookShell.create()
    _render_a_notebook()


def _render_a_notebook() -> None:
    """Each job logs its executed notebook as HTML too: nbconvert's import, its templates and
    the highlighter cost about 0.5 s the first time, 60 ms after."""
    from nbformat import v4

    from sweepbook.executors import job

    language = {"name": "python", "pygments_lexer": "ipython3"}
    job.notebook_html(v4.new_notebook(metadata={"language_info": language}, cells=[
        v4.new_markdown_cell("# warm-up"),
        v4.new_code_cell("print(1)", outputs=[v4.new_output("stream", text="1\n")])]))


def _compose_the_sweeps_config() -> None:
    """The sweep's first job composed once, as its notebook will: Hydra's first compose and the
    imports of the notebook's own targets are paid here, not in every job."""
    from sweepbook.config import ConfigError
    from sweepbook.notebook import Notebook, inspect

    job = json.loads(os.environ.get(WARMUP_CONFIG_ENV) or "null")
    if job is None:
        return
    try:
        notebook = Notebook(Path(job["notebook"]), job["config_name"]) if job["config_name"] \
            else inspect(job["notebook"])  # started before the driver read the notebook
        notebook.compose(job["overrides"])
    except ConfigError:  # the driver validates it; if not here, the job itself says why
        pass  # (a warm-up must never stop the template every job forks from)


def warm_up() -> None:
    """Import and exercise what jobs use, then wait for the store and query it once."""
    # Opened before the slow imports: the driver deletes the file when its sweep ends (or has
    # already, when bad input stopped it first: then there is no store to wait for).
    started = time.time_ns()
    try:
        lock = open(os.environ[STORE_LOCK_ENV]) if os.environ.get(STORE_LOCK_ENV) else None
    except FileNotFoundError:
        lock = None
    import_everything()
    pay_first_use_costs()
    _compose_the_sweeps_config()
    if os.environ.get(TEMPLATE_FILES_ENV):
        _write_code_files(Path(os.environ[TEMPLATE_FILES_ENV]), started)
    tracking_uri = handed_over_store(lock) if lock else ""
    if tracking_uri:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).search_experiments(max_results=1)


def _write_code_files(path: Path, started: int) -> None:
    """Every file of code run here (imported modules, the project's conf/resolvers.py) with
    its mtime: a later sweep of the same process forks its jobs from here only while none
    changed (local.Template.serves). A file changed since this process `started` may have
    been read before or after its change: it is marked changed already (mtime -1)."""
    from sweepbook.config import _LOADED_RESOLVERS

    modules = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    files = {}
    for file in [*filter(None, modules), *_LOADED_RESOLVERS]:
        try:
            mtime = os.stat(file).st_mtime_ns
        except OSError:  # a module from a zip, a frozen one
            continue
        files[file] = mtime if mtime < started else -1
    path.write_text(json.dumps(files))
