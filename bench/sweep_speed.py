"""Sweep speed: `sweepbook sweep --workers 2` against its peers, measured side by side in one run.

    .venv/bin/python bench/sweep_speed.py [--jobs 8 32] [--workers 2] [--papermill-jobs 8]

For each job count N (the default config, CNN on digits, 20 epochs, seeds 0..N-1):
- sweep:     `sweepbook sweep notebooks/train.ipynb seed=range(0,N) --workers 2`, a fresh process;
- loop:      the notebook's code cells run job after job in ONE plain Python process (imports
             paid once, as Hydra's basic launcher does for a script), tracked to the same store;
- papermill: the papermill CLI, one job after another (the first N' jobs only: 16 s a job);
- floor:     the jobs' training alone (`fit`), warm, divided by the workers: what no sweep beats.
The sweep's time splits into its fixed cost (before its first job started and after its last
ended) and its per-job rate (the span between, from papermill's metadata in the executed
copies). Then a second sweep in the same Python process (as `run_sweep` in a notebook's
kernel): how long until its first job starts. All runs go to a temporary store.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "train.ipynb"
BIN = Path(sys.executable).parent

# The notebook's code cells, run job after job in one process: the "plain loop" peer.
LOOP = """
import sys, nbformat, matplotlib
matplotlib.use("Agg")
sys.modules.setdefault("rfc3987_syntax", None)  # as sweepbook's own processes do
cells = [c.source for c in nbformat.read(sys.argv[1], as_version=4).cells
         if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
code = compile("\\n".join(line for cell in cells for line in cell.splitlines()
                          if not line.lstrip().startswith("%")), "train.ipynb", "exec")
for seed in range(int(sys.argv[2])):
    exec(code, {"config_name": "train", "overrides": [f"seed={seed}"],
                "parent_run_id": None, "tags": {}})
"""


def timed(command, env, cwd=None) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - started


def papermill_times(paths):
    """(start, end) of each executed copy, from papermill's metadata."""
    for path in paths:
        meta = json.loads(Path(path).read_text())["metadata"]["papermill"]
        yield (utc(meta["start_time"]), utc(meta["end_time"]))


def utc(stamp: str) -> float:
    """papermill writes UTC times without their zone."""
    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()


def sweep(jobs, workers, env, outputs: Path):
    """Wall time, and the span from the first job's start to the last job's end."""
    seconds = timed([str(BIN / "sweepbook"), "sweep", str(NOTEBOOK), f"seed=range(0,{jobs})",
                     "--workers", str(workers), "--quiet"], env)
    [folder] = [f for f in (outputs / "sweeps").iterdir() if f.is_dir()
                and len(list(f.glob("*.ipynb"))) == jobs and not (f / ".counted").exists()]
    (folder / ".counted").touch()
    times = list(papermill_times(folder.glob("*.ipynb")))
    return seconds, max(end for _, end in times) - min(start for start, _ in times)


def loop(jobs, env) -> float:
    return timed([sys.executable, "-c", LOOP, str(NOTEBOOK), str(jobs)], env, NOTEBOOK.parent)


def papermill_loop(jobs, folder: Path, env) -> float:
    return sum(timed([str(BIN / "papermill"), str(NOTEBOOK), str(folder / f"cli-{seed}.ipynb"),
                      "-p", "overrides", json.dumps([f"seed={seed}"]), "--no-progress-bar"],
                     env) for seed in range(jobs))


def training_floor(jobs, workers) -> float:
    """The jobs' training alone, warm, one torch thread each (as in the sweep's workers),
    shared among the workers."""
    import torch

    from sweepbook.config import compose
    from sweepbook.data import load_dataset
    from sweepbook.models import build_model
    from sweepbook.training import fit, seed_everything

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    total = 0.0
    for seed in range(-1, jobs):  # seed -1: warm-up, not counted
        cfg = compose([f"seed={abs(seed)}", "training.progress=false"])
        seed_everything(cfg.seed)
        data = load_dataset(cfg.data, cfg.seed)
        model = build_model(cfg.model, data.input_shape, len(data.classes))
        started = time.perf_counter()
        fit(model, data, cfg)
        total += (time.perf_counter() - started) if seed >= 0 else 0.0
    return total / workers


SESSION = """
import sys, time
from sweepbook.sweep.driver import run_sweep
if __name__ == "__main__":
    for jobs in ("range(1000,1002)", "range(1002,1004)"):  # seeds no other sweep here ran
        called = time.time()
        result = run_sweep(sys.argv[1], [f"seed={jobs}"], workers=2, quiet=True)
        print(called, *(r.notebook for r in result.results))
"""


def second_sweep_start(env) -> float:
    """Two sweeps in one Python process, as in a notebook's kernel: seconds from the second
    `run_sweep` call until its first job started."""
    done = subprocess.run([sys.executable, "-c", SESSION, str(NOTEBOOK)], env=env, check=True,
                          capture_output=True, text=True)
    called, *notebooks = done.stdout.strip().splitlines()[-1].split()
    return min(start for start, _ in papermill_times(notebooks)) - float(called)


def report(jobs, workers, swept, span, looped, floor, papermill) -> None:
    fixed = swept - span
    print(f"{jobs} jobs, default config (CNN on digits, 20 epochs), --workers {workers}")
    print(f"  sweepbook sweep            : {swept:6.1f} s  = {fixed:4.1f} s fixed "
          f"+ {span / jobs:.2f} s/job")
    print(f"  loop in one process        : {looped:6.1f} s  ({looped / jobs:.2f} s/job with "
          f"its imports)")
    print(f"  training alone / workers   : {floor:6.1f} s  (the floor)")
    print(f"  sweep vs loop              : {looped / swept:5.2f}x  (goal >= "
          f"{1.5 if jobs <= 8 else 1.8}x)")
    print(f"  sweep vs floor             : {swept / floor:5.2f}x the floor")
    if papermill:
        seconds, count = papermill
        print(f"  papermill CLI loop         : {seconds / count:6.1f} s/job (over {count} jobs); "
              f"sweep vs papermill: {seconds / count * jobs / swept:5.1f}x  (goal >= 10x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--papermill-jobs", type=int, default=8,
                        help="jobs run with the papermill CLI (its rate is per job)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweepbook-bench-"))
    outputs = folder / "outputs"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["SWEEPBOOK_OVERRIDES"] = f"paths.output_dir={outputs} expname=bench"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient()"
                    ".search_experiments()"], env=env, check=True, capture_output=True)
    papermill = None
    if args.papermill_jobs:
        (folder / "cli").mkdir()
        papermill = (papermill_loop(args.papermill_jobs, folder / "cli", env),
                     args.papermill_jobs)
    for jobs in args.jobs:
        swept, span = sweep(jobs, args.workers, env, outputs)
        looped = loop(jobs, env)
        floor = training_floor(jobs, args.workers)
        report(jobs, args.workers, swept, span, looped, floor, papermill)
    print(f"second sweep in one process (a notebook's kernel): its first job started "
          f"{second_sweep_start(env):.2f} s after run_sweep was called  (goal < 1 s)")


if __name__ == "__main__":
    main()
