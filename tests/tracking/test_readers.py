"""Both readers against a real SQLite store, checked against mlflow.search_runs itself."""
import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient

from sweepbook.tracking.readers import ClientRunReader, SqlRunReader, reader_for

from runs_factory import make_run


@pytest.fixture
def experiment(client):
    """Finished, failed, running, NaN-metric, deleted and parent/child runs."""
    experiment_id = client.create_experiment("readers")
    parent = make_run(client, experiment_id, "parent", {"sweep.jobs": 2})
    for lr, acc in (("0.1", [0.5, 0.7]), ("0.01", [0.6, 0.9])):
        make_run(client, experiment_id, f"lr={lr}", {"optimizer.lr": lr, "model.name": "cnn"},
                 {"val_acc": acc, "test_acc": [acc[-1]]}, parent=parent)
    make_run(client, experiment_id, "failed", {"optimizer.lr": "1"}, {"val_acc": [0.1]},
             status="FAILED")
    make_run(client, experiment_id, "running", {"optimizer.lr": "2"}, status=None)
    make_run(client, experiment_id, "diverged", {"optimizer.lr": "9"},
             {"val_acc": [float("nan")]})
    client.delete_run(make_run(client, experiment_id, "deleted", {"optimizer.lr": "3"}))
    return experiment_id, parent


def readers(uri):
    return SqlRunReader(mlflow.tracking._tracking_service.utils._get_store(uri)), \
        ClientRunReader(MlflowClient(uri))


def test_frame_matches_mlflow_search_runs(store, experiment):
    experiment_id, _ = experiment
    expected = mlflow.search_runs([experiment_id])
    for reader in readers(store):
        frame = reader.runs([experiment_id])
        pd.testing.assert_frame_equal(frame[expected.columns], expected, check_dtype=False)
        assert "deleted" not in set(frame["run_name"])
        assert set(frame["run_name"]) == {"parent", "lr=0.1", "lr=0.01", "failed", "running",
                                          "diverged"}


def test_frame_adds_run_name_and_duration(store, experiment):
    frame = reader_for(store).runs([experiment[0]]).set_index("run_name")
    assert frame.loc["failed", "status"] == "FAILED"
    assert frame.loc["failed", "duration_s"] >= 0
    assert pd.isna(frame.loc["running", "duration_s"])
    assert pd.isna(frame.loc["diverged", "metrics.val_acc"])
    assert frame.loc["lr=0.01", "metrics.val_acc"] == 0.9  # the last value, not the first


def test_children_of_a_parent_only(store, experiment):
    experiment_id, parent = experiment
    for reader in readers(store):
        children = reader.runs([experiment_id], parent_run_id=parent)
        assert sorted(children["run_name"]) == ["lr=0.01", "lr=0.1"]


def test_histories_agree_with_get_metric_history(store, experiment):
    experiment_id, parent = experiment
    client = MlflowClient(store)
    run_ids = list(reader_for(store).runs([experiment_id], parent)["run_id"])
    sql, rest = (reader.histories(run_ids, ["val_acc", "test_acc"]) for reader in readers(store))
    pd.testing.assert_frame_equal(sql, rest)
    for run_id in run_ids:
        expected = [m.value for m in client.get_metric_history(run_id, "val_acc")]
        got = sql[(sql.run_id == run_id) & (sql.key == "val_acc")]
        assert list(got["step"]) == [0, 1] and list(got["value"]) == expected


def test_query_count_does_not_grow_with_runs(store, client):
    counts = []
    for n in (2, 20):
        experiment_id = client.create_experiment(f"grow-{n}")
        for i in range(n):
            make_run(client, experiment_id, f"r{i}", {"i": i}, {"val_acc": [0.1, 0.2]})
        reader = reader_for(store)
        queries = []
        listener = lambda *args: queries.append(args[2])  # noqa: E731
        sa.event.listen(reader.engine, "before_cursor_execute", listener)
        run_ids = list(reader.runs([experiment_id])["run_id"])
        reader.histories(run_ids, ["val_acc"])
        sa.event.remove(reader.engine, "before_cursor_execute", listener)
        counts.append(len(queries))
    assert counts[0] == counts[1] == 5


def test_reader_for_picks_the_client_for_a_server():
    assert isinstance(reader_for("http://127.0.0.1:1"), ClientRunReader)
