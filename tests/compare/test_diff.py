"""`sweepbook diff` and compare.diff on real runs: two `sweepbook run`s of train.ipynb, the
second with another learning rate and one code cell changed in its copy of the notebook."""
import html
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweepbook import compare
from sweepbook.cli import main
from sweepbook.compare import ComparisonError
from sweepbook.compare.diff import Change
from sweepbook.tracking import record

from conftest import ROOT, SWEEPBOOK, smoke_store
from runs_factory import make_run

SHOWN = 'print(f"test accuracy: {test.score:.4f}")'
CHANGED = 'print(f"accuracy on the test split: {test.score:.4f}")'


@dataclass
class TwoRuns:
    uri: str
    a: str  # notebooks/train.ipynb as it is
    b: str  # a copy with CHANGED for SHOWN, run with optimizer.lr=0.01


def changed_copy(folder: Path) -> Path:
    """train.ipynb with its last code cell changed, in a folder of its own: it imports only
    sweepbook, and composes the checkout's conf/ (no $SWEEPBOOK_ROOT)."""
    notebook = json.loads((ROOT / "notebooks" / "train.ipynb").read_text())
    [cell] = [c for c in notebook["cells"] if SHOWN in "".join(c["source"])]
    cell["source"] = "".join(cell["source"]).replace(SHOWN, CHANGED)
    path = folder / "notebooks" / "train.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps(notebook))
    return path


# One worker (pytest -n) runs the tests that read the two runs: they are made once.
pytestmark = pytest.mark.xdist_group("diff")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, store_template) -> TwoRuns:
    """Both runs in one store, made side by side with the command a user types (about 30 s;
    once for this module's tests, which only read them)."""
    folder = tmp_path_factory.mktemp("diff")
    uri, env = smoke_store(folder, store_template)
    commands = [[str(ROOT / "notebooks" / "train.ipynb")],
                [str(changed_copy(folder)), "optimizer.lr=0.01"]]
    started = [subprocess.Popen([SWEEPBOOK, "run", *command, "--quiet"], env=env, cwd=folder,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for command in commands]
    printed = [process.communicate(timeout=600)[0] for process in started]
    assert [process.returncode for process in started] == [0, 0], printed
    a, b = (re.search(r"^run id: (\w+) \(FINISHED\)", out, re.M).group(1) for out in printed)
    return TwoRuns(uri, a, b)


def changed_lines(code):
    return [line for line in code if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.mark.slow
def test_diff_shows_the_changed_param_the_changed_cell_and_the_metric_delta(two_runs):
    client = MlflowClient(two_runs.uri)
    a, b = client.get_run(two_runs.a), client.get_run(two_runs.b)
    result = compare.diff(two_runs.a, two_runs.b, two_runs.uri)

    assert result.params == [Change("optimizer.lr", a.data.params["optimizer.lr"], "0.01")]
    metrics = {m.key: m for m in result.metrics}
    assert {"test_acc", "test_loss", "val_acc", "val_loss", "train_loss"} <= set(metrics)
    test_acc = metrics["test_acc"]
    assert (test_acc.a, test_acc.b) == (a.data.metrics["test_acc"], b.data.metrics["test_acc"])
    assert test_acc.delta == pytest.approx(test_acc.b - test_acc.a) and test_acc.delta != 0
    # papermill's injected cell (its launch id differs in every run) is left out
    assert changed_lines(result.code) == [f"-{SHOWN}", f"+{CHANGED}"]
    source = {c.key: c for c in result.source}
    assert source["commit"].a == source["commit"].b == a.data.tags[record.GIT_COMMIT_TAG]
    assert "optimizer.lr=0.01" in source["overrides"].b.split()
    assert "optimizer.lr=0.01" not in source["overrides"].a.split()
    assert result.versions == []  # the same environment

    text = result.text()
    assert re.search(r"^  optimizer\.lr +\S+ +0\.01$", text, re.M), text
    delta = re.escape(f"{test_acc.delta:+.6g}")
    assert re.search(rf"^  test_acc +\S+ +\S+ +{delta}$", text, re.M), text
    assert f"-{SHOWN}\n+{CHANGED}" in text
    page = result.html()
    assert html.escape(f"+{CHANGED}") in page and "<td>optimizer.lr</td>" in page
    assert result._repr_html_() == page


@pytest.mark.slow
def test_a_run_against_itself_differs_in_nothing(two_runs):
    result = compare.diff(two_runs.b, two_runs.b, two_runs.uri)
    assert result.params == [] and result.versions == [] and result.code == []
    assert result.code_note == "the same in both executed notebooks"
    assert {m.delta for m in result.metrics} == {0}
    assert all(c.a == c.b for c in result.source)
    assert "params that differ:\n  none\n" in result.text()


@pytest.mark.slow
def test_sweepbook_diff_prints_it(two_runs, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_runs.uri)
    assert main(["diff", two_runs.a, two_runs.b]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"run A  {two_runs.a}  ")
    assert re.search(r"^  optimizer\.lr +\S+ +0\.01$", printed, re.M), printed
    assert re.search(r"^  test_acc +\S+ +\S+ +[+-]\d", printed, re.M), printed
    assert f"-{SHOWN}\n+{CHANGED}" in printed


def test_runs_with_the_same_params_have_none_that_differ(client):
    """Runs without an executed notebook (a notebook's own start_run in JupyterLab) still
    compare; their code cells cannot be."""
    experiment = client.create_experiment("made")
    tags = {record.CONFIG_NAME_TAG: "train", record.VERSION_TAG.format("torch"): "2.14.1"}
    params = {"optimizer.lr": "0.01", "seed": "0"}
    first = make_run(client, experiment, "first", params, {"test_acc": [0.5]}, tags=tags)
    second = make_run(client, experiment, "second", params, {"test_acc": [0.75]},
                      tags={**tags, record.VERSION_TAG.format("torch"): "2.15.0"})
    result = compare.diff(first, second)  # the config's store: $MLFLOW_TRACKING_URI's
    assert result.params == [] and result.code == []
    assert result.code_note.startswith(f"run {first} logged no executed notebook")
    assert [(m.key, m.a, m.b, m.delta) for m in result.metrics] == [("test_acc", 0.5, 0.75,
                                                                     0.25)]
    assert result.versions == [Change("torch", "2.14.1", "2.15.0")]
    assert "  torch    2.14.1  2.15.0" in result.text()


@pytest.mark.parametrize("which, says", [
    ("unknown", "no run 'nope' in sqlite:///"),
    ("plain", "was not made by sweepbook (it has no sweepbook.config_name tag)"),
    ("parent", "is the parent run of sweep s1: it trained nothing"),
])
def test_runs_diff_cannot_compare_are_refused(client, which, says):
    experiment = client.create_experiment("made")
    made = make_run(client, experiment, "made", tags={record.CONFIG_NAME_TAG: "train"})
    other = {"unknown": "nope", "plain": make_run(client, experiment, "plain"),
             "parent": make_run(client, experiment, "sweep-s1", tags={
                 record.ROLE_TAG: record.PARENT_ROLE, record.SWEEP_TAG: "s1"})}[which]
    with pytest.raises(ComparisonError, match=re.escape(says)):
        compare.diff(made, other, client.tracking_uri)
