"""What sweepbook needs from a notebook: a tagged `parameters` cell that names its primary
config and takes the parameters jobs pass. Read with papermill's inspect_notebook, so a
notebook is refused before anything runs, never half-way through a sweep.

    config_name = "train"   # conf/train.yaml
    overrides = []          # Hydra overrides
    parent_run_id = None    # set by sweeps: the run becomes a child of that run
    tags = {}               # set by sweeps and `sweepbook run`: tags of the run
"""
import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import DictConfig

from sweepbook.config import (ConfigError, compose, config_names, importable_from,
                              overrides_from_env)

PARAMETERS = ("config_name", "overrides", "parent_run_id", "tags")
INJECTED_TAG = "injected-parameters"  # papermill's cell of parameters in an executed copy


class NotebookError(ConfigError):
    """A notebook sweepbook cannot run: missing, or its parameters cell is not there."""


@dataclass(frozen=True)
class Notebook:
    path: Path  # absolute
    config_name: str  # its primary config, conf/<config_name>.yaml

    def compose(self, overrides: Sequence[str], check_targets: bool = True) -> DictConfig:
        """The config a job of this notebook composes: its primary config with the overrides
        and $SWEEPBOOK_OVERRIDES, its folder importable as it is in the notebook's kernel."""
        with importable_from(self.path.parent):
            return compose(list(overrides) + overrides_from_env(), self.config_name,
                           check_targets)


def _default(parameter: dict, path: Path) -> str:
    try:
        value = ast.literal_eval(parameter["default"])
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, str) or not value:
        raise NotebookError(f"{path}: config_name = {parameter['default']} must be a string "
                            f"naming a primary config, one of: {', '.join(config_names())}")
    return value


def _check_format(path: Path) -> None:
    """A file that is not a valid notebook (not JSON, not nbformat) is refused here: papermill
    would fail on it in every job, or raise whatever its reader hits first."""
    import nbformat

    try:
        nbformat.validate(nbformat.read(str(path), as_version=nbformat.NO_CONVERT))
    except (OSError, ValueError, AttributeError, KeyError, TypeError,
            nbformat.ValidationError) as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else \
            type(error).__name__
        raise NotebookError(f"{path} is not a valid Jupyter notebook ({reason}); give an "
                            f".ipynb file saved by Jupyter") from None


def inspect(path) -> Notebook:
    """The notebook at `path` and its primary config, once its parameters cell checks out."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise NotebookError(f"notebook {str(path)!r} not found")
    _check_format(path)
    from papermill.inspection import inspect_notebook

    try:
        parameters = inspect_notebook(str(path))
    except ValueError as error:  # no kernelspec: papermill cannot tell the language
        raise NotebookError(f"{path} cannot be read as a notebook to run: {error}") from None
    if not parameters:
        raise NotebookError(f"{path} has no cell tagged `parameters`: tag the cell that sets "
                            f"{', '.join(PARAMETERS)} (JupyterLab: Property Inspector > Cell Tags)")
    missing = [name for name in PARAMETERS if name not in parameters]
    if missing:
        raise NotebookError(f"{path}: its parameters cell does not set {', '.join(missing)}; "
                            f"it needs {', '.join(PARAMETERS)} (see the README, 'Bring your "
                            f"own notebook')")
    return Notebook(path, _default(parameters["config_name"], path))


def code_sources(notebook: dict) -> List[str]:
    """The sources of a notebook's (its JSON's) code cells, in order: what it runs, whatever
    its outputs and metadata. papermill's injected-parameters cell is left out, so an executed
    copy reads as its source does."""
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
            and INJECTED_TAG not in cell.get("metadata", {}).get("tags", ())]


def code_hash(path) -> Optional[str]:
    """sha256 (hex) of the notebook's code_sources; None for a file that cannot be read as a
    notebook."""
    try:
        sources = code_sources(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()
