"""Which executor runs a sweep's jobs, and how: conf/executor/<name>.yaml typed by its
dataclass (schema.EXECUTOR_SETTINGS), then `executor.KEY=VALUE` overrides, then the command
line's --workers, --engine and --timeout. A bad value is refused before anything starts."""
from typing import Any, List, Sequence, Tuple

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sweepbook.config import ConfigError, config_dir
from sweepbook.schema import EXECUTOR_SETTINGS, range_problems

PREFIX = "executor."  # overrides of the executor's settings, not of the jobs' config
ENGINES = ("fork", "kernel")


def split_overrides(overrides: Sequence[str]) -> Tuple[List[str], List[str]]:
    """The jobs' overrides, and the executor's (`executor.address=auto`)."""
    ours = [o for o in overrides if o.startswith(PREFIX)]
    return [o for o in overrides if not o.startswith(PREFIX)], ours


def executor_settings(name: str, overrides: Sequence[str] = (), **given: Any):
    """The settings of executor `name`; `given` options that are None are not given."""
    if name not in EXECUTOR_SETTINGS:
        raise ConfigError(f"--executor {name!r}: valid are {', '.join(EXECUTOR_SETTINGS)}")
    path = config_dir() / "executor" / f"{name}.yaml"
    layers = [OmegaConf.load(path)] if path.is_file() else []
    try:
        layers.append(OmegaConf.from_dotlist([o[len(PREFIX):] for o in overrides]))
        merged = OmegaConf.merge(OmegaConf.structured(EXECUTOR_SETTINGS[name]), *layers,
                                 {k: v for k, v in given.items() if v is not None})
        settings = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        valid = ", ".join(f"{PREFIX}{key}" for key in EXECUTOR_SETTINGS[name].__dataclass_fields__)
        raise ConfigError(f"executor {name}: {str(error).splitlines()[0]}; valid keys: "
                          f"{valid}") from None
    problems = [f"{PREFIX}{key}={value!r} is out of range: {why}"
                for key, value, why in range_problems(settings)]
    if getattr(settings, "engine", "fork") not in ENGINES:
        problems.append(f"{PREFIX}engine={settings.engine!r}: valid are {', '.join(ENGINES)}")
    if settings.name != name:
        problems.append(f"{PREFIX}name={settings.name!r}: give --executor {settings.name}")
    if problems:
        raise ConfigError("\n".join(problems))
    return settings
