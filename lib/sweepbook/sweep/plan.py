"""A sweep's plan: its definition expanded into jobs with Hydra's own grammar, and every job
composed against the notebook's primary config and validated before anything runs."""
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from sweepbook.config import ConfigError, composition, config_dir
from sweepbook.notebook import Notebook
from sweepbook.tracking.location import artifact_root
from sweepbook.tracking.record import config_hash, run_name


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
    params = (yaml.safe_load(path.read_text()) or {}).get("params")
    if not isinstance(params, dict):
        raise SweepDefinitionError(f"{path} needs a mapping `params:` of key: sweep values")
    return [f"{key}={value}" for key, value in params.items()]


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> List[str]:
    """`extra` replaces entries of `base` with the same key (command line beats sweep file)."""
    key = lambda override: override.split("=", 1)[0]
    replaced = {key(o) for o in extra}
    return [o for o in base if key(o) not in replaced] + list(extra)


def _parser() -> OverridesParser:
    """A parser that knows the config tree, so glob() can list group options."""
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(config_dir())))
    return OverridesParser.create(config_loader=loader)


def expand(overrides: Sequence[str]) -> List[List[str]]:
    """Every combination of the sweep overrides, as Hydra's BasicSweeper would launch them."""
    try:
        parsed = _parser().parse_overrides(list(overrides))
        return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]
    except HydraException as error:
        message = f"cannot expand the sweep {list(overrides)}:\n{error}"
        raise SweepDefinitionError(message) from error


def _job(index: int, overrides: List[str], notebook: Notebook) -> Job:
    cfg = notebook.compose(overrides)
    made = composition(cfg)
    return Job(index, overrides, run_name(cfg, overrides, made.choices), config_hash(cfg),
               cfg.expname, cfg.tracking.uri, artifact_root(cfg.tracking.uri, cfg),
               cfg.paths.output_dir)


def _check_same(jobs: List[Job], attribute: str) -> None:
    values = sorted({getattr(job, attribute) for job in jobs})
    if len(values) > 1:
        raise SweepDefinitionError(
            f"all jobs of a sweep must share one {attribute}; this sweep has {values}")


def validate(combinations: List[List[str]], notebook: Notebook) -> List[Job]:
    """Compose every job against the notebook's primary config, its `_target_`s imported as
    the notebook would import them; report every invalid job, not only the first."""
    jobs, problems = [], []
    for index, overrides in enumerate(combinations):
        try:
            jobs.append(_job(index, overrides, notebook))
        except ConfigError as error:
            problems.append(f"job {index} ({' '.join(overrides)}):\n  " +
                            str(error).replace("\n", "\n  "))
    if problems:
        raise SweepDefinitionError(
            f"{len(problems)} of {len(combinations)} jobs are invalid against "
            f"conf/{notebook.config_name}.yaml; nothing was run:\n" + "\n".join(problems))
    _check_same(jobs, "expname")
    _check_same(jobs, "tracking_uri")
    return jobs


def combinations(overrides: Sequence[str], sweep_file: Optional[str] = None) -> List[List[str]]:
    """Every job's overrides, from the command line and/or a sweep file (not validated yet)."""
    base = read_sweep_file(sweep_file) if sweep_file else []
    return expand(merge_overrides(base, overrides))


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
