"""The one mechanism through which the tracing layer plugs into the pure entities.

The entities never import :mod:`flowtel.tracing`. Each replaceable behaviour of the entities is a
module attribute here with a default that works without the tracing layer (the wall clock,
plain JSON encoding, warnings for misuse). The tracing layer replaces them when it is imported,
only through :func:`install`: its clock, its user span processors, and its capture policy (size
limits, redaction, the no-content switch) as the encoders every recorded value goes through.

Readers look a hook up at call time as ``_hooks.<name>`` (never ``from _hooks import <name>``),
so whatever was installed last is what runs, everywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowtel.entities._json import dump_json

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


def encode_attribute(key: str, value: Any) -> str:
    """The JSON string recorded for span attribute ``key``."""
    return dump_json(value)


def encode_deferred(key: str, value: Any, token: Any) -> str:
    """A value whose encoding was deferred (see ``LiveSpan._defer``), under ``token`` (the capture
    policy of the moment it was recorded)."""
    return encode_attribute(key, value)


def event_attributes(name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """Event attribute values as recorded (raw primitives, per OTel; others JSON-encoded)."""
    clean: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, (str, bool, int, float)):
            clean[str(key)] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
            clean[str(key)] = list(value)
        else:
            clean[str(key)] = dump_json(value)
    return clean


def status_description(exc_type: str, message: str) -> str:
    """The status message recorded for an exception."""
    return f"{exc_type}: {message}"


_HOOKS = frozenset({
    "now_ns", "before_end", "span_processors", "report_misuse", "encode_attribute", "encode_deferred",
    "event_attributes", "status_description",
})


def install(**hooks: Any) -> None:
    """Replace the named hooks (the tracing layer calls this when it is imported)."""
    unknown = set(hooks) - _HOOKS
    if unknown:
        raise TypeError(f"Unknown entity hooks: {sorted(unknown)}")
    globals().update(hooks)
