"""Validating a sweep: one Hydra compose per job against one per distinct set of group choices.

    .venv/bin/python bench/validate_speed.py [--seeds 100]

Expands `model=cnn,mlp optimizer=adam,sgd seed=range(0,SEEDS)` for notebooks/train.ipynb and
validates every job twice, in one process, side by side: composing each job on its own (what
validation did before) and with sweep.plan.validate (each distinct set of group choices
composed once, the values applied by Hydra's own code). Both must give the same config hash
for every job before any time counts. Prints seconds per job and the ratio.
"""
import argparse
import time
from pathlib import Path

from sweepbook.notebook import inspect
from sweepbook.sweep import plan
from sweepbook.tracking.record import config_hash

TRAIN = Path(__file__).resolve().parents[1] / "notebooks" / "train.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    args = parser.parse_args()
    notebook = inspect(TRAIN)
    combinations = plan.combinations(["model=cnn,mlp", "optimizer=adam,sgd",
                                      f"seed=range(0,{args.seeds})"])
    notebook.compose(combinations[0])  # first-use costs (imports, resolvers) paid by neither

    started = time.perf_counter()
    one_by_one = [config_hash(notebook.compose(overrides)) for overrides in combinations]
    per_job = time.perf_counter() - started

    started = time.perf_counter()
    jobs = plan.validate(combinations, notebook)
    grouped = time.perf_counter() - started

    assert [job.config_hash for job in jobs] == one_by_one, "the two paths disagree"
    count = len(combinations)
    print(f"{count} jobs, 4 distinct sets of group choices")
    print(f"compose per job:           {per_job:7.2f} s  ({1000 * per_job / count:5.1f} ms a job)")
    print(f"plan.validate (grouped):   {grouped:7.2f} s  ({1000 * grouped / count:5.1f} ms a job)")
    print(f"speed-up: {per_job / grouped:.1f}x")


if __name__ == "__main__":
    main()
