"""The `sweepbook` command line."""
import argparse
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from sweepbook.config import ConfigError, compose, overrides_from_env

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
