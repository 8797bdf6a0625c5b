"""Environment variables and signal handlers changed for a block and put back after it,
whatever happens."""
import contextlib
import os
import signal
import threading
from typing import Callable, Dict, Iterable, Iterator, Optional


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
def signal_handlers(handler: Callable, signals: Iterable[int]) -> Iterator[bool]:
    """`handler` for each of `signals` inside the block, the previous handlers put back after.
    Off the main thread, where Python allows no handler, nothing changes (yields False)."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield True
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


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
