"""The HTML report of a real sweep: one file, every image inside it."""
import base64
import re

import pytest

from sweepbook.compare import (ComparisonError, Scope, finished_ranked, load_runs,
                               resolve_scope)
from sweepbook.compare.report import summary, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def section(text: str, title: str) -> str:
    """The part of a report under the heading `title`, up to the next one."""
    return text.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]


def test_report_is_one_self_contained_file(swept, tmp_path):
    scope = resolve_scope(swept.uri, sweep_id=swept.sweep_id)
    path = write_report(scope, "test_acc", None, tmp_path / "deep" / "report.html")
    text = path.read_text()
    assert f"sweepbook report: sweep {swept.sweep_id}" in text
    table = section(text, "Runs")
    assert table.count("<tr>") == 1 + 4  # header and the four jobs (its parent is left out)
    for name in ("model=cnn,lr=0.001", "model=mlp,lr=0.01"):
        assert name in text
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', text)
    assert [alt for alt, _ in images] == ["test_acc against each swept parameter",
                                          "Learning curves", "Parallel coordinates",
                                          "confusion matrix on the test split"]
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for _, data in images)
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing fetched from elsewhere
    assert list((tmp_path / "deep").iterdir()) == [path]  # no side files left


def test_the_report_shows_what_differs_between_the_best_run_and_the_runner_up(swept, tmp_path):
    scope = resolve_scope(swept.uri, sweep_id=swept.sweep_id)
    best, runner_up = finished_ranked(load_runs(scope), "test_acc").iloc[:2].to_dict("records")
    text = write_report(scope, "test_acc", None, tmp_path / "report.html").read_text()
    shown = section(text, "Best run against the runner-up")
    assert f"A: <b>{best['run_name']}</b> (run {best['run_id']}, FINISHED)" in shown
    assert f"B: <b>{runner_up['run_name']}</b> (run {runner_up['run_id']}" in shown
    for param in ("model", "optimizer.lr"):  # what the sweep varied
        differs = best[f"params.{param}"] != runner_up[f"params.{param}"]
        assert (f"<tr><td>{param}</td>" in shown) == differs, shown
    assert "<td>test_acc</td>" in shown
    assert "the same in both executed notebooks" in shown  # one notebook swept


def test_unknown_metric_writes_nothing(swept, tmp_path):
    scope = resolve_scope(swept.uri, sweep_id=swept.sweep_id)
    with pytest.raises(ComparisonError, match="no run logged the metric 'acc'"):
        write_report(scope, "acc", None, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_a_param_only_some_runs_have_is_compared_as_text(swept, tmp_path):
    """`+note=hello` on one run: text next to missing values (NaN, a float) must not break the
    ranking, the plots or the report."""
    from mlflow.tracking import MlflowClient

    from runs_factory import make_run
    from sweepbook.compare import load_runs, summary_table

    client = MlflowClient(swept.uri)
    experiment = client.get_experiment_by_name(swept.experiment)
    make_run(client, experiment.experiment_id, "noted", params={"note": "hello", "seed": "7"},
             metrics={"test_acc": [0.1]})
    scope = resolve_scope(swept.uri, experiment=swept.experiment)
    table = summary_table(load_runs(scope), "test_acc", None)
    assert list(table["note"].fillna("-")) == ["-"] * 4 + ["hello"]
    text = write_report(scope, "test_acc", None, tmp_path / "report.html").read_text()
    assert "hello" in text and section(text, "Runs").count("<tr>") == 1 + 5


def test_the_report_shows_its_store_without_the_password():
    """A report is mailed around: the store's address in it hides the password."""
    scope = Scope("postgresql://ml:hunter2@db.example/mlflow", ["1"], "experiment x")
    line = summary(scope, 3, "test_acc", None)
    assert "3 runs in postgresql://ml:***@db.example/mlflow, ranked by test_acc (max)" in line
    assert "hunter2" not in line
