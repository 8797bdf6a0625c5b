"""The `sweepbook` command line."""
import argparse
import functools
import math
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from sweepbook.config import (DEFAULT_CONFIG, TELEMETRY_ENV, TRACKING_URI_ENV, ConfigError,
                              compose, default_store_uri)
from sweepbook.env import patched_environ, signal_handlers
from sweepbook.executors.settings import ENGINES, split_overrides
from sweepbook.params import redact_overrides, redact_uri
from sweepbook.sweep.plan import MAX_JOBS
from sweepbook.tracking.location import StoreError, check_store, sqlite_file
from sweepbook.tracking.record import COUNTED_STATUSES, DEFAULT_METRIC, NOT_STARTED, safe_name

EXIT_BAD_INPUT = 2
MLFLOW_LOG_LEVEL_ENV = "MLFLOW_LOGGING_LEVEL"  # read when mlflow is first imported
QUIET_URLS_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"sweepbook: error: {message}", file=sys.stderr)
    return code


def _print_run_summary(execution) -> None:
    run = execution.run
    print(f"executed notebook: {execution.notebook}")
    print(f"run id: {run.info.run_id} ({run.info.status})")
    for key in sorted(k for k in run.data.metrics if k.startswith("test_")):
        print(f"{key}: {run.data.metrics[key]:.4f}")
    print("open it in the MLflow UI: make ui  (or: sweepbook ui)")


def cmd_run(args) -> int:
    from sweepbook.executors.job import run_notebook
    from sweepbook.notebook import inspect

    try:
        notebook = inspect(args.notebook)
    except ConfigError as error:
        return _fail(str(error))
    try:
        cfg = notebook.compose(args.overrides)
    except ConfigError as error:
        return _fail(f"invalid overrides {redact_overrides(args.overrides)} for "
                     f"{args.notebook}:\n{error}")
    try:
        check_store(cfg.tracking.uri, cfg.expname)
        execution = run_notebook(notebook.path, cfg, args.overrides, args.output,
                                 progress=not args.quiet)
    except StoreError as error:  # a server's deleted experiment shows only when opened
        return _fail(str(error))
    _print_run_summary(execution)
    if execution.stopped_by is not None:
        return _fail(execution.error, code=128 + execution.stopped_by)
    if execution.error is not None:
        return _fail(f"the notebook failed:\n{execution.error}", code=1)
    return 0


def _print_rerun(outcomes, table) -> None:
    """Each rerun's new run and where its notebook came from, then the final metrics of both
    runs side by side."""
    import pandas as pd

    for outcome in outcomes:
        made = f"run {outcome.run.info.run_id} ({outcome.run.info.status})" if outcome.run \
            else "no run"
        print(f"rerun of {outcome.original.info.run_id}: {made}, from "
              f"{outcome.source.describe()}")
    shown = table.drop(columns=["run"]) if len(outcomes) == 1 else table
    with pd.option_context("display.max_rows", None, "display.width", 250,
                           "display.float_format", "{:.8g}".format):
        print(shown.to_string(index=False))


def cmd_rerun(args) -> int:
    """Exit 1 when a rerun failed, or with --check, when a final metric differs."""
    from sweepbook.sweep.rerun import RerunError, metrics_table, rerun

    try:
        store_cfg = compose(args.overrides, args.config_name, check_targets=False)
        outcomes = rerun(store_cfg, args.run_id, args.from_notebook, args.quiet)
    except (RerunError, ConfigError, StoreError) as error:
        return _fail(str(error))
    table = metrics_table(outcomes)
    try:
        _print_rerun(outcomes, table)
    except BrokenPipeError:  # `| head`: the exit code still tells
        pass
    for outcome in outcomes:
        for warning in outcome.warnings:
            print(f"sweepbook: warning: rerun of {outcome.original.info.run_id}: {warning}",
                  file=sys.stderr)
    failed = [outcome for outcome in outcomes if outcome.error]
    for outcome in failed:
        print(f"sweepbook: error: rerun of {outcome.original.info.run_id} failed:\n"
              f"{outcome.error}", file=sys.stderr)
    differ = sorted(set(table.loc[~table["same"], "metric"])) if args.check else []
    if differ:
        print(f"sweepbook: --check: final metrics differ: {', '.join(differ)}", file=sys.stderr)
    stopped = outcomes[-1].stopped_by
    return 128 + stopped if stopped is not None else (1 if failed or differ else 0)


def _print_sweep_summary(result, store: str = "") -> None:
    """The jobs, the counts, and the next steps; `store` prefixes commands that must read
    the sweep's store (see _store_prefix)."""
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_colwidth", None,
                           "display.width", 250):
        print(result.table().drop(columns=["run_id"]).to_string())
    statuses = (*COUNTED_STATUSES, NOT_STARTED)
    counts = ", ".join(f"{result.count(s)} {s.lower()}" for s in statuses if result.count(s))
    print(f"sweep {result.sweep_id}: {counts}; parent run {result.parent_run_id}")
    if result.aborted:
        print(f"the sweep stopped: {result.aborted}", file=sys.stderr)
    if not result.ok:
        print(f"resume it with: {store}sweepbook sweep --resume {result.sweep_id}")
    print(f"compare its runs: {store}sweepbook runs --sweep {result.sweep_id}  (or report, "
          "best, notebooks/compare.ipynb)")
    ui = f"{store}sweepbook ui" if store else "make ui  (or: sweepbook ui)"
    print(f"open it in the MLflow UI: {ui}")


def _check_resumable(sweep_id: str) -> None:
    """A resumed sweep's store (the default one) must exist and be healthy: never create it."""
    from sweepbook.sweep.plan import SweepDefinitionError

    uri = default_store_uri()
    database = sqlite_file(uri)
    if database and not database.is_file():
        raise SweepDefinitionError(f"no sweep {sweep_id!r} in {redact_uri(uri)}: there is no "
                                   f"store at {database}")
    check_store(uri)


def _store_prefix(uri: Optional[str]) -> str:
    """`MLFLOW_TRACKING_URI=... ` where a sweep's store is not the one a plain `sweepbook runs`
    reads (tracking=server, tracking.uri=...), so that the next steps printed read it."""
    try:
        default = default_store_uri()
    except ConfigError:
        return ""
    if uri is None or uri == default:
        return ""
    shown = redact_uri(uri)  # put the password back in yourself
    return f"{TRACKING_URI_ENV}={shlex.quote(shown)} "


def cmd_sweep(args) -> int:
    from sweepbook.sweep.driver import run_sweep

    if not args.resume and not args.notebook:
        return _fail("give a notebook to sweep, or --resume SWEEP_ID")
    job_overrides = split_overrides(args.overrides)[0]
    if args.resume and (args.notebook or job_overrides or args.sweep_file):
        given = " ".join([args.notebook or "", *job_overrides, args.sweep_file or ""]).strip()
        return _fail(f"--resume {args.resume} takes no notebook, overrides or --sweep-file "
                     f"(given: {redact_overrides(given.split())}): the sweep's record holds "
                     f"them; to resume a sweep of another store, set MLFLOW_TRACKING_URI")
    def sweep():
        if args.resume:
            _check_resumable(args.resume)
        return run_sweep(args.notebook, args.overrides, sweep_file=args.sweep_file,
                         workers=args.workers, engine=args.engine, timeout=args.timeout,
                         executor=args.executor, resume=args.resume, metric=args.metric,
                         max_jobs=args.max_jobs, quiet=args.quiet)

    return _drive(sweep, _print_sweep_summary)


def _drive(run, print_summary) -> int:
    """Run a sweep or a search; its exit code, and its summary printed (`| head`, or a pipe
    whose reader Ctrl-C stopped: the record is complete, and the exit code still tells)."""
    from sweepbook.sweep.driver import SweepRecordError, SweepStopped
    from sweepbook.sweep.plan import SweepDefinitionError

    try:
        result = run()
    except (SweepDefinitionError, ConfigError, StoreError) as error:
        return _fail(str(error))
    except SweepStopped as stopped:
        return _fail(f"{stopped} before any run was created", code=128 + stopped.signum)
    except SweepRecordError as error:
        return _fail(str(error), code=1)
    code = 128 + result.stopped_by if result.interrupted else (0 if result.ok else 1)
    try:
        print_summary(result, _store_prefix(result.tracking_uri))
    except BrokenPipeError:
        pass
    return code


def _print_tune_summary(result, store: str = "") -> None:
    """The trials, the best one, and the next steps."""
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_colwidth", None,
                           "display.width", 250):
        print(result.table().drop(columns=["run_id", "notebook"]).to_string())
    statuses = (*COUNTED_STATUSES, NOT_STARTED)
    counts = ", ".join(f"{result.count(s)} {s.lower()}" for s in statuses if result.count(s))
    print(f"search {result.study}: {counts}; parent run {result.parent_run_id}; "
          f"study in {result.storage}")
    if result.aborted:
        print(f"the search stopped: {result.aborted}", file=sys.stderr)
    if result.best is not None:
        print(f"best: trial {result.best.number}, {result.metric}={result.best.value:.4g}, "
              f"{result.best.params} (run {result.best.run_id})")
    if result.interrupted or result.aborted:
        print("go on with it: run the same command again (interrupted trials run again)")
    print(f"compare its trials: {store}sweepbook runs --sweep {result.study} --metric "
          f"{result.metric}  (or report, best --register NAME, notebooks/compare.ipynb)")


def cmd_tune(args) -> int:
    from sweepbook.sweep.tune import run_tune

    return _drive(lambda: run_tune(
        args.notebook, args.overrides, trials=args.trials, workers=args.workers,
        metric=args.metric, direction=args.direction, sampler=args.sampler, pruner=args.pruner,
        study=args.study, seed=args.seed, search_file=args.search_file, engine=args.engine,
        timeout=args.timeout, executor=args.executor, quiet=args.quiet), _print_tune_summary)


def _reports_user_errors(command):
    """Exit 2 with the message for a missing experiment, sweep, metric or a bad name."""
    @functools.wraps(command)
    def run(args) -> int:
        from sweepbook.compare import ComparisonError
        from sweepbook.compare.registry import RegistryError

        try:
            return command(args)
        except (ComparisonError, RegistryError, ConfigError, StoreError) as error:
            return _fail(str(error))
    return run


def _scope(args):
    """The store from the config (MLFLOW_TRACKING_URI wins), the runs from the options."""
    from sweepbook.compare import LATEST, scope_for

    cfg = compose(args.overrides, args.config_name, check_targets=False)
    check_store(cfg.tracking.uri)
    scope = scope_for(cfg, args.experiment, args.sweep)
    if args.metric is None:  # a search ranks by what it optimized
        args.metric = scope.metric or DEFAULT_METRIC
        args.direction = args.direction or (scope.direction if scope.metric else None)
    if args.sweep == LATEST:
        print(f"--sweep latest: {scope.title}, the newest of experiment "
              f"{args.experiment or cfg.expname}", file=sys.stderr)
    return cfg, scope


def _print_table(table) -> None:
    import pandas as pd

    with pd.option_context("display.max_rows", None, "display.max_colwidth", 60,
                           "display.width", 250, "display.float_format", "{:.4g}".format):
        print(table.to_string())


@_reports_user_errors
def cmd_runs(args) -> int:
    from sweepbook.compare import direction_for, load_runs, summary_table

    _, scope = _scope(args)
    runs = load_runs(scope)
    table = summary_table(runs, args.metric, args.direction, extra_metrics=["test_loss"])
    _print_table(table)
    direction = direction_for(args.metric, args.direction)
    print(f"{scope.title}: {len(runs)} runs in {redact_uri(scope.tracking_uri)}, "
          f"best first by {args.metric} ({direction})")
    return 0


def _promote(scope, best, args):
    from sweepbook.compare.registry import promote

    value = best[f"metrics.{args.metric}"]
    tags = {"metric": args.metric, args.metric: f"{value:.6g}", "compared": scope.title}
    return promote(scope.tracking_uri, best["run_id"], args.register, args.alias, tags,
                   description=f"best of {scope.title} by {args.metric} = {value:.4f}")


@_reports_user_errors
def cmd_best(args) -> int:
    from sweepbook.compare import best_run, load_runs, swept_params
    from sweepbook.compare.registry import check_names

    if args.register:
        check_names(args.register, args.alias)
    _, scope = _scope(args)
    runs = load_runs(scope)
    best = best_run(runs, args.metric, args.direction)
    print(f"best of {scope.title} by {args.metric}: {best['run_name']} "
          f"(run {best['run_id']}), {args.metric} = {best[f'metrics.{args.metric}']:.4f}")
    for column in swept_params(runs):
        if isinstance(best[column], str):  # NaN: a key only other options have (model.hidden)
            print(f"  {column[len('params.'):]} = {best[column]}")
    if args.register:
        promotion = _promote(scope, best, args)
        print(f"registered {promotion.name} version {promotion.version}, alias "
              f"{promotion.alias!r} points at it")
        print(f"load it with: mlflow.set_tracking_uri({redact_uri(scope.tracking_uri)!r}); "
              f"mlflow.pytorch.load_model({promotion.uri!r})")
    return 0


@_reports_user_errors
def cmd_report(args) -> int:
    from sweepbook.compare.report import write_report

    cfg, scope = _scope(args)
    name = f"sweep-{scope.sweep_id}" if scope.sweep_id else safe_name(scope.title)
    output = args.output or Path(cfg.paths.output_dir) / "reports" / f"{name}.html"
    path = write_report(scope, args.metric, args.direction, output).resolve()
    print(f"report of {scope.title} written to {path}")
    print(f"open it in a browser: file://{path}")
    return 0


@_reports_user_errors
def cmd_diff(args) -> int:
    from sweepbook.compare import diff

    cfg = compose(args.overrides, args.config_name, check_targets=False)
    check_store(cfg.tracking.uri)
    print(diff(args.run_a, args.run_b, cfg.tracking.uri).text(), end="")
    return 0


def ui_command(uri: str, host: str, port: int) -> List[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port)]


def runs_page(experiment_id: str) -> str:
    """The UI's run table of an experiment (it opens on a GenAI overview otherwise)."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def _existing_experiment_id(uri: str, name: str) -> Optional[str]:
    from mlflow.tracking import MlflowClient

    if uri.startswith(("http:", "https:")):
        return None  # the UI of a server is that server's own page
    database = sqlite_file(uri)
    if database and not database.is_file():
        return None  # no store yet: don't create one just to look
    experiment = MlflowClient(uri).get_experiment_by_name(name)
    return experiment.experiment_id if experiment else None


def cmd_ui(args) -> int:
    try:
        cfg = compose(args.overrides, args.config_name, check_targets=False)
        check_store(cfg.tracking.uri)
    except (ConfigError, StoreError) as error:
        return _fail(str(error))
    url = f"http://{args.host}:{args.port}"
    print(f"MLflow UI for {redact_uri(cfg.tracking.uri)} at {url} (Ctrl-C stops it)")
    experiment_id = _existing_experiment_id(cfg.tracking.uri, cfg.expname)
    if experiment_id:
        print(f"runs of experiment {cfg.expname}: {url}/{runs_page(experiment_id)}")
    sys.stdout.flush()
    return _serve(ui_command(cfg.tracking.uri, args.host, args.port))


def cmd_server(args) -> int:
    from sweepbook.tracking.server import ServerError, command

    if args.overrides:
        return _fail(f"sweepbook server {args.action} takes no arguments: {args.overrides}")
    try:
        return command(args.action, args.host, args.port)
    except (ServerError, ConfigError) as error:
        return _fail(str(error), code=1)


class _Stopped(Exception):
    """SIGTERM or SIGHUP reached this process; args[0] is the signal."""


def _raise_stopped(signum, _frame):
    raise _Stopped(signum)


def _serve(command: List[str]) -> int:
    """Run a server until it ends. It gets its own process group, so that Ctrl-C, SIGTERM or
    SIGHUP to this process stop it and any workers it started instead of leaving them serving;
    the previous signal handlers are put back."""
    server = subprocess.Popen(command, start_new_session=True)
    try:
        with signal_handlers(_raise_stopped, (signal.SIGTERM, signal.SIGHUP)):
            return server.wait()
    except KeyboardInterrupt:  # the server, in its own session, did not get the Ctrl-C
        code = 0
    except _Stopped as stopped:
        code = 128 + stopped.args[0]
    _stop_group(server)
    return code


def _stop_group(process: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM to the process's group; SIGKILL if its leader is still there after `grace_s`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
            process.wait(grace_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. tracking=server")
    parser.add_argument("--config-name", default=DEFAULT_CONFIG,
                        help="primary config whose tracking and expname to use "
                             f"(default: {DEFAULT_CONFIG})")


def _comparison_options(parser: argparse.ArgumentParser) -> None:
    _store_options(parser)
    parser.add_argument("--sweep", metavar="ID", help="only this sweep's runs ('latest': the "
                                                       "newest sweep of the experiment)")
    parser.add_argument("--experiment", help="experiment to read (default: the config's "
                                             "expname; with --sweep: any)")
    parser.add_argument("--metric", help=f"rank runs by this metric (default: the metric a "
                                         f"search optimized, else {DEFAULT_METRIC})")
    parser.add_argument("--direction",
                        help="max or min (default: min for losses and errors, else max)")


def _at_least_one(value: str) -> int:
    """--workers, --max-jobs: refused by argparse itself, before anything starts."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 1 or more")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return number


def _seed(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < 2 ** 32:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 0 to 2**32-1")
    return number


def _executor_options(parser: argparse.ArgumentParser) -> None:
    from sweepbook.schema import EXECUTOR_SETTINGS

    parser.add_argument("--executor", choices=list(EXECUTOR_SETTINGS), default="local",
                        help="where jobs run: local processes, or Ray tasks (conf/executor/; "
                             "set its keys as overrides: executor.address=auto)")
    parser.add_argument("--engine", choices=ENGINES,
                        help="local executor: fork (warm forked processes, fast, the default) "
                             "or kernel (a Jupyter kernel per job)")


def _tune_parser(commands) -> None:
    from sweepbook.sweep.space import SAMPLERS
    from sweepbook.tracking.record import DIRECTIONS
    from sweepbook.tracking.trial import PRUNERS

    tune = commands.add_parser(
        "tune", help="search hyperparameters with Optuna, each trial a tracked notebook run")
    tune.add_argument("notebook", help="e.g. notebooks/train.ipynb")
    tune.add_argument("overrides", nargs="*", metavar="SEARCH",
                      help="e.g. 'optimizer.lr=tag(log,interval(1e-4,1e-1))' model=choice(cnn,mlp)")
    tune.add_argument("--trials", type=_at_least_one,
                      help="trials in the study in total (default: 20); again with more adds more")
    tune.add_argument("--workers", type=_at_least_one,
                      help="trials at once (default: cores, at most 4)")
    tune.add_argument("--metric", help="what to optimize, logged by the notebook every epoch "
                                       "(default: val_acc)")
    tune.add_argument("--direction", choices=DIRECTIONS,
                      help="max or min (default: min for losses and errors, else max)")
    tune.add_argument("--sampler", choices=SAMPLERS, help="default: tpe")
    tune.add_argument("--pruner", choices=PRUNERS, help="default: median")
    tune.add_argument("--study", help="the study's name (default: from the notebook and the "
                                      "search, so the same command resumes it)")
    tune.add_argument("--seed", type=_seed, help="seeds the sampler (default: 0)")
    tune.add_argument("--search-file", help="YAML with `params:` and settings (or a name in "
                                            "conf/search/); the command line wins")
    tune.add_argument("--timeout", type=_seconds,
                      help="seconds a trial may take before it is stopped")
    _executor_options(tune)
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(func=cmd_tune)


def _server_parser(commands) -> None:
    server = commands.add_parser("server", help="this project's tracking server for a team or "
                                                "a cluster: PostgreSQL and mlflow server")
    actions = server.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start it (again: says it runs) and print its URI")
    start.add_argument("--host", default="127.0.0.1",
                       help="address both servers listen on (default 127.0.0.1; 0.0.0.0: all)")
    start.add_argument("--port", type=int, help="MLflow's port (default 5000, or a free one "
                                                "when taken; 0: any free one)")
    actions.add_parser("stop", help="end exactly the processes start started")
    actions.add_parser("status", help="what runs where; exit 0 running, 3 not")
    server.set_defaults(func=cmd_server, overrides=[], host="127.0.0.1", port=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweepbook", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="execute a notebook with papermill, tracked in MLflow")
    run.add_argument("notebook", help="e.g. notebooks/train.ipynb")
    run.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp")
    run.add_argument("--output", type=Path, help="where to write the executed notebook")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    rerun = commands.add_parser("rerun", help="execute a run again from its record (a sweep's "
                                              "parent: each child), metrics side by side")
    rerun.add_argument("run_id", metavar="RUN_ID", help="a run id (sweepbook runs lists them)")
    _store_options(rerun)
    rerun.add_argument("--check", action="store_true",
                       help="exit 1 when a final metric differs from the original's")
    rerun.add_argument("--from-notebook", action="store_true",
                       help="run the executed notebook logged on the run, not its commit")
    rerun.add_argument("--quiet", action="store_true", help="no progress bar")
    rerun.set_defaults(func=cmd_rerun)
    sweep = commands.add_parser(
        "sweep", help="run every combination of Hydra sweep overrides as tracked notebook runs")
    sweep.add_argument("notebook", nargs="?", help="e.g. notebooks/train.ipynb")
    sweep.add_argument("overrides", nargs="*", help="e.g. model=cnn,mlp optimizer.lr=1e-3,1e-2")
    sweep.add_argument("--sweep-file", help="YAML with `params: {key: values}` (or a name in "
                                            "conf/sweep/); command-line overrides win")
    sweep.add_argument("--workers", type=_at_least_one,
                       help="jobs at once (default: cores, at most 4)")
    sweep.add_argument("--timeout", type=_seconds,
                       help="seconds a job may take before it is stopped")
    _executor_options(sweep)
    sweep.add_argument("--max-jobs", type=_at_least_one, default=MAX_JOBS,
                       help=f"refuse sweeps of more jobs than this (default: {MAX_JOBS:,})")
    sweep.add_argument("--resume", metavar="SWEEP_ID", help="run what a sweep has not finished")
    sweep.add_argument("--metric", default=DEFAULT_METRIC, help="metric shown in the summary")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=cmd_sweep)
    _tune_parser(commands)
    runs = commands.add_parser("runs", help="the runs of an experiment or a sweep, best first")
    _comparison_options(runs)
    runs.set_defaults(func=cmd_runs)
    best = commands.add_parser("best", help="the best run; --register puts its model in the "
                                            "Model Registry")
    _comparison_options(best)
    best.add_argument("--register", metavar="NAME", help="register the model under this name")
    best.add_argument("--alias", default="champion", help="alias pointed at the new version")
    best.set_defaults(func=cmd_best)
    report = commands.add_parser("report", help="one self-contained HTML file comparing runs")
    _comparison_options(report)
    report.add_argument("--output", type=Path, help="the HTML file (default: "
                                                    "outputs/reports/sweep-<id>.html)")
    report.set_defaults(func=cmd_report)
    diff = commands.add_parser("diff", help="two runs side by side: params that differ, metrics, "
                                            "source, code cells, package versions")
    diff.add_argument("run_a", metavar="RUN_A", help="a run id (sweepbook runs lists them)")
    diff.add_argument("run_b", metavar="RUN_B", help="the run to compare it with")
    _store_options(diff)
    diff.set_defaults(func=cmd_diff)
    ui = commands.add_parser("ui", help="start the MLflow UI on the configured store")
    _store_options(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    _server_parser(commands)
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line, overrides also after options (`sweep nb.ipynb --sweep-file f seed=0`):
    argparse gives every positional its values at once, and leaves later ones over."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [word for word in extra if word.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *extra]
    return args


def _quiet_mlflow() -> Dict[str, Optional[str]]:
    """MLflow offline and without INFO lines (store migrations), in this process and the kernels
    it starts, unless the caller chose otherwise."""
    defaults = {TELEMETRY_ENV: "true", MLFLOW_LOG_LEVEL_ENV: "WARNING",
                QUIET_URLS_ENV: "true"}  # no "View run at ..." lines from a server's runs
    return {name: os.environ.get(name, value) for name, value in defaults.items()}


def _skip_iri_grammar() -> None:
    """jsonschema (imported with nbformat) compiles rfc3987_syntax's IRI grammar when that
    package is installed: about 2 s of every command, for string formats notebooks never use.
    Only in this command's own process (the fork engine's template does the same)."""
    sys.modules.setdefault("rfc3987_syntax", None)


def main(argv: Optional[List[str]] = None) -> int:
    if __name__ == "__main__" or argv is None:  # the command, not main() called in-process
        _skip_iri_grammar()
    with patched_environ(_quiet_mlflow()):  # put back after: main() also runs in-process
        args = parse_args(argv)
        code = args.func(args)
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # its reader is gone: say nothing more, keep the exit code
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
