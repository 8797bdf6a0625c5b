"""A notebook must name its primary config and take the parameters jobs pass."""
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from sweepbook.notebook import NotebookError, code_hash, inspect

from conftest import ROOT

FULL = 'config_name = "train"\noverrides = []\nparent_run_id = None\ntags = {}'


KERNEL = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}


def write(tmp_path, source, tagged=True, metadata=KERNEL):
    cell = new_code_cell(source, metadata={"tags": ["parameters"]} if tagged else {})
    path = tmp_path / "nb.ipynb"
    nbformat.write(new_notebook(cells=[cell, new_code_cell("print(1)")], metadata=metadata), path)
    return path


def test_the_example_notebooks_name_their_configs():
    found = inspect(ROOT / "notebooks" / "train.ipynb")
    assert found.config_name == "train" and found.path.is_absolute()


def test_a_notebook_naming_its_config_is_accepted(tmp_path):
    assert inspect(write(tmp_path, FULL)).config_name == "train"


def test_a_missing_notebook_is_named(tmp_path):
    with pytest.raises(NotebookError, match=r"notebook '.*nope.ipynb' not found"):
        inspect(tmp_path / "nope.ipynb")


def test_an_untagged_parameters_cell_is_refused(tmp_path):
    with pytest.raises(NotebookError, match=r"has no cell tagged `parameters`"):
        inspect(write(tmp_path, FULL, tagged=False))


def test_missing_parameters_are_named(tmp_path):
    with pytest.raises(NotebookError, match=r"does not set overrides, tags; it needs "
                                            r"config_name, overrides, parent_run_id, tags"):
        inspect(write(tmp_path, 'config_name = "train"\nparent_run_id = None'))


def test_config_name_must_be_a_string_naming_a_config(tmp_path):
    source = FULL.replace('"train"', "None")
    with pytest.raises(NotebookError, match=r"config_name = None must be a string naming a "
                                            r"primary config, one of: .*train"):
        inspect(write(tmp_path, source))


def test_a_notebook_without_a_kernel_is_refused_with_papermills_reason(tmp_path):
    with pytest.raises(NotebookError, match=r"cannot be read as a notebook to run: No kernel "
                                            r"name found"):
        inspect(write(tmp_path, FULL, metadata={}))


def test_the_code_hash_follows_the_code_cells_only(tmp_path):
    path = write(tmp_path, FULL)
    before = code_hash(path)
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    notebook.cells[1].execution_count = 3
    notebook.cells.append(nbformat.v4.new_markdown_cell("# a note"))
    notebook.metadata["papermill"] = {"duration": 1.5}
    injected = {"tags": ["injected-parameters"]}  # papermill's cell, in an executed copy
    notebook.cells.insert(1, new_code_cell('overrides = ["model=mlp"]', metadata=injected))
    nbformat.write(notebook, path)
    assert code_hash(path) == before and len(before) == 64
    notebook.cells[2].source = "print(2)"
    nbformat.write(notebook, path)
    assert code_hash(path) != before
    assert code_hash(tmp_path / "nope.ipynb") is None
    assert code_hash(ROOT / "README.md") is None
