"""Hyperparameter search over a notebook with Optuna: each trial a sweep job, run by the same
executors and recorded the same way, under one parent run `tune-<study>`.

    result = run_tune("notebooks/train.ipynb",
                      ["optimizer.lr=tag(log,interval(1e-4,1e-1))", "model=choice(cnn,mlp)"],
                      trials=12, workers=2)
    result.table(); result.best

The space is Hydra's override grammar (space.py); every choice and both bounds of every range
compose before any trial runs. The study lives in its own database beside the store
(tracking/trial.py), is named from the notebook and the search, and is seeded: the same
command resumes it (study.py repairs what a killed driver left) and adds trials up to
`trials` in total. A trial's notebook reports its per-step metric to the trial through its
tracked run, and its pruner can stop it there (TrialPruned): the run ends KILLED, tagged
pruned, counted as pruned, never as failed, never the best.
"""
import dataclasses
import re
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Tuple

from sweepbook import notebook as notebooks
from sweepbook.executors import make_executor
from sweepbook.executors.settings import split_overrides
from sweepbook.params import redact_uri
from sweepbook.sweep import plan as planning
from sweepbook.sweep import space as spaces
from sweepbook.sweep.driver import (close_record, execute_jobs, Launch, one_driver, open_record,
                                    output_folder, StopSignals, check_limits)
from sweepbook.sweep.plan import SweepDefinitionError
from sweepbook.sweep.progress import progress
from sweepbook.sweep.results import BestTrial, TuneResult
from sweepbook.sweep.sources import StudySource
from sweepbook.sweep.space import SearchSettings, SearchSpace
from sweepbook.tracking import secrets
from sweepbook.tracking.record import (SEARCH_STORAGE_PARAM, SWEEP_NOTEBOOK_PARAM,
                                       SWEEP_OVERRIDES_PARAM, direction_for)
from sweepbook.tracking.trial import TrialLink, study_storage

DEFAULTS = SearchSettings(trials=20, metric="val_acc", sampler="tpe", pruner="median", seed=0)
STUDY_NAME = re.compile(r"[\w.-]{1,100}")


def _settings(given: SearchSettings, search: Sequence[str],
              search_file: Optional[str]) -> Tuple[SearchSettings, list]:
    """The settings given over the search file's over DEFAULTS; the direction, when none is
    given, from the metric's name."""
    settings, overrides = spaces.settle(given, search, search_file)
    filled = {f.name: getattr(settings, f.name) if getattr(settings, f.name) is not None
              else getattr(DEFAULTS, f.name) for f in dataclasses.fields(SearchSettings)}
    if not filled["metric"].strip():
        raise SweepDefinitionError("metric='': name the metric the notebook logs every epoch, "
                                   "e.g. --metric val_acc")
    filled["direction"] = filled["direction"] or direction_for(filled["metric"])
    return SearchSettings(**filled), overrides


def _study_name(given: Optional[str], notebook: Path, overrides: Sequence[str],
                corners: Sequence[planning.Job]) -> str:
    from sweepbook.sweep.study import study_name

    if given is not None and not STUDY_NAME.fullmatch(given):
        raise SweepDefinitionError(f"study={given!r}: give 1 to 100 letters, digits, '_', '.' "
                                   f"or '-'")
    return given or study_name(str(notebook), overrides, [j.config_hash for j in corners])


def _trials(settings: SearchSettings, searched: SearchSpace) -> int:
    """The trials asked for; a grid is capped at its size (it has no more points)."""
    if settings.sampler != "grid":
        return settings.trials
    size = searched.grid_size()
    if size < settings.trials:
        print(f"the grid has {size} points: {size} trials, not {settings.trials}",
              file=sys.stderr)
    return min(size, settings.trials)


def _best(study, result: TuneResult) -> Optional[BestTrial]:
    from sweepbook.sweep.study import best_trial

    best = best_trial(study)
    if best is None:
        return None
    runs = {r.index: r.run_id for r in result.results}
    return BestTrial(best.number, best.value, dict(best.params), runs.get(best.number))


def _finish(recorder, study, source: Optional[StudySource], result: TuneResult) -> None:
    """Trials asked for and never told (the loop broke) told interrupted; the best trial, the
    figures on the parent run, then the parent's end (driver.close_record); figures that
    cannot be made or logged are reported, never hide the summary."""
    from sweepbook.sweep.study import write_figures

    try:
        if source is not None:
            source.abandon("the search stopped before this trial's result was told")
        result.best = _best(study, result)
        with tempfile.TemporaryDirectory(prefix="sweepbook-tune-") as folder:
            write_figures(study, Path(folder), result.metric)
            recorder.log_figures(Path(folder))
    except Exception as error:
        print(f"sweepbook: warning: the search's figures were not logged "
              f"({type(error).__name__}: {error})", file=sys.stderr)
    close_record(recorder, result)


def run_tune(notebook: str, search: Sequence[str] = (), *, trials: Optional[int] = None,
             workers: Optional[int] = None, metric: Optional[str] = None,
             direction: Optional[str] = None, sampler: Optional[str] = None,
             pruner: Optional[str] = None, study: Optional[str] = None,
             seed: Optional[int] = None, search_file: Optional[str] = None,
             engine: Optional[str] = None, timeout: Optional[float] = None,
             executor: str = "local", quiet: bool = False) -> TuneResult:
    """Search `search` (Hydra overrides) over `notebook`'s config on `executor` (local or ray,
    its settings in `executor.KEY=VALUE` overrides); see the module docstring."""
    from sweepbook.sweep import study as studies

    check_limits(workers, timeout)
    search, executor_overrides = split_overrides(search)
    runner = make_executor(executor, executor_overrides, workers=workers, engine=engine,
                           timeout=timeout)
    given = SearchSettings(trials=trials, metric=metric, direction=direction, sampler=sampler,
                           pruner=pruner, seed=seed)
    settings, overrides = _settings(given, search, search_file)
    searched = spaces.parse(overrides)
    trials = _trials(settings, searched)
    with StopSignals() as stop, runner as executor:
        corners = searched.corners()
        executor.warm_up(notebook, corners[0])
        found = notebooks.inspect(notebook)
        if study is not None:
            _study_name(study, found.path, overrides, [])  # a bad name: refused before any work
        print(f"search of {trials} trials over {', '.join(searched.distributions)}: "
              f"validating...", file=sys.stderr, flush=True)
        executor.prepare(str(found.path), found.config_name, corners[0])
        validated = planning.validate(corners, found, "corners of the search")
        first = validated[0]  # every choice and bound of the space composes
        name = _study_name(study, found.path, overrides, validated)
        executor.check_store(first.tracking_uri)
        executor.use_device(first.device)
        storage = study_storage(first.tracking_uri)
        output_dir = output_folder(first, name)
        with one_driver(first, name):
            stop.defer()  # from here on, a signal ends the record properly
            definition, secrets_file = secrets.hide_in_definition(
                {"notebook": str(found.path), "config_name": found.config_name,
                 "overrides": list(overrides), "jobs": [{"overrides": searched.fixed}],
                 "search": dataclasses.asdict(settings)}, first.tracking_uri, name)
            from sweepbook.tracking.locks import first_study_use

            with first_study_use(first.tracking_uri, first.output_dir):
                optuna_study = studies.open_study(storage, name, settings.metric,
                                                  settings.direction, settings.pruner)
            studies.repair(optuna_study)
            optuna_study.sampler = studies.make_sampler(  # resumed: never the same draws again
                settings.sampler, (settings.seed + len(optuna_study.trials)) % 2 ** 32,
                searched)
            from sweepbook.sweep.recorder import TuneRecorder  # MLflow: slow to import

            recorder = open_record(TuneRecorder, first, name, definition, settings.metric, {
                SWEEP_NOTEBOOK_PARAM: definition["notebook"],
                SWEEP_OVERRIDES_PARAM: " ".join(definition["overrides"])[:6000],
                SEARCH_STORAGE_PARAM: redact_uri(storage)})
            executor.store_ready(first.tracking_uri)
            result = TuneResult(name, recorder.parent_run_id, settings.metric,
                                tracking_uri=first.tracking_uri, study=name,
                                storage=redact_uri(storage))
            source = None
            try:
                recorder.set_settings({"metric": settings.metric,
                                       "direction": settings.direction, "trials": trials,
                                       "sampler": settings.sampler, "pruner": settings.pruner,
                                       "seed": settings.seed, "workers": executor.workers})
                result.results = recorder.earlier_trials(studies.counted(optuna_study))
                launch = Launch(str(found.path), output_dir, executor.threads_per_job,
                                first.tracking_uri, recorder.experiment_id, secrets_file)
                source = StudySource(
                    optuna_study, searched, trials, settings.metric,
                    planning.Validator(found, first).job,
                    link=lambda trial: TrialLink(storage, name,
                                                 studies.trial_id(optuna_study, trial),
                                                 trial.number, settings.metric,
                                                 settings.pruner),
                    told=lambda job, job_result, trial: recorder.told(
                        job_result, trial, studies.best_trial(optuna_study)))
                shown = progress(f"search {name}", trials, result.results, settings.metric,
                                 settings.direction, quiet)
                execute_jobs(recorder, launch, executor, source, result, stop, shown)
            finally:
                _finish(recorder, optuna_study, source, result)
            if result.ok:
                secrets.forget(secrets_file)
    return result
