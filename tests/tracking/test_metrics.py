import pytest
from mlflow.exceptions import MlflowException

from sweepbook.tracking.metrics import MetricBuffer


def _run(client):
    experiment = client.create_experiment("metrics")
    return client.create_run(experiment).info.run_id


def history(client, run_id, key="loss"):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_nothing_is_written_until_flush(client):
    run_id = _run(client)
    buffer = MetricBuffer(client, run_id, max_age=3600, max_size=1000)
    for step in range(10):
        buffer.log("loss", 1.0 / (step + 1), step)
    assert history(client, run_id) == [] and len(buffer) == 10
    buffer.flush()
    assert history(client, run_id) == [(s, 1.0 / (s + 1)) for s in range(10)]
    assert len(buffer) == 0


def test_a_full_buffer_writes_itself(client):
    run_id = _run(client)
    buffer = MetricBuffer(client, run_id, max_age=3600, max_size=5)
    for step in range(7):
        buffer.log("loss", step, step)
    assert [s for s, _ in history(client, run_id)] == [0, 1, 2, 3, 4]
    assert len(buffer) == 2


def test_an_old_buffer_writes_itself(client):
    run_id = _run(client)
    buffer = MetricBuffer(client, run_id, max_age=0.0)
    buffer.log_dict({"loss": 0.5, "acc": 0.9}, step=3)
    assert history(client, run_id) == [(3, 0.5)]
    assert history(client, run_id, "acc") == [(3, 0.9)]


def test_more_than_one_batch_is_split_into_accepted_chunks(client):
    run_id = _run(client)
    buffer = MetricBuffer(client, run_id, max_age=3600, max_size=10**6)
    for step in range(2500):
        buffer.log("loss", step, step)
    buffer.flush()
    assert len(history(client, run_id)) == 2500


def test_a_failed_write_is_raised(client):
    broken = MetricBuffer(client, "no-such-run", max_age=3600)
    broken.log("loss", 1.0, 0)
    with pytest.raises(MlflowException, match="no-such-run"):
        broken.flush()
