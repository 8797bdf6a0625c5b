"""Tracking overhead: the default training loop untracked vs tracked, side by side in one process.

    .venv/bin/python bench/tracking_overhead.py [--repeats 7]

Each repeat trains the default model (conf/train.yaml) untracked and tracked with sweepbook's
buffered logger (writes included), back to back in alternating order so machine drift hits
both alike; the headline is the median of the per-repeat ratios. A few repeats also track with
one synchronous mlflow call per metric (what tutorials do). Uses a temporary SQLite store,
never the project's mlflow.db.
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import mlflow

from sweepbook.config import compose, composition
from sweepbook.data import load_dataset
from sweepbook.models import build_model
from sweepbook.tracking import start_run
from sweepbook.training import fit, seed_everything


def train(cfg, data, log=None) -> float:
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.input_shape, len(data.classes))
    started = time.perf_counter()
    fit(model, data, cfg, log=log)
    return time.perf_counter() - started


def untracked(cfg, data) -> float:
    return train(cfg, data)


OWN_TIME = []  # per buffered training: seconds spent in the logger's calls and its flush


def buffered(cfg, data) -> float:
    with start_run(cfg) as run:
        spent = [0.0]

        def log(metrics, step):
            started = time.perf_counter()
            run.log_metrics(metrics, step)
            spent[0] += time.perf_counter() - started
        seconds = train(cfg, data, log=log)
        started = time.perf_counter()
        run.metrics.flush()
        flushed = time.perf_counter() - started
        OWN_TIME.append(spent[0] + flushed)
        return seconds + flushed


def synchronous(cfg, data) -> float:
    with start_run(cfg):
        return train(cfg, data, log=lambda metrics, step: mlflow.log_metrics(metrics, step=step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sync-repeats", type=int, default=3, help="the slow naive variant")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sweepbook-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    cfg = compose(["training.progress=false", "expname=bench", f"paths.output_dir={folder}"])
    data = load_dataset(cfg.data, cfg.seed)
    untracked(cfg, data), buffered(cfg, data)  # warm-up: first-use costs of torch and the store
    times = {"untracked": [], "buffered": [], "synchronous": []}
    for repeat in range(args.repeats):
        pair = (untracked, buffered) if repeat % 2 == 0 else (buffered, untracked)
        for variant in pair:
            times[variant.__name__].append(variant(cfg, data))
        if repeat < args.sync_repeats:
            times["synchronous"].append(synchronous(cfg, data))
    base = statistics.median(times["untracked"])
    steps = len(data.train) // cfg.training.batch_size + 1
    choices = composition(cfg).choices
    print(f"default training: {choices['model']} on {choices['data']}, "
          f"{cfg.training.epochs} epochs x {steps} steps, train_loss logged every "
          f"{cfg.training.log_every_n_steps} steps; medians of {args.repeats} runs")
    for name, values in times.items():
        if not values:  # --sync-repeats 0
            continue
        median = statistics.median(values)
        print(f"  {name:<12} {median:6.3f} s   ratio to untracked {median / base:5.3f}")
    own = statistics.median(OWN_TIME[1:])  # the first is the warm-up's
    print(f"tracking's own time in a training (the logger's calls and its flush): "
          f"{own * 1000:.1f} ms, {1 + own / base:.3f} of untracked (less noisy than the "
          f"wall-time ratio below on a shared machine)")
    ratios = [b / u for b, u in zip(times["buffered"], times["untracked"])]
    print(f"tracked/untracked (buffered, the notebook's logger), median of per-repeat ratios: "
          f"{statistics.median(ratios):.3f}  (goal <= 1.03)")


if __name__ == "__main__":
    main()
