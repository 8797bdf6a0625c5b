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


@contextlib.contextmanager
def preserved_environ() -> Iterator[None]:
    """Whatever third-party code inside the block sets or removes is put back after it (the
    first torch optimizer imports torch._dynamo, which sets TORCHINDUCTOR_CACHE_DIR)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
