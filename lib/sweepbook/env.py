"""Environment variables changed for a block and put back after it, whatever happens."""
import contextlib
import os
from typing import Dict, Iterator, Optional


@contextlib.contextmanager
def patched_environ(changes: Dict[str, Optional[str]]) -> Iterator[None]:
    """Set each variable to its value (None removes it) inside the block; restore after."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


def _set(name: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
