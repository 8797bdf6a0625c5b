"""Turn a config into MLflow params: dotted keys, string values, secrets redacted."""
from typing import Any, Dict, List, Mapping

from hydra.core.override_parser.types import ChoiceSweep, QuotedString, Transformer
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from sweepbook.config import composition
from sweepbook.redaction import REDACTED, TEXT_VALUES, is_secret_key, parser, redact_uri

BUILD_FLAGS = ("_partial_", "_recursive_", "_convert_")  # instantiate flags, not config


def redact_value(key: str, value: Any) -> Any:
    """Hide secret values, and passwords embedded in URIs (postgresql://user:pw@host)."""
    if is_secret_key(key):
        return REDACTED
    return redact_uri(value) if isinstance(value, str) else value


def redact(tree: Any, key: str = "") -> Any:
    """A copy of a nested dict/list with every secret-looking value replaced."""
    if isinstance(tree, Mapping):
        return {k: redact(v, str(k)) if not is_secret_key(k) else REDACTED for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v, key) for v in tree]
    return redact_value(key, tree)


def to_container(cfg: Any) -> Any:
    """A plain, resolved dict from a DictConfig or mapping."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def flatten(tree: Mapping, prefix: str = "") -> Dict[str, Any]:
    """{'model': {'hidden': 8}} -> {'model.hidden': 8}; lists stay whole values."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_params(cfg: Any, redacted: bool = True) -> Dict[str, str]:
    """The flattened config as MLflow params (string values, secrets redacted unless
    `redacted=False`), plus each config group's chosen option under the group's name
    ('model': 'mlp'), as overrides write it.

    Hydra's instantiate flags (`_partial_`, ...) say how to build, not what: left out.
    """
    made = composition(cfg)
    tree = to_container(cfg)
    flat = flatten(redact(tree) if redacted else tree)
    params = {k: str(v) for k, v in flat.items() if k.rsplit(".", 1)[-1] not in BUILD_FLAGS}
    return {**(made.choices if made else {}), **params}


def redacted_yaml(cfg: Any) -> str:
    """The config as YAML with secrets hidden: what a notebook may print (its outputs are
    saved and logged)."""
    return OmegaConf.to_yaml(OmegaConf.create(redact(to_container(cfg))))


def _redact_parsed(value: Any, key: str) -> Any:
    """redact() for a value as Hydra parsed it (a sweep's choices keep their quotes)."""
    if isinstance(value, QuotedString):
        return QuotedString(str(redact_value(key, value.text)), value.quote)
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(k) else _redact_parsed(v, str(k))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_parsed(v, key) for v in value]
    return redact_value(key, value)


def _as_text(value: Any) -> str:
    """A parsed value back in override syntax, strings unescaped (it is read, not parsed)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_as_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_as_text(v) for v in value) + "]"
    return value if isinstance(value, str) else Transformer.str(value)


def _value_text(parsed, hide: bool) -> str:
    """The text after `=` of an element or choice sweep, secrets hidden when `hide`."""
    key = parsed.key_or_group
    text = (lambda v: _as_text(_redact_parsed(v, key))) if hide else _as_text
    value = parsed.value()
    if isinstance(value, ChoiceSweep):
        choices = ",".join(text(v) for v in value.list)
        return choices if value.simple_form else f"choice({choices})"
    return text(value)


def redact_override(override: str) -> str:
    """One Hydra override with secret values hidden ('+db.password=x' -> '+db.password=***',
    '+db={password:x}' -> '+db={password:***}'); an override without secrets is unchanged."""
    key, sep, value = override.partition("=")
    if not sep:
        return override
    try:
        parsed = parser().parse_override(override)
    except HydraException:  # compose will say why; hide what can be found meanwhile
        return f"{key}{sep}{redact_value(key.lstrip('+~'), value)}"
    if is_secret_key(parsed.key_or_group):
        return f"{key}{sep}{REDACTED}"
    if parsed.value_type not in TEXT_VALUES:  # ranges, intervals, globs: numbers and options
        return override
    shown = _value_text(parsed, hide=True)
    return override if shown == _value_text(parsed, hide=False) else f"{key}{sep}{shown}"


def redact_overrides(overrides: List[str]) -> List[str]:
    """Hydra overrides with secret values hidden (see redact_override)."""
    return [redact_override(override) for override in overrides]
