"""Seams through which the tracing layer plugs into the pure entities.

The entities never import :mod:`flowtel.tracing`; tracing installs its clock, its user span
processors and its misuse reporter here when it is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowtel.entities._span import LiveSpan

_logger = logging.getLogger("flowtel")

now_ns: Callable[[], int] = time.time_ns


def before_end(span: LiveSpan) -> None:
    """Runs just before a live span ends (user span processors are installed here)."""


# Non-empty when ``before_end`` has work to do (the tracing layer's list of span processors,
# shared, mutated in place): the common case skips the call.
span_processors: list[Callable[..., object]] = []


def report_misuse(message: str) -> None:
    _logger.warning(message)
