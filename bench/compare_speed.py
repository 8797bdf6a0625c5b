"""Loading runs for comparison: sweepbook's DataFrame vs mlflow.search_runs, side by side.

    .venv/bin/python bench/compare_speed.py [--runs 1000] [--repeats 9]

Creates RUNS finished runs (15 params, 2 metrics, the tags MLflow adds) in a temporary SQLite
store, then loads them all, in alternating order each repeat, with `mlflow.search_runs` and
with `sweepbook.compare.load_runs` (which reads a database store with column queries instead
of building MLflow's Run objects). Both frames are checked to hold the same values before any
timing. The headline is the median of the per-repeat ratios; the goal is at most 0.7.
The client reader (what a tracking server gets) is timed too, for reference.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from sweepbook.compare import load_runs, resolve_scope
from sweepbook.tracking.readers import ClientRunReader

GOAL = 0.7
PARAMS = 15


def create_runs(client: MlflowClient, experiment_id: str, count: int) -> None:
    for i in range(count):
        run_id = client.create_run(experiment_id, run_name=f"run-{i}").info.run_id
        now = int(time.time() * 1000)
        client.log_batch(run_id, params=[Param(f"param_{k}", str(i * k)) for k in range(PARAMS)],
                         metrics=[Metric("test_acc", i / count, now, 0),
                                  Metric("test_loss", 1 - i / count, now, 0)])
        client.set_terminated(run_id)


def timed(load) -> float:
    started = time.perf_counter()
    load()
    return time.perf_counter() - started


def check_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours[theirs.columns], theirs, check_dtype=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    uri = f"sqlite:///{Path(tempfile.mkdtemp(prefix='sweepbook-bench-')) / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("bench")
    print(f"creating {args.runs} runs ({PARAMS} params, 2 metrics each) in {uri} ...")
    create_runs(client, experiment_id, args.runs)
    scope = resolve_scope(uri, "bench")
    loaders = {
        "mlflow.search_runs": lambda: mlflow.search_runs([experiment_id], max_results=100000),
        "sweepbook load_runs": lambda: load_runs(scope),
        "client reader": lambda: ClientRunReader(client).runs([experiment_id]),
    }
    reference = loaders["mlflow.search_runs"]()
    assert len(reference) == args.runs
    check_same(loaders["sweepbook load_runs"](), reference)  # also warms every path up
    check_same(loaders["client reader"](), reference)
    seconds = {name: [] for name in loaders}
    for repeat in range(args.repeats):
        order = list(loaders) if repeat % 2 == 0 else list(reversed(loaders))
        for name in order:
            seconds[name].append(timed(loaders[name]))
    base = seconds["mlflow.search_runs"]
    for name, values in seconds.items():
        ratios = [value / b for value, b in zip(values, base)]
        print(f"{name:22s} median {statistics.median(values):.3f} s   "
              f"ratio to mlflow.search_runs {statistics.median(ratios):.3f}")
    ratio = statistics.median(o / b for o, b in zip(seconds["sweepbook load_runs"], base))
    verdict = "met" if ratio <= GOAL else "missed"
    print(f"comparison DataFrame / mlflow.search_runs = {ratio:.3f} (goal <= {GOAL}: {verdict})")


if __name__ == "__main__":
    main()
