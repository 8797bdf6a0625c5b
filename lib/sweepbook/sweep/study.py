"""A search's Optuna study, from its driver's side: its name, its sampler, and the repairs a
stopped or killed driver leaves to the next command.

A trial stopped with its search (Ctrl-C, SIGTERM, a killed driver) is told FAILED, marked
interrupted, and its params queued again (enqueue_trial): the next command runs the same
config. Interrupted trials do not count towards `--trials`; every other ended trial does
(COMPLETE, PRUNED, or FAILED: a config that fails fails again).
"""
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from sweepbook.params import redact_uri
from sweepbook.sweep.plan import SweepDefinitionError
from sweepbook.tracking.location import StoreError
from sweepbook.tracking.record import SEARCH_FIGURES
from sweepbook.tracking.trial import make_pruner, open_storage

METRIC_ATTR, DIRECTION_ATTR = "sweepbook.metric", "sweepbook.direction"  # the study's
REASON_ATTR = "sweepbook.reason"  # why a trial failed
INTERRUPTED_ATTR = "sweepbook.interrupted"  # a trial stopped with its search: run again
REQUEUE_ATTR = "sweepbook.requeue_of"  # a queued trial: the number of the one it runs again
COUNTED_FROM_ATTR = "sweepbook.counted_from"  # on the study: trials before this number were
#                                              for a metric since corrected, and do not count
OPTUNA_DIRECTIONS = {"max": "maximize", "min": "minimize"}
SAMPLER_NAMES = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
                 "grid": "GridSampler"}


def study_name(notebook: str, search: Sequence[str], configs: Sequence[str] = ()) -> str:
    """Same notebook, same search and same configs (the hashes of the space's corners, which
    change with conf/), same study: running the command again resumes it."""
    identity = json.dumps([str(Path(notebook).resolve()), sorted(search), sorted(configs)])
    return f"{Path(notebook).stem}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


@contextlib.contextmanager
def quiet_optuna(level: str = "WARNING") -> Iterator[None]:
    """Optuna's lines below `level` ("A new study created ...") off, and back after."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(getattr(optuna.logging, level))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def make_sampler(name: str, seed: int, space):
    """The sampler called `name`, seeded. TPE's constant liar keeps parallel workers from
    sampling next to each other's running trials."""
    import optuna

    samplers = optuna.samplers
    if name == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "cmaes":  # categorical keys are sampled independently: said once, not per trial
        return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "grid":
        return _grid_sampler(space.grid(), seed)
    raise ValueError(f"sampler {name!r}: valid are {', '.join(SAMPLER_NAMES)}")


def _grid_sampler(grid, seed: int):
    """Optuna's grid sampler, except that it does not stop the study when the grid is used up:
    that works only inside study.optimize, and raises from study.tell. The search asks for no
    more trials than the grid has points (tune.py)."""
    from optuna.samplers import GridSampler

    class Grid(GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return Grid(grid, seed=seed)


def open_study(storage: str, name: str, metric: str, direction: str, pruner: str):
    """The study `name` (made, or loaded to resume it); one made for another metric or
    direction is refused, naming what it optimizes."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with quiet_optuna():
            study = optuna.create_study(storage=open_storage(storage), study_name=name,
                                        direction=OPTUNA_DIRECTIONS[direction],
                                        pruner=make_pruner(pruner), load_if_exists=True)
    except (SQLAlchemyError, OSError, ValueError) as error:
        raise StoreError(f"cannot open the study database {redact_uri(storage)}: "
                         f"{str(error).splitlines()[0]}") from None
    made_for = (study.user_attrs.get(METRIC_ATTR), study.user_attrs.get(DIRECTION_ATTR))
    valued = any(t.value is not None for t in study.get_trials(deepcopy=False))
    if made_for[0] != metric and made_for[1] in (None, direction) and not valued:
        study.set_user_attr(METRIC_ATTR, metric)  # new, or no trial has a value of the old
        study.set_user_attr(DIRECTION_ATTR, direction)  # metric yet (a misspelt --metric):
        study.set_user_attr(COUNTED_FROM_ATTR, len(study.trials))  # those trials do not count
    elif made_for != (metric, direction):
        raise SweepDefinitionError(
            f"study {name!r} optimizes {made_for[0]} ({made_for[1]}), not {metric} "
            f"({direction}): give --metric {made_for[0]} --direction {made_for[1]} to go on "
            f"with it, or --study NEW_NAME for a new study")
    return study


def _is_interrupted(trial) -> bool:
    return bool(trial.user_attrs.get(INTERRUPTED_ATTR))


def counted(study) -> List:
    """The trials that count towards --trials: ended, and not interrupted."""
    from optuna.trial import TrialState

    start = study.user_attrs.get(COUNTED_FROM_ATTR, 0)
    return [t for t in study.get_trials(deepcopy=False) if t.number >= start
            and t.state.is_finished() and not (t.state == TrialState.FAIL and _is_interrupted(t))]


def tell_failed(study, trial, reason: str):
    """Tell `trial` FAILED with `reason` (kept in its user attrs)."""
    from optuna.trial import TrialState

    study._storage.set_trial_user_attr(trial_id(study, trial), REASON_ATTR, reason[:1000])
    return study.tell(trial, state=TrialState.FAIL)


def interrupt(study, trial, reason: Optional[str]):
    """A trial stopped with its search: FAILED and interrupted, its params queued again, once
    (a driver killed between the two steps leaves it RUNNING with its copy queued)."""
    from optuna.trial import TrialState

    storage, identifier = study._storage, trial_id(study, trial)
    frozen = storage.get_trial(identifier)
    if frozen.state.is_finished():
        return frozen
    storage.set_trial_user_attr(identifier, INTERRUPTED_ATTR, True)
    storage.set_trial_user_attr(identifier, REASON_ATTR, (reason or "interrupted")[:1000])
    queued = {t.user_attrs.get(REQUEUE_ATTR) for t in study.get_trials(deepcopy=False)}
    if frozen.params and frozen.number not in queued:
        study.enqueue_trial(frozen.params, user_attrs={REQUEUE_ATTR: frozen.number})
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def trial_id(study, trial) -> int:
    """The storage's id of a trial given as an optuna Trial or by its number. (Optuna has no
    public way to set a user attr on a trial another process runs: its storage is used.)"""
    if hasattr(trial, "_trial_id"):
        return trial._trial_id
    return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial)


def repair(study) -> int:
    """Trials a killed driver left RUNNING: interrupted (queued again). How many there were."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        interrupt(study, trial.number, "its search's driver died")
    return len(stale)


def best_trial(study):
    """The best COMPLETE trial (pruned ones never are), or None before any."""
    try:
        return study.best_trial
    except ValueError:
        return None


def _intermediate_values(study, metric: str):
    """Each trial's reported values by step; a pruned trial ends in a red x where it stopped."""
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    figure, axes = plt.subplots(figsize=(7, 4))
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        if not steps:
            continue
        values = [trial.intermediate_values[s] for s in steps]
        pruned = trial.state == TrialState.PRUNED
        axes.plot(steps, values, color="tab:gray" if pruned else "tab:blue", alpha=0.7, lw=1)
        if pruned:
            axes.plot(steps[-1], values[-1], "x", color="tab:red", ms=8)
    axes.plot([], [], "x", color="tab:red", label="pruned here")
    axes.plot([], [], color="tab:blue", label="ran to the end")
    axes.set(xlabel="step", ylabel=metric, title="Intermediate values of every trial")
    axes.legend(loc="best")
    return figure


def write_figures(study, folder: Path, metric: str) -> List[Path]:
    """The optimization history, the parameter importances and the intermediate values, as
    PNG files in `folder`; a figure the study cannot have yet (importances need two
    finished trials) is left out."""
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    history, importances, intermediate = SEARCH_FIGURES
    makers = {history: lambda: optuna_plots.plot_optimization_history(study),
              importances: lambda: optuna_plots.plot_param_importances(study),
              intermediate: lambda: _intermediate_values(study, metric)}
    written = []
    for name, make in makers.items():  # Optuna's plots set a ggplot style: put back after
        with warnings.catch_warnings(), quiet_optuna("ERROR"), plt.rc_context():
            warnings.simplefilter("ignore")  # Optuna's matplotlib plots are "experimental"
            try:
                drawn = make()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        figure = drawn if hasattr(drawn, "savefig") else drawn.figure
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        written.append(folder / name)
    return written
