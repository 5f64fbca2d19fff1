"""Internal errors: logged once per call site, counted, never raised into user code."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

_logger = logging.getLogger("flowtel")
_lock = threading.RLock()  # reported from the user's thread too, where signal handlers nest
_counts: Counter[str] = Counter()
_listeners: list[Callable[[str, BaseException | None], None]] = []


def report_internal_error(where: str, exc: BaseException | None = None) -> None:
    """Record a failure inside flowtel. The user's program goes on, with less telemetry."""
    with _lock:
        _counts[where] += 1
        first = _counts[where] == 1
    if first:
        _logger.error(
            "flowtel internal error in %s; tracing continues with less telemetry. "
            "Further errors here are counted (flowtel.get_delivery_stats()) but not logged.",
            where,
            exc_info=exc,
        )
    for listener in list(_listeners):
        listener(where, exc)


def internal_error_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def add_listener(listener: Callable[[str, BaseException | None], None]) -> None:
    """Called on every internal error (the test suite turns them into failures)."""
    _listeners.append(listener)


def remove_listener(listener: Callable[[str, BaseException | None], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def after_fork_in_child() -> None:
    """Another thread may have held the lock at fork time (called by the lifecycle module)."""
    global _lock
    _lock = threading.RLock()
