"""Turn a config into MLflow params: dotted keys, string values, secrets redacted."""
import re
from typing import Any, Dict, List, Mapping

from omegaconf import DictConfig, OmegaConf

from sweepbook.config import composition

REDACTED = "***"
# Words that name a secret anywhere in a key, and short ones that must stand alone between
# separators (so `db_pass` and `auth_token` are secrets, `num_passes`, `max_tokens`, `author`
# and `tokenizer` are not).
SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|credential|api[_-]?key|"
                        r"private[_-]?key|(^|[_.-])(pass|token|auth)($|[_.-])", re.I)
BUILD_FLAGS = ("_partial_", "_recursive_", "_convert_")  # instantiate flags, not config
SECRET_IN_URI = re.compile(r"(?<=://)([^/@:]+):([^/@]+)@")


def is_secret_key(key: str) -> bool:
    """A key whose last part names a secret (password, token, api_key, ...)."""
    return bool(SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def redact_value(key: str, value: Any) -> Any:
    """Hide secret values, and passwords embedded in URIs (postgresql://user:pw@host)."""
    if is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return SECRET_IN_URI.sub(rf"\1:{REDACTED}@", value)
    return value


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


def redact_overrides(overrides: List[str]) -> List[str]:
    """Hydra overrides with secret values hidden: '+db.password=x' -> '+db.password=***'."""
    redacted = []
    for override in overrides:
        key, sep, value = override.partition("=")
        redacted.append(f"{key}{sep}{redact_value(key.lstrip('+~'), value)}" if sep else override)
    return redacted
