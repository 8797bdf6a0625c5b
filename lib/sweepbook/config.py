"""Config composition: Hydra's compose API, safe to call from any cwd, any number of times."""
import os
import shlex
from pathlib import Path
from typing import Iterable, List, Sequence, Union

import yaml

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweepbook.schema import register_schema

ROOT_ENV = "SWEEPBOOK_ROOT"  # project root for installed use (holds conf/ and notebooks/)
OVERRIDES_ENV = "SWEEPBOOK_OVERRIDES"  # extra overrides for runs that take no parameters (nbval)
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PRIMARY_CONFIG = "train"
VERSION_BASE = "1.3"


class ConfigError(ValueError):
    """A config that cannot be composed: bad override, unknown option, wrong type."""


def _has_config(root: Path) -> bool:
    return (root / "conf" / f"{PRIMARY_CONFIG}.yaml").is_file()


def project_root() -> Path:
    """The folder holding conf/: $SWEEPBOOK_ROOT, this checkout, or the nearest parent of cwd."""
    if os.environ.get(ROOT_ENV):
        root = Path(os.environ[ROOT_ENV]).expanduser().resolve()
        if not _has_config(root):
            raise ConfigError(f"{ROOT_ENV}={root} holds no conf/{PRIMARY_CONFIG}.yaml")
        return root
    checkout = Path(__file__).resolve().parents[2]
    for candidate in (checkout, Path.cwd(), *Path.cwd().parents):
        if _has_config(candidate):
            return candidate
    raise ConfigError(
        f"cannot find conf/{PRIMARY_CONFIG}.yaml from {Path.cwd()}; "
        f"set {ROOT_ENV} to the sweepbook project folder"
    )


def config_dir() -> Path:
    return project_root() / "conf"


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


def overrides_from_env() -> List[str]:
    """Overrides from $SWEEPBOOK_OVERRIDES (shell-quoted), for runs that cannot take parameters."""
    return shlex.split(os.environ.get(OVERRIDES_ENV, ""))


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("sweepbook_root"):
        OmegaConf.register_new_resolver("sweepbook_root", lambda: str(project_root()))


def _check_overrides(overrides: List[str]) -> None:
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise ConfigError(f"overrides must be strings like 'model=mlp', got {bad!r}")


def _explain(error: Exception, overrides: List[str]) -> str:
    """Hydra hides the readable reason (key and expected type) in the exception chain."""
    parts = [str(error).strip()]
    if isinstance(error, OverrideParseException):
        parts.insert(0, f"cannot parse override {error.override!r}:")
    elif not isinstance(error, (HydraException, OmegaConfBaseException)):
        parts.insert(0, f"invalid overrides {overrides}:")
    cause = error.__cause__
    while cause is not None:
        parts.append(str(cause).strip())
        cause = cause.__cause__
    return "\n".join(p for p in parts if p)


def _apply_environment(cfg: DictConfig) -> None:
    """MLFLOW_TRACKING_URI wins over tracking.uri, so the config shows the store really used."""
    if os.environ.get(TRACKING_URI_ENV):
        cfg.tracking.uri = os.environ[TRACKING_URI_ENV]


def compose(overrides: Iterable[str] = ()) -> DictConfig:
    """Compose conf/train.yaml with Hydra overrides, validated against the schema and resolved."""
    overrides = list(overrides)
    _check_overrides(overrides)
    register_schema()
    _register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base=VERSION_BASE):
            cfg = hydra_compose(config_name=PRIMARY_CONFIG, overrides=overrides)
        OmegaConf.resolve(cfg)
        _apply_environment(cfg)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise ConfigError(_explain(error, overrides)) from error
    finally:
        GlobalHydra.instance().clear()
    return cfg
