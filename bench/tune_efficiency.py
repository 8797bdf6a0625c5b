"""Search efficiency: TPE with the median pruner against random search and against a grid.

Random search runs without pruning over the same space and number of trials as TPE; the grid is
the full grid of a discretized version of the space; all side by side in one run.

    .venv/bin/python bench/tune_efficiency.py [--seeds 3] [--trials N] [--epochs 8]
                                              [--grid-lrs 4] [--workers 2] [--quick]

On the default notebook (notebooks/train.ipynb: digits), after an untimed 2-trial warm-up,
each seed runs the three searches one after another (in a rotating order, so machine drift and
other load hit all alike), each with `run_tune` on its own temporary store. The space:
optimizer.lr log-uniform in [1e-4, 1e-1], model in {cnn, mlp}, training.batch_size in
{32, 64, 128}, training.epochs fixed; the grid takes GRID_LRS learning rates at the centres of
equal log-spaced bins, so its trial count is its size (the default trial count of the other
two). Seed s seeds both the sampler and the training.
Figures: the best val_acc (finished trials), job-seconds (each trial's process time, what a
pruned trial saves), job-seconds until the running best, in completion order, is within 0.5% of
that search's final best ("to 0.5%") and of the best any search found on the seed ("to target"),
the share pruned, and the epochs all trials trained (training work, whatever else loads the
machine; job-seconds also count each trial's start-up and end: test, model logged). Goal:
TPE+median needs at least 40% fewer job-seconds than random at an equal or better best value.
The table is also written as JSON (--json).
"""
import argparse
import contextlib
import io
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sweepbook.env import patched_environ
from sweepbook.sweep.tune import run_tune

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "train.ipynb"
METRIC = "val_acc"
WITHIN = 0.005  # "within 0.5% of the final best", relative
GOAL = 0.6  # TPE+median job-seconds / random job-seconds, at an equal or better best
LR_BOUNDS = (1e-4, 1e-1)
MODELS, BATCH_SIZES = ("cnn", "mlp"), (32, 64, 128)
SEARCHES = ("tpe+median", "random", "grid")
SEARCHED = ("optimizer.lr", "model", "training.batch_size")  # kept per trial in the JSON


def grid_lrs(count: int) -> list:
    """`count` learning rates at the centres of equal bins of [LR_BOUNDS] on a log scale."""
    low, high = (math.log10(bound) for bound in LR_BOUNDS)
    width = (high - low) / count
    return [float(f"{10 ** (low + width * (i + 0.5)):.2g}") for i in range(count)]


def choice(values) -> str:
    return f"choice({','.join(map(str, values))})"


def spaces(lrs: list, epochs: int, seed: int) -> dict:
    rest = [f"model={choice(MODELS)}", f"training.batch_size={choice(BATCH_SIZES)}",
            f"training.epochs={epochs}", f"seed={seed}", "training.progress=false",
            "expname=bench"]
    searched = [f"optimizer.lr=tag(log,interval({LR_BOUNDS[0]},{LR_BOUNDS[1]}))"] + rest
    discrete = [f"optimizer.lr={choice(lrs)}"] + rest
    return {"tpe+median": (searched, "tpe", "median"), "random": (searched, "random", "none"),
            "grid": (discrete, "grid", "none")}


def from_runs(result) -> dict:
    """Trial number -> its run's end time (ms), epochs trained and searched values, from the
    store: the order trials completed, and the work they did whatever the machine's load."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    runs = {r.index: client.get_run(r.run_id) for r in result.results if r.run_id}
    return {index: {"ended": run.info.end_time,
                    "epochs": len(client.get_metric_history(run.info.run_id, METRIC)),
                    **{key: run.data.params.get(key) for key in SEARCHED}}
            for index, run in runs.items()}


def seconds_to(rows: list, target: float):
    """Job-seconds spent, in completion order, until a finished trial is within WITHIN of
    `target`; None if none is."""
    spent = 0.0
    for row in rows:
        spent += row["seconds"] or 0.0
        if row["status"] == "FINISHED" and row[METRIC] is not None \
                and row[METRIC] >= target * (1 - WITHIN):
            return spent
    return None


@contextlib.contextmanager
def quiet():
    """MLflow's INFO lines in this process and the search's own stderr held back (shown if
    it raises)."""
    logger = logging.getLogger("mlflow")
    level, held = logger.level, io.StringIO()
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(held):
            yield
    except BaseException:
        print(held.getvalue())
        raise
    finally:
        logger.setLevel(level)


def search(name: str, overrides: list, sampler: str, pruner: str, trials: int, workers: int,
           seed: int, folder: Path) -> dict:
    """One search on its own store; its figures, and its rows in completion order."""
    store = folder / name
    store.mkdir()
    started = time.perf_counter()
    with quiet(), patched_environ({"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
                                   "MLFLOW_LOGGING_LEVEL": "WARNING"}):  # and the jobs'
        result = run_tune(str(NOTEBOOK), overrides + [f"paths.output_dir={store / 'outputs'}"],
                          trials=trials, workers=workers, metric=METRIC, sampler=sampler,
                          pruner=pruner, seed=seed, quiet=True)
        wall = time.perf_counter() - started
        if result.interrupted:  # Ctrl-C stops the bench, not only this search
            sys.exit(128 + result.stopped_by)
        runs = from_runs(result)
    ended = sorted(result.results, key=lambda r: (runs.get(r.index, {}).get("ended")
                                                  or math.inf, r.index))
    rows = [{"trial": r.index, "status": r.status, METRIC: r.metric, "seconds": r.seconds,
             "epochs": 0, **runs.get(r.index, {})} for r in ended]
    best = result.best.value if result.best else None
    return {"search": name, "seed": seed, "trials": len(rows), "best": best,
            "job_seconds": sum(row["seconds"] or 0.0 for row in rows),
            "job_epochs": sum(row["epochs"] for row in rows),
            "to_own": seconds_to(rows, best) if best is not None else None,
            "pruned": result.count("PRUNED") / len(rows), "failed": result.count("FAILED"),
            "wall": wall, "aborted": result.aborted, "trials_in_order": rows}


def mean(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def show(value, form: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}{form}}"


def print_table(figures: list, seeds: list) -> None:
    print(f"{'seed':>4} {'search':<11} {'trials':>6} {'best':>7} {'job-s':>7} {'to 0.5%':>8} "
          f"{'to target':>9} {'pruned':>6} {'epochs':>6} {'failed':>6} {'wall s':>6}")
    for seed in seeds + ["mean"]:
        for name in SEARCHES:
            rows = [f for f in figures if f["search"] == name and seed in ("mean", f["seed"])]
            row = {key: mean(f[key] for f in rows) for key in
                   ("trials", "best", "job_seconds", "to_own", "to_target", "pruned",
                    "job_epochs", "failed", "wall")}
            print(f"{seed:>4} {name:<11} {row['trials']:6.0f} {show(row['best'], '.4f', 7)} "
                  f"{row['job_seconds']:7.1f} {show(row['to_own'], '.1f', 8)} "
                  f"{show(row['to_target'], '.1f', 9)} {row['pruned']:6.0%} "
                  f"{row['job_epochs']:6.0f} {row['failed']:6.0f} {row['wall']:6.0f}")


def summary(figures: list) -> dict:
    """Means over seeds per search, and TPE+median against random (the goal's terms)."""
    means = {name: {key: mean(f[key] for f in figures if f["search"] == name)
                    for key in ("best", "job_seconds", "to_own", "to_target", "pruned",
                                "job_epochs")}
             for name in SEARCHES}
    tpe, rnd = means["tpe+median"], means["random"]
    ratio = tpe["job_seconds"] / rnd["job_seconds"]
    gap = tpe["best"] - rnd["best"]
    return {"means": means, "job_seconds_ratio": ratio, "best_gap": gap,
            "job_epochs_ratio": tpe["job_epochs"] / rnd["job_epochs"],
            "to_target_ratio": (tpe["to_target"] / rnd["to_target"]
                                if tpe["to_target"] and rnd["to_target"] else None),
            "goal_met": ratio <= GOAL and gap >= 0}


def print_summary(result: dict, figures: list) -> None:
    tpe = {f["seed"]: f for f in figures if f["search"] == "tpe+median"}
    rnd = {f["seed"]: f for f in figures if f["search"] == "random"}
    per_seed = ", ".join(f"{tpe[s]['job_seconds'] / rnd[s]['job_seconds']:.2f}" for s in tpe)
    bests = ", ".join(f"{tpe[s]['best'] - rnd[s]['best']:+.4f}" for s in tpe)
    print(f"TPE+median / random, job-seconds: {result['job_seconds_ratio']:.2f} (per seed "
          f"{per_seed}; goal <= {GOAL:.2f})")
    print(f"TPE+median - random, best {METRIC}: {result['best_gap']:+.4f} (per seed {bests}; "
          f"goal >= 0)")
    print(f"TPE+median / random, epochs trained: {result['job_epochs_ratio']:.2f} (training "
          f"work, whatever else loads the machine)")
    trials = [t for f in tpe.values() for t in f["trials_in_order"]]
    print(f"TPE+median: a pruned trial took "
          f"{show(mean(t['seconds'] for t in trials if t['status'] == 'PRUNED'), '.1f', 0)} "
          f"job-s on average, a finished one "
          f"{show(mean(t['seconds'] for t in trials if t['status'] == 'FINISHED'), '.1f', 0)}")
    if result["to_target_ratio"] is not None:
        print(f"TPE+median / random, job-seconds to the seed's target: "
              f"{result['to_target_ratio']:.2f}")
    verdict = "met" if result["goal_met"] else "not met"
    print(f"goal (>= 40% fewer job-seconds than random at an equal or better best): {verdict}")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, help="TPE's and random's (default: the grid's size)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--grid-lrs", type=int, default=4, help="learning rates in the grid")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "outputs" / "bench" /
                        "tune_efficiency.json")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 seed, 2 epochs, a 6-point grid")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.grid_lrs = 1, 2, 1
    return args


def main() -> None:
    args = options()
    lrs = grid_lrs(args.grid_lrs)
    grid_size = len(lrs) * len(MODELS) * len(BATCH_SIZES)
    trials = args.trials or grid_size
    seeds = list(range(args.seeds))
    print(f"{NOTEBOOK.name} (digits), {args.epochs} epochs a trial, --workers {args.workers}; "
          f"lr log-uniform in {LR_BOUNDS}, model {choice(MODELS)}, "
          f"batch_size {choice(BATCH_SIZES)}")
    print(f"tpe+median and random: {trials} trials; grid: its {grid_size} points "
          f"(lr in {lrs}); seeds {seeds}")
    figures = []
    with tempfile.TemporaryDirectory(prefix="sweepbook-bench-") as folder:
        overrides, sampler, pruner = spaces(lrs, 1, 0)["random"]  # first-use costs: untimed
        search("warm-up", overrides, sampler, pruner, 2, args.workers, 0, Path(folder))
        for seed in seeds:
            order = SEARCHES[seed % 3:] + SEARCHES[:seed % 3]  # rotated: drift hits all alike
            for name in order:
                overrides, sampler, pruner = spaces(lrs, args.epochs, seed)[name]
                count = grid_size if sampler == "grid" else trials
                path = Path(folder) / f"seed{seed}"
                path.mkdir(exist_ok=True)
                figures.append(search(name, overrides, sampler, pruner, count, args.workers,
                                      seed, path))
                aborted = figures[-1]["aborted"]
                print(f"  seed {seed} {name}: {figures[-1]['wall']:.0f} s"
                      + (f" (the search stopped: {aborted})" if aborted else ""), flush=True)
    for seed in seeds:  # one target per seed: the best any search found
        found = [f for f in figures if f["seed"] == seed]
        target = max(f["best"] for f in found if f["best"] is not None)
        for f in found:
            f["to_target"] = seconds_to(f["trials_in_order"], target)
    print_table(figures, seeds)
    result = summary(figures)
    print_summary(result, figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"options": {k: str(v) if isinstance(v, Path) else v
                                                 for k, v in vars(args).items()},
                                     "grid_lrs": lrs, "trials": trials, "grid_size": grid_size,
                                     "runs": figures, **result}, indent=2))
    print(f"written: {args.json}")


if __name__ == "__main__":
    main()
