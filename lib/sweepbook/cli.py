"""The `sweepbook` command line."""
import argparse
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from sweepbook.config import ConfigError, compose, overrides_from_env
from sweepbook.workers import ENGINES

EXIT_BAD_INPUT = 2


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"sweepbook: error: {message}", file=sys.stderr)
    return code


def _print_run_summary(execution) -> None:
    run = execution.run
    print(f"executed notebook: {execution.notebook}")
    if run is None:
        print("no MLflow run was recorded")
        return
    print(f"run id: {run.info.run_id} ({run.info.status})")
    if "test_acc" in run.data.metrics:
        print(f"test accuracy: {run.data.metrics['test_acc']:.4f}")
    print("open it in the MLflow UI: make ui  (or: sweepbook ui)")


def cmd_run(args) -> int:
    from sweepbook.execute import run_notebook

    if not Path(args.notebook).is_file():
        return _fail(f"notebook {args.notebook!r} not found")
    try:
        cfg = compose(args.overrides + overrides_from_env())  # what the notebook will compose
    except ConfigError as error:
        return _fail(f"invalid overrides {args.overrides}:\n{error}")
    execution = run_notebook(Path(args.notebook), cfg, args.overrides, args.output,
                             progress=not args.quiet)
    _print_run_summary(execution)
    if execution.error is not None:
        return _fail(f"the notebook failed:\n{execution.error}", code=1)
    return 0


def _print_sweep_summary(result) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_colwidth", None,
                           "display.width", 250):
        print(result.table().drop(columns=["run_id"]).to_string())
    statuses = ("FINISHED", "FAILED", "KILLED", "SKIPPED", "NOT STARTED")
    counts = ", ".join(f"{result.count(s)} {s.lower()}" for s in statuses if result.count(s))
    print(f"sweep {result.sweep_id}: {counts}; parent run {result.parent_run_id}")
    if not result.ok:
        print(f"resume it with: sweepbook sweep --resume {result.sweep_id}")
    print("open it in the MLflow UI: make ui  (or: sweepbook ui)")


def cmd_sweep(args) -> int:
    from sweepbook.jobs import SweepDefinitionError
    from sweepbook.sweeps import run_sweep

    if not args.resume and not args.notebook:
        return _fail("give a notebook to sweep, or --resume SWEEP_ID")
    try:
        result = run_sweep(args.notebook, args.overrides, sweep_file=args.sweep_file,
                           workers=args.workers, engine=args.engine, timeout=args.timeout,
                           resume=args.resume, metric=args.metric, quiet=args.quiet)
    except SweepDefinitionError as error:
        return _fail(str(error))
    _print_sweep_summary(result)
    if result.interrupted:
        return 130
    return 0 if result.ok else 1


def ui_command(uri: str, host: str, port: int) -> List[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]


def cmd_ui(args) -> int:
    try:
        cfg = compose(args.overrides)
    except ConfigError as error:
        return _fail(str(error))
    print(f"MLflow UI for {cfg.tracking.uri} at http://{args.host}:{args.port} (Ctrl-C stops it)")
    try:
        return subprocess.call(ui_command(cfg.tracking.uri, args.host, args.port))
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweepbook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook with papermill, tracked in MLflow")
    run.add_argument("notebook", help="e.g. notebooks/train.ipynb")
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp")
    run.add_argument("--output", type=Path, help="where to write the executed notebook")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    sweep = commands.add_parser(
        "sweep", help="run every combination of Hydra sweep overrides as tracked notebook runs")
    sweep.add_argument("notebook", nargs="?", help="e.g. notebooks/train.ipynb")
    sweep.add_argument("overrides", nargs="*", help="e.g. model=cnn,mlp optimizer.lr=1e-3,1e-2")
    sweep.add_argument("--sweep-file", help="YAML with `params: {key: values}` (or a name in "
                                            "conf/sweep/); command-line overrides win")
    sweep.add_argument("--workers", type=int, help="jobs at once (default: cores, at most 4)")
    sweep.add_argument("--engine", choices=ENGINES, default="fork",
                       help="fork: warm forked processes (fast); kernel: a Jupyter kernel per job")
    sweep.add_argument("--timeout", type=float, help="seconds a job may take before it is stopped")
    sweep.add_argument("--resume", metavar="SWEEP_ID", help="run what a sweep has not finished")
    sweep.add_argument("--metric", default="test_acc", help="metric shown in the summary")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=cmd_sweep)
    ui = commands.add_parser("ui", help="start the MLflow UI on the configured store")
    ui.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. tracking=server")
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
