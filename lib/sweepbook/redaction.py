"""What counts as a secret, and secret values hidden in any text (Hydra's error messages quote
overrides and values). Below config (its errors use it) and params (redaction of configs)."""
import re
from functools import lru_cache
from typing import Any, Iterable, Iterator, List

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, QuotedString, ValueType
from hydra.errors import HydraException

REDACTED = "***"
# Words that name a secret anywhere in a key, and short ones that must stand alone between
# separators (so `db_pass` and `auth_token` are secrets, `num_passes`, `max_tokens`, `author`
# and `tokenizer` are not).
SECRET_KEY = re.compile(r"password|passwd|passphrase|secret|credential|api[_-]?key|"
                        r"private[_-]?key|(^|[_.-])(pass|token|auth)($|[_.-])", re.I)
SECRET_IN_URI = re.compile(r"(?<=://)([^/@:]+):([^/@]+)@")
# `name: value` in a dict override Hydra cannot parse (`+db={password:x,y:[1`)
SECRET_PAIR = re.compile(r"([\w.-]+)\s*:\s*([^,{}\[\]]*)")
# override values that can hold text (a secret): one value or a list of choices
TEXT_VALUES = (ValueType.ELEMENT, ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP)


def is_secret_key(key: str) -> bool:
    """A key whose last part names a secret (password, token, api_key, ...)."""
    return bool(SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def redact_uri(uri: str) -> str:
    """A URI fit to print: its password, if any, shown as ***."""
    return SECRET_IN_URI.sub(rf"\1:{REDACTED}@", uri)


@lru_cache(maxsize=None)
def parser() -> OverridesParser:
    return OverridesParser.create()


def _leaves(value: Any, hidden: bool) -> Iterator[str]:
    """The texts in a value Hydra parsed that redaction hides: every leaf under a secret key,
    and passwords in URIs."""
    if isinstance(value, ChoiceSweep):
        value = value.list
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, hidden or is_secret_key(key))
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, hidden)
    elif isinstance(value, (str, QuotedString)):
        text = value.text if isinstance(value, QuotedString) else value
        yield from [text] if hidden else (m.group(2) for m in SECRET_IN_URI.finditer(text))
    elif hidden and isinstance(value, (int, float)):
        yield str(value)


def _unparsed_secrets(key: str, value: str) -> List[str]:
    """secret_texts() of an override Hydra cannot parse: found by the text's look."""
    if is_secret_key(key):
        return [value]
    pairs = [text.strip() for name, text in SECRET_PAIR.findall(value) if is_secret_key(name)]
    return pairs + [m.group(2) for m in SECRET_IN_URI.finditer(value)]


def secret_texts(override: str) -> List[str]:
    """The secret values in one override, as written and as Hydra parsed them: what a message
    quoting the override or the value must not show."""
    key, sep, value = override.partition("=")
    if not sep:
        return []
    try:
        parsed = parser().parse_override(override)
    except HydraException:
        return _unparsed_secrets(key.lstrip("+~"), value)
    if is_secret_key(parsed.key_or_group):
        return [value, *_leaves(parsed.value(), hidden=True)]
    if parsed.value_type not in TEXT_VALUES:
        return []
    return list(_leaves(parsed.value(), hidden=False))


def hide_secrets_in(text: str, overrides: Iterable[str]) -> str:
    """`text` (Hydra's error message, which quotes overrides and values) with the secret values
    of `overrides` shown as ***. Longest first, so a secret holding another is hidden whole."""
    found = {secret for override in overrides for secret in secret_texts(override)}
    for secret in sorted(found - {"", REDACTED}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
