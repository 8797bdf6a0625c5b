"""Sweep speed: an N-job sweep with --workers 2 against the same jobs run one after another
with the papermill CLI (the way the seed templates do it), measured side by side in one run.

    .venv/bin/python bench/sweep_speed.py [--jobs 8] [--workers 2] [--engine fork]

Also runs every job's notebook in this (warm) process, one after another, for the jobs' own
work: per-job overhead = (sweep wall time - that work) / jobs. All runs go to a temporary
store; the default config (CNN on digits, 20 epochs) with seeds 0..N-1.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "train.ipynb"
BIN = Path(sys.executable).parent


def timed(command, env) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sweep(jobs, workers, engine, env) -> float:
    return timed([str(BIN / "sweepbook"), "sweep", str(NOTEBOOK), f"seed=range(0,{jobs})",
                  "--workers", str(workers), "--engine", engine, "--quiet"], env)


def job_span(folder: Path) -> float:
    """First job's start to last job's end, from papermill's metadata in the executed copies."""
    from datetime import datetime

    meta = [json.loads(p.read_text())["metadata"]["papermill"]
            for p in (folder / "outputs" / "sweeps").glob("*/*.ipynb")]
    start = min(datetime.fromisoformat(m["start_time"]) for m in meta)
    end = max(datetime.fromisoformat(m["end_time"]) for m in meta)
    return (end - start).total_seconds()


def papermill_loop(jobs, folder, env) -> float:
    return sum(timed([str(BIN / "papermill"), str(NOTEBOOK), str(folder / f"cli-{seed}.ipynb"),
                      "-p", "overrides", json.dumps([f"seed={seed}"]), "--no-progress-bar"],
                     env) for seed in range(jobs))


def warm_work(jobs, folder) -> float:
    """The jobs' own work: the notebook run in this process once warm (in-process engine)."""
    import papermill

    from sweepbook.executors.engine import ENGINE_NAME, register

    register()

    def run(seed):
        papermill.execute_notebook(str(NOTEBOOK), str(folder / f"warm-{seed}.ipynb"),
                                   parameters={"overrides": [f"seed={seed}", "+bench=warm"]},
                                   engine_name=ENGINE_NAME, progress_bar=False,
                                   cwd=str(NOTEBOOK.parent))
    run(0)  # warm-up: imports and first-use costs
    started = time.perf_counter()
    for seed in range(jobs):
        run(seed)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="fork", choices=("fork", "kernel"))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweepbook-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["SWEEPBOOK_OVERRIDES"] = f"paths.output_dir={folder / 'outputs'} expname=bench"
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient()"
                    ".search_experiments()"], env=env, check=True, capture_output=True)
    swept = sweep(args.jobs, args.workers, args.engine, env)
    span = job_span(folder)
    looped = papermill_loop(args.jobs, folder, env)
    work = warm_work(args.jobs, folder)
    print(f"{args.jobs} jobs, default config, seeds 0..{args.jobs - 1}")
    print(f"  papermill CLI, one after another : {looped:7.1f} s  ({looped / args.jobs:.1f} s/job)")
    print(f"  sweepbook sweep --workers {args.workers} ({args.engine}) : {swept:7.1f} s")
    print(f"  the jobs' own work, warm process : {work:7.1f} s  ({work / args.jobs:.2f} s/job)")
    print(f"speed-up over the papermill loop: {looped / swept:.1f}x  (goal >= 8x)")
    print(f"per-job overhead (sweep wall - own work) / jobs: {(swept - work) / args.jobs:.2f} s"
          f"  (goal <= 0.5 s)")
    print(f"worker time per job beyond its own work ((wall x workers - own work) / jobs): "
          f"{(swept * args.workers - work) / args.jobs:.2f} s")
    print(f"inside the sweep: {swept - span:.1f} s before the first job started and after the "
          f"last ended (validation, store, template warm-up), then {span / args.jobs:.2f} s/job: "
          f"{looped / span:.1f}x the papermill loop's rate")


if __name__ == "__main__":
    main()
