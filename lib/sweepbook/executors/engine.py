"""A papermill engine that runs cells in an IPython shell inside the current process.

Sweeps fork each job from a warm template process (see local.py); a Jupyter kernel would
pay its start-up and the heavy imports again for every job. Select it with
`engine_name="sweepbook"` (or `papermill --engine sweepbook`); outputs, errors and papermill's
metadata land in the executed notebook as with the kernel engine.
"""
import traceback
from functools import lru_cache
from typing import Dict

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbformat.v4 import new_output
from traitlets.config import Config

ENGINE_NAME = "sweepbook"


def _outputs(captured, error):
    outputs = []
    for name in ("stdout", "stderr"):
        text = getattr(captured, name)
        if text:
            outputs.append(new_output("stream", name=name, text=text))
    for display in captured.outputs:
        outputs.append(new_output("display_data", data=display.data, metadata=display.metadata))
    if error is not None:
        outputs.append(new_output(
            "error", ename=type(error).__name__, evalue=str(error),
            traceback=traceback.format_exception(type(error), error, error.__traceback__),
        ))
    return outputs


def run_cell(shell: InteractiveShell, cell, echo: Dict = None) -> bool:
    """Execute one code cell, store its outputs; True when it raised. What it printed is also
    written to `echo`'s files ({'stdout': file, 'stderr': file}), as papermill's
    stdout_file/stderr_file options do for a kernel."""
    with capture_output() as captured:
        result = shell.run_cell(cell.source, store_history=True)
    error = result.error_before_exec or result.error_in_exec
    cell.outputs = _outputs(captured, error)
    cell.execution_count = result.execution_count
    for name, file in (echo or {}).items():
        if file is not None and getattr(captured, name):
            file.write(getattr(captured, name))
            file.flush()
    return error is not None


class NotebookShell(InteractiveShell):
    """A shell without a terminal: inline figures need no GUI event loop, and no history file
    (forked jobs would share one SQLite connection to it)."""

    @classmethod
    def create(cls) -> "NotebookShell":
        config = Config()
        config.HistoryManager.enabled = False
        return cls.instance(config=config)

    def enable_gui(self, gui=None):
        pass

    def _showtraceback(self, etype, evalue, stb):
        pass  # errors become the cell's error output instead


def execute_managed_notebook(nb_man, stdout_file=None, stderr_file=None) -> None:
    """Run the notebook's code cells one by one; stop at the first error, like nbclient."""
    shell = NotebookShell.create()
    echo = {"stdout": stdout_file, "stderr": stderr_file}
    for index, cell in enumerate(nb_man.nb.cells):
        nb_man.cell_start(cell, index)
        failed = cell.cell_type == "code" and run_cell(shell, cell, echo)
        if failed:
            nb_man.cell_exception(cell, index)
        nb_man.cell_complete(cell, index)
        if failed:
            return


@lru_cache(maxsize=None)
def engine_class():
    """The papermill Engine, made on first use: importing papermill loads its entry points,
    this module among them, so this module must not import papermill while it loads."""
    from papermill.engines import Engine

    class InProcessEngine(Engine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, stdout_file=None,
                                     stderr_file=None, **kwargs):
            execute_managed_notebook(nb_man, stdout_file, stderr_file)

    return InProcessEngine


def __getattr__(name):  # the entry point `sweepbook.executors.engine:InProcessEngine`
    if name == "InProcessEngine":
        return engine_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    from papermill.engines import papermill_engines

    papermill_engines.register(ENGINE_NAME, engine_class())
