"""Config composition: Hydra's compose API, safe to call from any cwd, any number of times.

    cfg = compose(["model=mlp"], config_name="train")   # conf/train.yaml

The composed config is plain YAML (the user's keys welcome), resolved, with the sections
sweepbook reads typed and range-checked (schema.py) and every `_target_` checked against its
target (targets.py). `composition(cfg)` tells which config, overrides and group options made it,
so a run records exactly what built its config.
"""
import contextlib
import hashlib
import importlib.util
import json
import os
import shlex
import sys
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sweepbook.redaction import hide_secrets_in
from sweepbook.schema import RunSettings, deletion_problems, settings_problems

ROOT_ENV = "SWEEPBOOK_ROOT"  # project root for installed use (holds conf/ and notebooks/)
OVERRIDES_ENV = "SWEEPBOOK_OVERRIDES"  # extra overrides for runs that take no parameters (nbval)
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
TELEMETRY_ENV = "MLFLOW_DISABLE_TELEMETRY"  # set true where sweepbook starts processes: offline
SECRETS_ENV = "SWEEPBOOK_SECRETS_FILE"  # a job's secret overrides, {redacted: real} (secrets.py)
DEFAULT_CONFIG = "train"
RESOLVERS_FILE = "resolvers.py"  # conf/resolvers.py: the one home of custom OmegaConf resolvers
VERSION_BASE = "1.3"
REQUIRED_SECTIONS = ("paths", "tracking")  # every primary config needs them: absolute places
SERVER_FOLDER = Path(".sweepbook", "server")  # `sweepbook server` (tracking/server.py)
SERVER_STATE = SERVER_FOLDER / "state.json"  # what runs there; its `uri` for tracking=server
DEFAULT_SERVER_URI = "http://127.0.0.1:5000"  # MLflow's usual address, where none runs


class ConfigError(ValueError):
    """A config that cannot be composed: bad override, unknown option, wrong type or range."""


@dataclass(frozen=True)
class Composition:
    """How a config was made: what a run records as its origin."""
    config_name: str  # the primary config, conf/<config_name>.yaml
    overrides: Tuple[str, ...]  # the Hydra overrides, in order
    choices: Dict[str, str]  # config group -> chosen option ('model' -> 'mlp')
    fingerprint: str = ""  # of the config as composed: changed later in code, it differs


_COMPOSED: Dict[int, Tuple[weakref.ref, Composition]] = {}


def composition(cfg) -> Optional[Composition]:
    """How `cfg` was composed; None for a config compose() did not make."""
    ref, made = _COMPOSED.get(id(cfg), (None, None))
    return made if ref is not None and ref() is cfg else None


def fingerprint(cfg: DictConfig) -> str:
    """A digest of the config's content, to tell whether code changed it after compose()."""
    return hashlib.sha256(OmegaConf.to_yaml(cfg).encode()).hexdigest()[:16]


def _remember(cfg: DictConfig, made: Composition) -> None:
    key = id(cfg)
    _COMPOSED[key] = (weakref.ref(cfg, lambda _: _COMPOSED.pop(key, None)), made)


def _has_config(root: Path) -> bool:
    return (root / "conf").is_dir() and any((root / "conf").glob("*.yaml"))


def project_root() -> Path:
    """The folder holding conf/: $SWEEPBOOK_ROOT, this checkout, or the nearest parent of cwd."""
    if os.environ.get(ROOT_ENV):
        root = Path(os.environ[ROOT_ENV]).expanduser().resolve()
        if not _has_config(root):
            raise ConfigError(f"{ROOT_ENV}={root} holds no conf/ folder with a primary config")
        return root
    checkout = Path(__file__).resolve().parents[2]
    for candidate in (checkout, Path.cwd(), *Path.cwd().parents):
        if _has_config(candidate):
            return candidate
    raise ConfigError(
        f"cannot find a conf/ folder with a primary config from {Path.cwd()}; "
        f"set {ROOT_ENV} to the sweepbook project folder"
    )


def config_dir() -> Path:
    return project_root() / "conf"


def config_names() -> List[str]:
    """The primary configs: the YAML files directly in conf/."""
    return sorted(path.stem for path in config_dir().glob("*.yaml"))


def as_override_list(value: Union[None, str, Sequence[str]]) -> List[str]:
    """Overrides as a list, also from the strings papermill's `-p` passes.

    `-p overrides '["model=mlp", "optimizer.lr=1e-2"]'` arrives as a JSON/YAML list in a
    string, `-p overrides "model=mlp optimizer.lr=1e-2"` as shell words.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return shlex.split(text)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"overrides {text!r} is not a valid list: {error}") from error
    overrides = list(value)
    _check_overrides(overrides)
    return overrides


def read_secrets(path) -> Dict[str, str]:
    """The secret overrides kept in `path` (secrets.py writes them): redacted one -> real one."""
    try:
        secret = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the secret overrides in {path}: {error}") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"{path} must map redacted overrides to real ones")
    return secret


def _with_secrets(overrides: List[str]) -> List[str]:
    """Overrides a job received redacted (`+db.password=***`) with their real values put back
    from the file $SWEEPBOOK_SECRETS_FILE names; the others as they are."""
    path = os.environ.get(SECRETS_ENV)
    if not path:
        return overrides
    secret = read_secrets(path)
    return [secret.get(override, override) for override in overrides]


def overrides_from_env() -> List[str]:
    """Overrides from $SWEEPBOOK_OVERRIDES (shell-quoted), for runs that cannot take parameters."""
    return shlex.split(os.environ.get(OVERRIDES_ENV, ""))


_LOADED_RESOLVERS: set = set()


def server_uri() -> str:
    """`${sweepbook_server:}`: the URI of this project's tracking server (`sweepbook server
    start` records it), else DEFAULT_SERVER_URI."""
    try:
        return json.loads((project_root() / SERVER_STATE).read_text())["uri"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_SERVER_URI


def load_resolvers() -> None:
    """Run conf/resolvers.py once per process: the user's custom resolvers, registered with
    OmegaConf.register_new_resolver, work wherever sweepbook composes (notebook, run, sweep
    validation, jobs)."""
    if not OmegaConf.has_resolver("sweepbook_root"):
        OmegaConf.register_new_resolver("sweepbook_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("sweepbook_server"):
        OmegaConf.register_new_resolver("sweepbook_server", server_uri)
    path = config_dir() / RESOLVERS_FILE
    if path.is_file() and str(path) not in _LOADED_RESOLVERS:
        spec = importlib.util.spec_from_file_location("sweepbook_user_resolvers", path)
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except Exception as error:
            raise ConfigError(f"{path} failed: {type(error).__name__}: {error}") from error
        _LOADED_RESOLVERS.add(str(path))


def _check_overrides(overrides: List[str]) -> None:
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise ConfigError(f"overrides must be strings like 'model=mlp', got {bad!r}")


def _explain(error: Exception, overrides: List[str]) -> str:
    """Hydra hides the readable reason (key and expected type) in the exception chain. Its
    messages quote overrides and values: their secrets are hidden (the message is printed)."""
    real = _with_secrets(overrides)
    parts = [str(error).strip()]
    if isinstance(error, OverrideParseException):
        parts.insert(0, f"cannot parse override {hide_secrets_in(error.override, real)!r}:")
    elif not isinstance(error, (HydraException, OmegaConfBaseException)):
        parts.insert(0, f"invalid overrides {[hide_secrets_in(o, real) for o in overrides]}:")
    cause = error.__cause__
    while cause is not None:
        parts.append(str(cause).strip())
        cause = cause.__cause__
    return hide_secrets_in("\n".join(p for p in parts if p), real)


@contextlib.contextmanager
def _hydra_config(full: DictConfig) -> Iterator[None]:
    """`${hydra:runtime.choices.model}` resolves from Hydra's singleton, which compose() leaves
    unset: set it while resolving, then put back what was there."""
    singleton = HydraConfig.instance()
    previous = singleton.cfg
    singleton.set_config(full)
    try:
        yield
    finally:
        singleton.cfg = previous


def _compose_yaml(config_name: str, overrides: List[str]) -> DictConfig:
    """Hydra's compose on conf/; a caller's own `hydra.initialize()` is put back after."""
    callers = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
            return hydra_compose(config_name=config_name, overrides=overrides,
                                 return_hydra_config=True)
    except MissingConfigException as error:
        if error.missing_cfg_file != config_name:
            raise
        raise ConfigError(f"no primary config {config_name!r} in {config_dir()}; "
                          f"valid: {', '.join(config_names())}") from None
    finally:  # (Hydra's own context manager swaps the singleton's instance: ask it again)
        GlobalHydra.instance().clear()
        if callers is not None:
            GlobalHydra.instance().initialize(callers)


def _resolve(full: DictConfig) -> Tuple[DictConfig, Dict[str, str]]:
    """The user's config without Hydra's own node, resolved; and the chosen group options."""
    chosen = reversed(full.hydra.runtime.choices.items())  # Hydra lists them last-first
    choices = {group: str(option) for group, option in chosen
               if not group.startswith("hydra/") and option is not None}
    with _hydra_config(full):
        with open_dict(full):
            del full["hydra"]
        missing = sorted(OmegaConf.missing_keys(full))
        if missing:
            raise ConfigError(f"{', '.join(missing)}: mandatory value missing (???); give it "
                              f"a value, e.g. {missing[0]}=...")
        OmegaConf.resolve(full)
    return full, choices


def _apply_environment(cfg: DictConfig) -> None:
    """MLFLOW_TRACKING_URI wins over tracking.uri, so the config shows the store really used."""
    if os.environ.get(TRACKING_URI_ENV):
        cfg.tracking.uri = os.environ[TRACKING_URI_ENV]


def _apply_schema(cfg: DictConfig, config_name: str) -> None:
    """Type the sections sweepbook reads (absent ones get their defaults) and check ranges."""
    absent = [name for name in REQUIRED_SECTIONS if name not in cfg]
    if absent:
        raise ConfigError(f"conf/{config_name}.yaml has no {' or '.join(absent)}: sweepbook "
                          f"reads where files and runs go from them; put `paths: default` and "
                          f"`tracking: local` in its defaults list")
    present = {spec.name: cfg[spec.name] for spec in fields(RunSettings) if spec.name in cfg}
    typed = OmegaConf.merge(OmegaConf.structured(RunSettings), present)
    problems = settings_problems(OmegaConf.to_object(typed))
    if problems:
        raise ConfigError("\n".join(problems))
    with open_dict(cfg):
        for spec in fields(RunSettings):
            if spec.name in cfg or typed[spec.name] is not None:
                cfg[spec.name] = typed[spec.name]


@contextlib.contextmanager
def importable_from(folder: Path) -> Iterator[None]:
    """Modules next to a notebook import as they do in its kernel; sys.path is restored."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def default_store_uri() -> str:
    """The store the default config names (MLFLOW_TRACKING_URI wins): where `--resume ID`
    looks, and the one the printed next steps read unless told otherwise."""
    return compose(check_targets=False).tracking.uri


def compose(overrides: Iterable[str] = (), config_name: str = DEFAULT_CONFIG,
            check_targets: bool = True) -> DictConfig:
    """Compose conf/<config_name>.yaml with Hydra overrides: resolved and validated.

    `check_targets=False` skips importing the `_target_`s, for readers that only need the store.
    Redacted overrides are composed with their real values (_with_secrets) and recorded as given.
    """
    overrides = list(overrides)
    _check_overrides(overrides)
    load_resolvers()
    return finish(compose_yaml(config_name, overrides), overrides, config_name, check_targets)


def compose_yaml(config_name: str, overrides: List[str]) -> DictConfig:
    """compose()'s first step: Hydra's composition, its `hydra` node kept (a sweep composes
    each set of group choices once with it, then applies each job's values: sweep/plan.py)."""
    try:
        return _compose_yaml(config_name, _with_secrets(overrides))
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(_explain(error, overrides)) from error


def finish(full: DictConfig, overrides: List[str], config_name: str = DEFAULT_CONFIG,
           check_targets: bool = True) -> DictConfig:
    """compose()'s second step: Hydra's composition `full` of `overrides` resolved, typed,
    checked and remembered as made by them."""
    problems = deletion_problems(overrides)
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        cfg, choices = _resolve(full)
        _apply_schema(cfg, config_name)
        _apply_environment(cfg)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(_explain(error, overrides)) from error
    if check_targets:
        from sweepbook.targets import target_problems  # imports the targets: torch, ...

        problems = target_problems(cfg)
        if problems:
            raise ConfigError("\n".join(problems))
    _remember(cfg, Composition(config_name, tuple(overrides), choices, fingerprint(cfg)))
    return cfg
