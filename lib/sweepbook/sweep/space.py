"""A search space in Hydra's own override grammar, read as Hydra's Optuna sweeper reads it:

    optimizer.lr=tag(log,interval(1e-4,1e-1))   a float, sampled on a log scale
    training.batch_size=choice(32,64,128)        one of the values (also: 32,64,128)
    model=choice(cnn,mlp)                        one of a config group's options
    model.channels=range(8,33,8)                 8, 16, 24 or 32 (Hydra's range: stop excluded)
    training.epochs=5                            fixed: every trial gets it as it is

An interval whose bounds are both written as integers (`interval(8,64)`) is an integer one.
Search files (conf/search/<name>.yaml) hold the same under `params:`, with the search's
settings beside it (SearchSettings).
"""
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.types import Override, Transformer
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweepbook.config import config_dir
from sweepbook.params import redact_override, redact_overrides
from sweepbook.redaction import hide_secrets_in, is_secret_key
from sweepbook.sweep.plan import SweepDefinitionError, _parser, merge_overrides
from sweepbook.tracking.record import DIRECTIONS
from sweepbook.tracking.trial import PRUNERS

SAMPLERS = ("tpe", "random", "cmaes", "grid")
SEARCH_FOLDER = "search"  # conf/search/<name>.yaml
INTEGER = re.compile(r"[+-]?\d+")
INTERVAL_BOUNDS = re.compile(r"interval\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")


@dataclass
class SearchSettings:
    """A search file's settings (conf/search/<name>.yaml); the command line's win."""
    params: Dict[str, str] = field(default_factory=dict)  # config key: search, or a fixed value
    trials: Optional[int] = None  # trials in the study in total
    metric: Optional[str] = None  # the metric to optimize, logged by the notebook per step
    direction: Optional[str] = None  # max or min; none: from the metric's name
    sampler: Optional[str] = None  # tpe, random, cmaes or grid
    pruner: Optional[str] = None  # median, hyperband or none
    seed: Optional[int] = None  # seeds the sampler: the same command samples the same


@dataclass
class SearchSpace:
    distributions: Dict[str, Any]  # config key -> Optuna distribution
    fixed: List[str]  # overrides every trial gets as they are
    written: Dict[str, str]  # config key -> the search as written

    def overrides(self, params: Dict[str, Any]) -> List[str]:
        """A trial's overrides: the fixed ones, then its sampled values."""
        return self.fixed + [f"{key}={_as_override_value(value)}"
                             for key, value in params.items()]

    def corners(self) -> List[List[str]]:
        """Overrides that try every choice and both bounds of every range, one key at a time
        (the others at their first value): each must compose before any trial runs."""
        first = {key: _corners(d)[0] for key, d in self.distributions.items()}
        combinations = [self.overrides(first)]
        for key, distribution in self.distributions.items():
            for value in _corners(distribution)[1:]:
                combinations.append(self.overrides({**first, key: value}))
        return combinations

    def grid(self) -> Dict[str, List[Any]]:
        """Every value of every key, for the grid sampler; a continuous interval has none."""
        from optuna.distributions import CategoricalDistribution

        continuous = [key for key, d in self.distributions.items()
                      if not isinstance(d, CategoricalDistribution) and d.step is None]
        if continuous:
            raise SweepDefinitionError(
                f"the grid sampler needs choice() or range() values; "
                f"{', '.join(f'{k}={self.written[k]}' for k in continuous)} is an interval: "
                f"use choice() or range() for it, or another --sampler ({', '.join(SAMPLERS)})")
        return {key: _values(d) for key, d in self.distributions.items()}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size


def _as_override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[\w./:+-]+", text) else "'" + text.replace("'", "\\'") + "'"


def _values(distribution) -> List[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
    return [distribution.low + i * distribution.step for i in range(count)]


def _corners(distribution) -> List[Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]


def _interval(override: Override):
    from optuna.distributions import FloatDistribution, IntDistribution

    sweep = override.value()
    log = "log" in sweep.tags
    bounds = INTERVAL_BOUNDS.search(override.input_line)
    if bounds and all(INTEGER.fullmatch(b) for b in bounds.groups()):
        return IntDistribution(int(sweep.start), int(sweep.end), log=log)
    return FloatDistribution(float(sweep.start), float(sweep.end), log=log)


def _range(override: Override):
    from optuna.distributions import FloatDistribution, IntDistribution

    sweep = override.value()
    values = list(override.sweep_iterator())
    if sweep.shuffle or not values:
        return _choice(override)
    low, step = min(values[0], values[-1]), abs(sweep.step)  # range(5,0,-1): 1 to 5
    if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
        return IntDistribution(low, max(values[0], values[-1]), step=step)
    return FloatDistribution(float(low), float(low + step * (len(values) - 1)), step=float(step))


def _choice(override: Override):
    from optuna.distributions import CategoricalDistribution

    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    if not choices:
        raise ValueError("it has no values")
    if any(not isinstance(c, (str, int, float, bool)) for c in choices):
        raise ValueError("choices must be strings, numbers or booleans")
    if len(set(map(repr, choices))) < len(choices):
        raise ValueError("a value appears twice")
    return CategoricalDistribution(choices)


def _distribution(override: Override):
    if override.is_interval_sweep():
        return _interval(override)
    if override.is_range_sweep():
        return _range(override)
    return _choice(override)


VALID = ("interval(LOW,HIGH), tag(log,interval(LOW,HIGH)), choice(A,B,...), A,B,... or "
         "range(START,STOP,STEP)")


def parse(overrides: Sequence[str]) -> SearchSpace:
    """The search space of `overrides`; bad grammar, an empty or reversed range, a log scale
    reaching 0, or a secret searched over are refused, naming the override."""
    try:
        parsed = _parser().parse_overrides(list(overrides))
    except HydraException as error:
        message = hide_secrets_in(f"cannot parse the search {redact_overrides(list(overrides))}:"
                                  f"\n{error}\nvalid searches: {VALID}", overrides)
        raise SweepDefinitionError(message) from None
    distributions, fixed, written = {}, [], {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        if is_secret_key(key) or redact_override(override.input_line) != override.input_line:
            raise SweepDefinitionError(f"{key}: a secret cannot be searched over; give it one "
                                       f"value")
        try:
            distributions[key] = _distribution(override)
        except (ValueError, TypeError, HydraException) as error:
            raise SweepDefinitionError(f"{override.input_line}: {error}; valid searches: "
                                       f"{VALID}") from None
        written[key] = override.input_line.split("=", 1)[1]
    if not distributions:
        raise SweepDefinitionError(
            f"nothing to search over in {redact_overrides(list(overrides))}: give at least one "
            f"key a search, e.g. optimizer.lr=tag(log,interval(1e-4,1e-1)) or model=choice(cnn,mlp)")
    fixed = [o for o in fixed if o.split("=", 1)[0].lstrip("+~") not in distributions]
    return SearchSpace(distributions, fixed, written)


def _search_file(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    folder = config_dir() / SEARCH_FOLDER
    path = folder / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.yaml"))
        raise SweepDefinitionError(
            f"search file {name!r} not found; give a path or one of {available} (conf/search/)")
    return path


def read_search_file(name: str) -> SearchSettings:
    """A search file's settings, typed: a key it does not know or a wrong type is refused."""
    path = _search_file(name)
    try:
        loaded = OmegaConf.load(path)
        settings = OmegaConf.merge(OmegaConf.structured(SearchSettings), loaded)
        return SearchSettings(**OmegaConf.to_container(settings))
    except (OSError, UnicodeDecodeError, OmegaConfBaseException) as error:
        valid = ", ".join(f.name for f in fields(SearchSettings))
        raise SweepDefinitionError(f"search file {path}: {str(error).splitlines()[0]}; valid "
                                   f"keys: {valid}") from None


def settle(given: SearchSettings, overrides: Sequence[str],
           search_file: Optional[str]) -> Tuple[SearchSettings, List[str]]:
    """The search's settings and overrides: those given (the command line) over the search
    file's, each setting checked (a bad value is named with what is valid)."""
    base = read_search_file(search_file) if search_file else SearchSettings()
    merged = {f.name: getattr(given, f.name) if getattr(given, f.name) is not None
              else getattr(base, f.name) for f in fields(SearchSettings) if f.name != "params"}
    settings = SearchSettings(**merged)
    _check(settings)
    return settings, merge_overrides([f"{k}={v}" for k, v in base.params.items()], overrides)


def _check(settings: SearchSettings) -> None:
    for name, valid in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("direction", DIRECTIONS)):
        value = getattr(settings, name)
        if value is not None and value not in valid:
            raise SweepDefinitionError(f"{name}={value!r}: valid are {', '.join(valid)}")
    if settings.trials is not None and settings.trials < 1:
        raise SweepDefinitionError(f"trials={settings.trials}: give 1 or more")
    if settings.seed is not None and not 0 <= settings.seed < 2 ** 32:
        raise SweepDefinitionError(f"seed={settings.seed}: give 0 to 2**32-1")
