"""A sweep's plan: its definition expanded into jobs with Hydra's own grammar, and every job
composed against the notebook's primary config and validated before anything runs.

Hydra composes each distinct set of group choices (model=cnn, data=digits) once; each job's
values (optimizer.lr=1e-3, seed=4) are then applied to a copy by Hydra's own code, as its
compose does after building the defaults list, and checked as compose() checks them.
"""
import copy
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig

from sweepbook.config import (SECRETS_ENV, ConfigError, compose_yaml, composition, config_dir,
                              finish, importable_from, load_resolvers, overrides_from_env)
from sweepbook.notebook import Notebook
from sweepbook.params import redact_overrides
from sweepbook.redaction import hide_secrets_in, parser
from sweepbook.tracking.location import StoreError, artifact_root, check_store
from sweepbook.targets import target_problems
from sweepbook.tracking.record import config_hash, run_name

MAX_JOBS = 10_000  # a bigger sweep is refused unless its caller raises the limit (--max-jobs)


@dataclass
class Job:
    index: int
    overrides: List[str]  # this job's Hydra overrides, sweep values expanded
    name: str  # readable, from the overrides
    config_hash: str  # identifies the resolved config: equal hashes, equal runs
    expname: str
    tracking_uri: str
    artifact_root: Optional[str]  # where the experiment's artifacts go (None: server decides)
    output_dir: str  # paths.output_dir: executed notebooks go to <output_dir>/sweeps/<id>/
    device: str = "auto"  # training.device (auto when the config has no training section)
    environment: Dict[str, str] = field(default_factory=dict)  # this job's own (a trial's link)
    problem: Optional[str] = None  # why it cannot run (a search's trial that is invalid)


class SweepDefinitionError(ValueError):
    """A sweep that cannot run: bad grammar, unknown keys or options, wrong types."""


def read_sweep_file(path_or_name: str) -> List[str]:
    """Overrides from a sweep file: a path, or a name in conf/sweep/ (`params: {key: sweep}`)."""
    path = Path(path_or_name)
    if not path.is_file():
        path = config_dir() / "sweep" / f"{path_or_name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (config_dir() / "sweep").glob("*.yaml"))
        raise SweepDefinitionError(
            f"sweep file {path_or_name!r} not found; give a path or one of {available}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SweepDefinitionError(f"sweep file {path} is not valid YAML: {error}") from None
    params = loaded.get("params") if isinstance(loaded, dict) else None
    if not isinstance(params, dict):
        raise SweepDefinitionError(f"{path} needs a mapping `params:` of key: sweep values")
    return [f"{key}={value}" for key, value in params.items()]


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> List[str]:
    """`extra` replaces entries of `base` with the same key (command line beats sweep file)."""
    key = lambda override: override.split("=", 1)[0]
    replaced = {key(o) for o in extra}
    return [o for o in base if key(o) not in replaced] + list(extra)


def _loader() -> ConfigLoaderImpl:
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))


def _parser() -> OverridesParser:
    """A parser that knows the config tree, so glob() can list group options."""
    return OverridesParser.create(config_loader=_loader())


def check_size(count: int, max_jobs: int = MAX_JOBS, exact: bool = True) -> None:
    """Refuse a sweep of more jobs than `max_jobs` before validating them (minutes each 10,000)."""
    if count > max_jobs:
        size = f"{count:,}" if exact else f"more than {count - 1:,}"
        raise SweepDefinitionError(
            f"this sweep has {size} jobs, more than the limit of {max_jobs:,}; narrow the "
            f"sweep, or raise the limit with --max-jobs {count}")


def _job_count(parsed: List[Override], cap: int) -> Tuple[int, bool]:
    """How many jobs the overrides make, without making them (a product of millions of lists
    would fill the memory first); each sweep's values are counted up to `cap`. Returns the
    count and whether it is exact."""
    sizes = {}
    for override in parsed:  # as BasicSweeper: a later override of a key replaces the earlier
        if override.is_sweep_override() and override.is_discrete_sweep():
            values = itertools.islice(override.sweep_string_iterator(), cap)
            sizes[override.get_key_element()] = sum(1 for _ in values)
        else:
            sizes[override.get_key_element()] = 1
    count = math.prod(sizes.values())
    return (min(count, cap), False) if max(sizes.values(), default=1) >= cap else (count, True)


def expand(overrides: Sequence[str], max_jobs: Optional[int] = None) -> List[List[str]]:
    """Every combination of the sweep overrides, as Hydra's BasicSweeper would launch them;
    more than `max_jobs` are refused before any is made."""
    try:
        parsed = _parser().parse_overrides(list(overrides))
        if max_jobs is not None:
            count, exact = _job_count(parsed, cap=100 * max_jobs + 1)
            check_size(count, max_jobs, exact)
        return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
    except HydraException as error:
        message = hide_secrets_in(f"cannot expand the sweep {redact_overrides(list(overrides))}:"
                                  f"\n{error}", overrides)
        raise SweepDefinitionError(message) from error


class _Composer:
    """compose() for many jobs of one notebook, with the same results, faster: Hydra builds
    each distinct set of group choices once (the base), and a job's value overrides are
    applied to a copy of its base by Hydra's own code; a `_target_` node is checked once.
    What this cannot do exactly (hydra keys, secrets, a base or value Hydra refuses) is
    composed by compose() itself."""

    def __init__(self, notebook: Notebook):
        load_resolvers()  # compose() loads them itself, bases are composed without it
        self.notebook = notebook
        self.repository = _loader().repository
        self.parser = parser()  # redaction's, made once per process
        self.bases: Dict[Tuple[str, ...], Optional[DictConfig]] = {}
        self.checked: Dict = {}  # the target checks' results, by node (targets.py)

    def compose(self, overrides: List[str]) -> DictConfig:
        given = list(overrides) + overrides_from_env()
        parsed = self._parse(given)
        base = self._base(parsed)
        if base is None:
            return self.notebook.compose(overrides)
        try:
            full = _with_values(base, parsed, [o for o in parsed if not self._is_base(o)])
        except HydraException:  # compose() says why, in its own words
            return self.notebook.compose(overrides)
        cfg = finish(full, given, self.notebook.config_name, check_targets=False)
        problems = target_problems(cfg, self.checked)
        if problems:
            raise ConfigError("\n".join(problems))
        return cfg

    def _parse(self, given: List[str]) -> Optional[List[Override]]:
        if os.environ.get(SECRETS_ENV):
            return None  # redacted overrides: compose() puts the secrets back
        try:
            return self.parser.parse_overrides(given)
        except HydraException:
            return None

    def _is_base(self, override: Override) -> bool:
        """Part of the defaults list (a group choice) or of Hydra's own config."""
        return (override.is_hydra_override() or override.package is not None
                or override.key_or_group.startswith("hydra")
                or (self.repository.group_exists(override.key_or_group)
                    and not isinstance(override.value(), dict)))

    def _base(self, parsed: Optional[List[Override]]) -> Optional[DictConfig]:
        if parsed is None:
            return None
        key = tuple(o.input_line for o in parsed if self._is_base(o))
        if key not in self.bases:
            try:
                self.bases[key] = compose_yaml(self.notebook.config_name, list(key))
            except ConfigError:
                self.bases[key] = None
        return self.bases[key]


def _with_values(base: DictConfig, parsed: List[Override], values: List[Override]):
    """A copy of `base` with the value overrides applied, and the record Hydra keeps of all
    the overrides, as Hydra's ConfigLoaderImpl does when it composes them all at once."""
    full = copy.deepcopy(base)
    ConfigLoaderImpl._apply_overrides_to_config(values, full)
    task = [o for o in parsed if not o.is_hydra_override()]
    dirname = full.hydra.job.config.override_dirname
    full.hydra.overrides.task = [o.input_line for o in task]
    full.hydra.job.override_dirname = get_overrides_dirname(
        overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
        exclude_keys=dirname.exclude_keys)
    return full


def _job(index: int, overrides: List[str], composer: _Composer) -> Job:
    cfg = composer.compose(overrides)
    made = composition(cfg)
    training = cfg.get("training")
    return Job(index, overrides, run_name(cfg, overrides, made.choices), config_hash(cfg),
               cfg.expname, cfg.tracking.uri, artifact_root(cfg.tracking.uri, cfg),
               cfg.paths.output_dir, training.device if training else "auto")


class Validator:
    """Validates a search's trials one at a time, as they are asked for: each is composed
    like a sweep's job, and must share the first job's experiment and store."""

    def __init__(self, notebook: Notebook, first: Job):
        self.notebook, self.first = notebook, first
        self.composer = _Composer(notebook)

    def job(self, index: int, overrides: List[str]) -> Job:
        """The job, or one that says why it cannot run (`problem`)."""
        try:
            with importable_from(self.notebook.path.parent):
                job = _job(index, overrides, self.composer)
        except ConfigError as error:
            return self._refused(index, overrides, str(error))
        for attribute in ("expname", "tracking_uri"):
            if getattr(job, attribute) != getattr(self.first, attribute):
                return self._refused(index, overrides, f"its {attribute} differs from the "
                                     f"search's ({getattr(self.first, attribute)})")
        return job

    def _refused(self, index: int, overrides: List[str], problem: str) -> Job:
        name = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, _, value in
                        (o.partition("=") for o in redact_overrides(overrides)))
        return Job(index, overrides, name[:250], "", self.first.expname,
                   self.first.tracking_uri, self.first.artifact_root, self.first.output_dir,
                   problem=f"invalid config: {problem}"[:5000])


def _check_same(jobs: List[Job], attribute: str) -> None:
    values = sorted({getattr(job, attribute) for job in jobs})
    if len(values) > 1:
        raise SweepDefinitionError(
            f"all jobs of a sweep must share one {attribute}; this sweep has {values}")


def validate(combinations: List[List[str]], notebook: Notebook,
             kind: str = "jobs") -> List[Job]:
    """Compose every job against the notebook's primary config, its `_target_`s imported as
    the notebook would import them; report every invalid job, not only the first. The store
    the jobs share must be usable (check_store)."""
    jobs, problems = [], []
    composer = _Composer(notebook)
    with importable_from(notebook.path.parent):
        for index, overrides in enumerate(combinations):
            try:
                jobs.append(_job(index, overrides, composer))
            except ConfigError as error:
                problems.append(f"{kind.split()[0][:-1]} {index} "
                                f"({' '.join(redact_overrides(overrides))}):\n  " +
                                str(error).replace("\n", "\n  "))
    if problems:
        raise SweepDefinitionError(
            f"{len(problems)} of {len(combinations)} {kind} are invalid against "
            f"conf/{notebook.config_name}.yaml; nothing was run:\n" + "\n".join(problems))
    _check_same(jobs, "expname")
    _check_same(jobs, "tracking_uri")
    try:
        check_store(jobs[0].tracking_uri, jobs[0].expname)
    except StoreError as error:
        raise SweepDefinitionError(str(error)) from None
    return jobs


def combinations(overrides: Sequence[str], sweep_file: Optional[str] = None,
                 max_jobs: Optional[int] = None) -> List[List[str]]:
    """Every job's overrides, from the command line and/or a sweep file (not validated yet);
    more than `max_jobs` are refused before they are made."""
    base = read_sweep_file(sweep_file) if sweep_file else []
    return expand(merge_overrides(base, overrides), max_jobs)


def plan(notebook: Notebook, overrides: Sequence[str],
         sweep_file: Optional[str] = None) -> List[Job]:
    """The validated jobs of a sweep given on the command line and/or in a sweep file."""
    return validate(combinations(overrides, sweep_file), notebook)


def sweep_id(notebook: str, jobs: List[Job]) -> str:
    """Same notebook and same configs, same id: running a sweep again resumes it."""
    identity = json.dumps([Path(notebook).name, sorted(job.config_hash for job in jobs)])
    return hashlib.sha256(identity.encode()).hexdigest()[:10]


def short_name(job: Job) -> str:
    """A file-name-safe version of the job's name."""
    return re.sub(r"[^\w.=,-]+", "_", job.name)[:80]


def describe(jobs: List[Job]) -> Dict:
    return {"jobs": [{"index": j.index, "overrides": j.overrides, "config_hash": j.config_hash}
                     for j in jobs]}
