"""Scale: the Ray executor against the local one, and the tracking server (PostgreSQL behind
`mlflow server`) against the embedded SQLite store, side by side in one run.

    .venv/bin/python bench/scale.py [--jobs 8] [--workers 2] [--runs 10000] [--repeats 3]
                                    [--log-runs 100] [--log-values 200] [--log-batches 5]
                                    [--quick] [--json outputs/bench/scale.json]

1. Executors: the same smoke sweep (debug=default, seeds 0..JOBS-1, --workers 2) with
   `run_sweep(..., executor="local")` (the fork engine) and `executor="ray"` (a local Ray the
   executor starts and stops itself), each on a fresh SQLite store. The jobs' own work is what
   their MLflow runs measure (end - start); overhead per job = (sweep wall - work / workers)
   / jobs: what a job costs beyond its own run, start-up and shut-down of the executor included.
2. Logging: a real `sweepbook server` (started and stopped with the CLI, in a temporary
   project) against a temporary SQLite store, in alternating order each repeat: runs created
   and ended per second (MlflowClient create_run + set_terminated), metric values per second
   with one log_metric per value and with log_batch (1,000 metrics a call).
3. Comparison: RUNS runs (15 params, 2 metrics, as bench/compare_speed.py makes them) in the
   server's PostgreSQL, loaded through the server with sweepbook.compare's loader (load_runs)
   and with mlflow.search_runs, both checked to hold the same values; for reference, load_runs
   on the backend's URI (the SQL reader) and the bare REST search (the server's share). A few
   runs are made through the server's API; the others are written straight into MLflow's
   tables (its own SQLAlchemy models) on the backend's URI, copied from an API-made run and
   checked alike: the API makes ~10-20 runs/s here, 10,000 would take over 10 minutes.

MLflow's "View run at" lines (which cost a get_run per ended run on a server) are turned off.
Everything runs in temporary folders; the figures are written as JSON too (--json).
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mlflow
import psutil
import sqlalchemy as sa
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from compare_speed import PARAMS, check_same, timed
from tune_efficiency import quiet as held_back
from sweepbook.compare import load_runs, resolve_scope
from sweepbook.env import patched_environ
from sweepbook.tracking.readers import PAGE_SIZE
from sweepbook.tracking.server import MLFLOW_DB, Folder, database_url, read_state
from sweepbook.tracking.store import using_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "train.ipynb"
SWEEPBOOK = str(Path(sys.executable).parent / "sweepbook")
BATCH = 1000  # metrics per log_batch: the most MLflow takes in one call
API_RUNS = 50  # comparison runs made through the server's API (the rest are bulk-written)
NO_URL_PRINTS = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


@contextlib.contextmanager
def quiet():
    """tune_efficiency's quiet() (MLflow's INFO lines and the sweeps' own stderr held back,
    shown if it raises), with MLflow's "View run at" lines off too."""
    with held_back(), patched_environ({"MLFLOW_LOGGING_LEVEL": "WARNING", **NO_URL_PRINTS}):
        yield


def fresh_store(folder: Path) -> str:
    """A SQLite store with its schema made (the migrations paid before any clock)."""
    folder.mkdir(parents=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with quiet():
        MlflowClient(uri).search_experiments()
    return uri


# --- 1. executors ---

def warm_driver() -> None:
    """The driver's own first-use costs (Hydra, MLflow's store code) paid by neither sweep."""
    from sweepbook.notebook import inspect
    from sweepbook.sweep.recorder import SweepRecorder  # noqa: F401 (its import is the cost)

    inspect(NOTEBOOK).compose(["debug=default"])


def sweep_on(executor: str, jobs: int, workers: int, folder: Path) -> dict:
    """One smoke sweep on `executor`: its wall time and, from its runs, the jobs' own work."""
    from sweepbook.sweep.driver import run_sweep

    uri = fresh_store(folder)
    overrides = ["debug=default", f"seed=range(0,{jobs})", f"paths.output_dir={folder / 'out'}"]
    # RAY_ADDRESS=local: a Ray of its own, as executor.address=null means, even where a cluster
    # named in /tmp/ray/ray_current_cluster (ray start, a test's cluster) would be joined
    with quiet(), patched_environ({"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"}):
        started, began = time.perf_counter(), time.time()
        result = run_sweep(str(NOTEBOOK), overrides, workers=workers, executor=executor,
                           quiet=True)
        wall, ended = time.perf_counter() - started, time.time()
    if not result.ok:
        sys.exit(f"the {executor} sweep did not finish every job:\n{result.table()}")
    client = MlflowClient(uri)
    runs = [client.get_run(r.run_id).info for r in result.results]
    work = [(run.end_time - run.start_time) / 1000 for run in runs]
    job_seconds = [r.seconds for r in result.results]
    in_slot = [j - w for j, w in zip(job_seconds, work)]  # in job order: the first ones first
    return {"executor": executor, "wall": wall, "work": sum(work),
            "run_seconds": statistics.mean(work), "job_seconds": statistics.mean(job_seconds),
            "in_slot": statistics.mean(in_slot),
            "in_slot_first": statistics.mean(in_slot[:workers]),
            "in_slot_later": statistics.mean(in_slot[workers:]) if jobs > workers else None,
            "to_first_run": min(run.start_time for run in runs) / 1000 - began,
            "after_last_run": ended - max(run.end_time for run in runs) / 1000,
            "overhead_per_job": (wall - sum(work) / workers) / jobs}


def leftovers(before: set) -> list:
    """Processes started under this one during a sweep, still alive 5 s after: named, and
    ended by PID. Not multiprocessing's resource tracker: one per process, ends with it."""
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before
               and "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]
    _, alive = psutil.wait_procs(started, timeout=5)
    named = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            named.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
            process.terminate()
    psutil.wait_procs(alive, timeout=10)
    return named


def executors(jobs: int, workers: int, folder: Path) -> dict:
    warm_driver()
    sweeps, left = {}, {}
    for name in ("local", "ray"):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        sweeps[name] = sweep_on(name, jobs, workers, folder / name)
        left[name] = leftovers(before)
    local, ray = sweeps["local"], sweeps["ray"]
    print(f"1. executors: {jobs} smoke jobs (debug=default, seeds 0..{jobs - 1}), "
          f"--workers {workers}, SQLite store")
    print(f"   {'':6} {'wall s':>7} {'work s':>7} {'run s/job':>9} {'job s/job':>9} "
          f"{'in slot':>7} {'1st/later':>11} {'to 1st run':>10} {'after last':>10} "
          f"{'overhead/job':>12}")
    for row in sweeps.values():
        later = "-" if row["in_slot_later"] is None else f"{row['in_slot_later']:.1f}"
        print(f"   {row['executor']:6} {row['wall']:7.1f} {row['work']:7.1f} "
              f"{row['run_seconds']:9.2f} {row['job_seconds']:9.2f} {row['in_slot']:7.2f} "
              f"{row['in_slot_first']:5.1f}/{later:<5} {row['to_first_run']:10.1f} "
              f"{row['after_last_run']:10.1f} {row['overhead_per_job']:12.2f}")
    print("   work: the runs' own seconds (MLflow end - start), summed; job s: a job's start "
          "to end as its executor saw it;")
    print(f"   in slot: job s - run s (process, warm-up, notebook, reporting), for all, the "
          f"first {workers} jobs / the later ones;")
    print(f"   to 1st run / after last: from the sweep's start / to its end; overhead/job = "
          f"(wall - work / {workers}) / {jobs}; local ran first, then ray")
    ratios = {"wall": ray["wall"] / local["wall"],
              "overhead_per_job": ray["overhead_per_job"] / local["overhead_per_job"],
              "in_slot": ray["in_slot"] / local["in_slot"]}
    extra = ray["overhead_per_job"] - local["overhead_per_job"]
    print(f"   ray/local: wall {ratios['wall']:.2f}, overhead per job "
          f"{ratios['overhead_per_job']:.2f} ({extra:+.2f} s a job), in slot "
          f"{ratios['in_slot']:.2f}")
    for name, named in left.items():
        print(f"   processes left after the {name} sweep (ended by PID): {named or 'none'}",
              flush=True)
    return {"sweeps": sweeps, "ray_over_local": ratios, "processes_left": left}


# --- the server ---

@contextlib.contextmanager
def tracking_server():
    """`sweepbook server start` in a project of its own (conf/ and notebooks/ copied; mode 755:
    as root, PostgreSQL runs as `postgres` and must reach its folder), `stop` after."""
    root = Path(tempfile.mkdtemp(prefix="sweepbook-bench-server-"))
    root.chmod(0o755)
    for name in ("conf", "notebooks"):
        shutil.copytree(ROOT / name, root / name)
    env = {**os.environ, "SWEEPBOOK_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.perf_counter()
    done = subprocess.run([SWEEPBOOK, "server", "start", "--port", "0"], env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL)
    try:
        if done.returncode != 0:
            sys.exit(f"sweepbook server start failed:\n{done.stdout}{done.stderr}")
        uri = re.search(r"^tracking server running at (\S+)$", done.stdout, re.M).group(1)
        print(f"server: started in {time.perf_counter() - started:.1f} s at {uri} "
              f"({done.stdout.splitlines()[0]})", flush=True)
        folder = Folder.of_project(root)
        yield uri, database_url(read_state(folder), folder, MLFLOW_DB)
    finally:
        stopped = subprocess.run([SWEEPBOOK, "server", "stop"], env=env, text=True,
                                 capture_output=True, stdin=subprocess.DEVNULL)
        if stopped.returncode == 0:
            shutil.rmtree(root, ignore_errors=True)
        print(f"server: {(stopped.stdout + stopped.stderr).strip()} (the temporary project: "
              f"{'removed' if stopped.returncode == 0 else 'kept'})")


# --- 2. logging ---

def per_second(count: int, action) -> float:
    return count / timed(action)


def create_and_end(client: MlflowClient, experiment_id: str, count: int) -> float:
    def action():
        for _ in range(count):
            client.set_terminated(client.create_run(experiment_id).info.run_id)
    return per_second(count, action)


def log_one_by_one(client: MlflowClient, experiment_id: str, count: int) -> float:
    run_id = client.create_run(experiment_id).info.run_id
    rate = per_second(count, lambda: [client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
                                      for step in range(count)])
    client.set_terminated(run_id)
    return rate


def log_batches(client: MlflowClient, experiment_id: str, batches: int) -> float:
    run_id = client.create_run(experiment_id).info.run_id
    now = int(time.time() * 1000)

    def action():
        for batch in range(batches):
            client.log_batch(run_id, metrics=[Metric("loss", 1 / (step + 1), now, step) for step
                                              in range(batch * BATCH, (batch + 1) * BATCH)])
    rate = per_second(batches * BATCH, action)
    client.set_terminated(run_id)
    return rate


def logging_rates(server_uri: str, sqlite_uri: str, args) -> dict:
    clients = {"server": MlflowClient(server_uri), "sqlite": MlflowClient(sqlite_uri)}
    experiments = {name: client.create_experiment("bench-logging")
                   for name, client in clients.items()}
    measures = {"runs/s": (create_and_end, args.log_runs),
                "log_metric values/s": (log_one_by_one, args.log_values),
                "log_batch values/s": (log_batches, args.log_batches)}
    rates = {measure: {name: [] for name in clients} for measure in measures}
    with quiet():
        for name, client in clients.items():  # warm-up: first-use costs of each path
            for measure, count in measures.values():
                measure(client, experiments[name], min(count, 5))
        for repeat in range(args.repeats):
            order = list(clients) if repeat % 2 == 0 else list(reversed(clients))
            for measure, (run, count) in measures.items():
                for name in order:
                    rates[measure][name].append(run(clients[name], experiments[name], count))
    print(f"2. logging: server (PostgreSQL + mlflow server, 1 worker) vs SQLite; medians of "
          f"{args.repeats}; {args.log_runs} runs, {args.log_values} log_metric calls, "
          f"{args.log_batches} log_batch calls of {BATCH}")
    figures = {}
    for measure, by_store in rates.items():
        server, sqlite = (statistics.median(by_store[n]) for n in ("server", "sqlite"))
        ratio = statistics.median(s / q for s, q in zip(by_store["server"], by_store["sqlite"]))
        figures[measure] = {"server": server, "sqlite": sqlite, "server_over_sqlite": ratio}
        print(f"   {measure:20s} server {server:9.1f}   sqlite {sqlite:9.1f}   "
              f"server/sqlite {ratio:5.2f}", flush=True)
    return figures


# --- 3. comparison ---

def run_values(index: int, count: int) -> dict:
    """Run `index`'s params and final metrics, as bench/compare_speed.py makes them."""
    return {"params": {f"param_{k}": str(index * k) for k in range(PARAMS)},
            "metrics": {"test_acc": index / count, "test_loss": 1 - index / count}}


def create_through_api(client: MlflowClient, experiment_id: str, count: int, total: int) -> list:
    run_ids = []
    for index in range(count):
        run_id = client.create_run(experiment_id, run_name=f"run-{index}").info.run_id
        now, values = int(time.time() * 1000), run_values(index, total)
        client.log_batch(run_id, params=[Param(k, v) for k, v in values["params"].items()],
                         metrics=[Metric(k, v, now, 0) for k, v in values["metrics"].items()])
        client.set_terminated(run_id)
        run_ids.append(run_id)
    return run_ids


def bulk_rows(template: dict, first: int, total: int) -> dict:
    """Runs first..total-1 as rows of MLflow's tables: the API-made `template`'s rows, with a
    new id, name, start and end, and each run's own values."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    old_id, rows = template["runs"][0]["run_uuid"], {table: [] for table in template}
    start = int(time.time() * 1000)  # after every API-made run: no two runs start together
    for index in range(first, total):
        run_id, values = uuid.uuid4().hex, run_values(index, total)
        given = {"params": values["params"], "metrics": values["metrics"],
                 "latest_metrics": values["metrics"], "tags": {MLFLOW_RUN_NAME: f"run-{index}"}}
        for table, template_rows in template.items():
            for row in template_rows:
                row = {**row, "run_uuid": run_id}
                if table == "runs":
                    row.update(name=f"run-{index}", start_time=start + index,
                               end_time=start + index + 1,
                               artifact_uri=row["artifact_uri"].replace(old_id, run_id))
                elif row["key"] in given[table]:
                    row["value"] = given[table][row["key"]]
                rows[table].append(row)
    return rows


def create_in_database(backend_uri: str, template_id: str, first: int, total: int) -> None:
    """Runs first..total-1 written straight into the server's database, one transaction."""
    from mlflow.store.tracking.dbmodels.models import (SqlLatestMetric, SqlMetric, SqlParam,
                                                       SqlRun, SqlTag)

    tables = [model.__table__ for model in (SqlRun, SqlParam, SqlMetric, SqlLatestMetric, SqlTag)]
    engine = sa.create_engine(backend_uri)
    try:
        with engine.begin() as db:
            template = {table.name: [dict(row) for row in db.execute(
                sa.select(table).where(table.c.run_uuid == template_id)).mappings()]
                for table in tables}
            rows = bulk_rows(template, first, total)
            for table in tables:  # runs first: the others refer to them
                db.execute(sa.insert(table), rows[table.name])
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(sa.text("ANALYZE"))  # what autovacuum does soon after such a load
    finally:
        engine.dispose()


def check_bulk_like_api(client: MlflowClient, api_id: str, bulk_id: str) -> None:
    made, written = client.get_run(api_id), client.get_run(bulk_id)
    for field in ("status", "lifecycle_stage", "user_id", "experiment_id"):
        assert getattr(made.info, field) == getattr(written.info, field), field
    assert written.info.artifact_uri == made.info.artifact_uri.replace(api_id, bulk_id)
    for part in ("params", "metrics", "tags"):
        assert set(getattr(made.data, part)) == set(getattr(written.data, part)), part


def rest_search(server_uri: str, experiment_id: str) -> int:
    """The server's part of a search: its answer to one REST call, received but not parsed.
    Its size in bytes."""
    import requests

    with requests.Session() as session:
        session.trust_env = False  # no proxy: the server is on this machine
        response = session.post(f"{server_uri}/api/2.0/mlflow/runs/search",
                                 json={"experiment_ids": [experiment_id],
                                       "max_results": PAGE_SIZE})
        response.raise_for_status()
        return len(response.content)


def comparison(server_uri: str, backend_uri: str, args) -> dict:
    client = MlflowClient(server_uri)
    experiment_id = client.create_experiment("bench-compare")
    api_runs = min(API_RUNS, args.runs)
    with quiet():
        seconds = timed(lambda: create_through_api(client, experiment_id, api_runs, args.runs))
        rate = api_runs / seconds
        first = client.search_runs([experiment_id], "attributes.run_name = 'run-0'")[0]
        bulk = timed(lambda: create_in_database(backend_uri, first.info.run_id, api_runs,
                                                args.runs))
    print(f"3. comparison: {args.runs} runs ({PARAMS} params, 2 metrics each) on the server: "
          f"{api_runs} through its API ({rate:.1f} runs/s: {args.runs} would take "
          f"{args.runs / rate:.0f} s), {args.runs - api_runs} written into its PostgreSQL "
          f"`mlflow` database (MLflow's tables, SQLAlchemy on the backend URI) in {bulk:.1f} s",
          flush=True)
    if args.runs > api_runs:
        last = client.search_runs([experiment_id], f"attributes.run_name = 'run-{args.runs - 1}'")
        check_bulk_like_api(client, first.info.run_id, last[0].info.run_id)
    with quiet():
        server_scope = resolve_scope(server_uri, "bench-compare")
        backend_scope = resolve_scope(backend_uri, "bench-compare")

        def search_runs(most: int = 100000):
            with using_tracking_uri(server_uri):
                return mlflow.search_runs([experiment_id], max_results=most)
        loaders = {"mlflow.search_runs (server)": search_runs,
                   "load_runs (server)": lambda: load_runs(server_scope),
                   "load_runs (backend URI)": lambda: load_runs(backend_scope),
                   "REST search, unparsed": lambda: rest_search(server_uri, experiment_id)}
        search_runs(1)  # warm-up: a first request's costs
        times = {name: [] for name in loaders}
        for repeat in range(args.repeats):
            order = list(loaders) if repeat % 2 == 0 else list(reversed(loaders))
            frames = {}
            for name in order:
                started = time.perf_counter()
                frames[name] = loaders[name]()
                times[name].append(time.perf_counter() - started)
            if repeat == 0:  # checked once, outside the clock: the same runs, the same values
                reference = frames["mlflow.search_runs (server)"]
                assert len(reference) == args.runs, f"{len(reference)} runs, not {args.runs}"
                for name in ("load_runs (server)", "load_runs (backend URI)"):
                    check_same(frames[name], reference)
    print(f"   the loaders' frames checked to hold the same values; medians of {args.repeats} "
          f"loads each; the REST search's answer: {frames['REST search, unparsed'] / 1e6:.1f} "
          f"MB (the server's share of a load, for reference)")
    base = times["mlflow.search_runs (server)"]
    figures = {"api_runs_per_s": rate, "bulk_write_s": bulk, "api_runs": api_runs}
    for name, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, base))
        figures[name] = {"median_s": statistics.median(values), "ratio_to_search_runs": ratio}
        print(f"   {name:28s} {statistics.median(values):7.2f} s   "
              f"ratio to mlflow.search_runs {ratio:.3f}", flush=True)
    return figures


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs in each executor's sweep")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10000, help="runs loaded for comparison")
    parser.add_argument("--repeats", type=int, default=3, help="of each logging measure and load")
    parser.add_argument("--log-runs", type=int, default=100, help="runs created and ended")
    parser.add_argument("--log-values", type=int, default=200, help="log_metric calls")
    parser.add_argument("--log-batches", type=int, default=5, help=f"log_batch calls of {BATCH}")
    parser.add_argument("--json", type=Path, default=ROOT / "outputs" / "bench" / "scale.json")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 jobs, 300 runs, a few calls, 1 repeat")
    if parser.parse_args().quick:  # its sizes, unless given
        parser.set_defaults(jobs=2, runs=300, repeats=1, log_runs=20, log_values=50,
                            log_batches=2)
    return parser.parse_args()


def main() -> None:
    args = options()
    print(f"{os.cpu_count()} cores; other work on this machine shows in every figure", flush=True)
    began = time.perf_counter()
    figures = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="sweepbook-bench-") as folder:
        figures["executors"] = executors(args.jobs, args.workers, Path(folder) / "sweeps")
        with tracking_server() as (server_uri, backend_uri):
            sqlite_uri = fresh_store(Path(folder) / "logging")
            figures["logging"] = logging_rates(server_uri, sqlite_uri, args)
            figures["comparison"] = comparison(server_uri, backend_uri, args)
    print(f"total {time.perf_counter() - began:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2))
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
