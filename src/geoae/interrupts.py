"""Ctrl-C that is never lost: a request to stop, remembered until the command ends.

Python turns SIGINT into a ``KeyboardInterrupt`` raised in whatever Python code runs at that moment. When
that code is a finaliser (a ``__del__``, a weakref or garbage-collection callback), the exception is printed
as "ignored" and the program goes on: a Ctrl-C lost. So the command line installs ``sigint_handler()``: the
handler first records the request, then raises. Long loops call ``check()`` (the training loop at every
step, ``reproduce`` between experiments), which raises ``KeyboardInterrupt`` again while a request is
pending, in any thread, and the command line ends with exit code 130 whenever ``requested()``, even if
every raise was swallowed. Worker processes watch their parent's request through ``watch(event)``.

Without the handler (a library user's own program), nothing changes: ``check()`` never raises.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["sigint_handler", "requested", "request", "check", "watch"]

_requested = threading.Event()
_watched = None  # a multiprocessing.Event set by the parent process (worker processes only)


def requested() -> bool:
    """Whether a stop was requested (Ctrl-C) since the handler was installed."""
    return _requested.is_set() or (_watched is not None and _watched.is_set())


def request() -> None:
    """Record a request to stop (what the SIGINT handler does before raising)."""
    _requested.set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was requested: call it where stopping is safe."""
    if requested():
        raise KeyboardInterrupt


def watch(event) -> None:
    """In a worker process: ``check()`` also honours ``event`` (set by the parent on Ctrl-C)."""
    global _watched
    _watched = event


def _handler(signum, frame) -> None:
    request()
    raise KeyboardInterrupt


@contextmanager
def sigint_handler():
    """Within the block, SIGINT is recorded before it raises (main thread only; elsewhere a no-op); the
    request is cleared on entry and on exit (it belongs to the block: a later call starts afresh)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = signal.signal(signal.SIGINT, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        _requested.clear()
