from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Union

AttributeValue = Union[str, bool, int, float, bytes, list[Any], tuple[Any, ...]]


@dataclass
class SpanEvent:
    """Something that happened at one point in time during a span (OpenTelemetry event).

    Args:
        name: Name of the event.
        timestamp: When it happened, in nanoseconds since the epoch (default: now).
        attributes: Primitive values or sequences of them. Unlike span attributes,
            event attributes are stored as they are, not JSON-encoded.
    """

    name: str
    timestamp: int = field(default_factory=time.time_ns)
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_exception(cls, exception: BaseException) -> SpanEvent:
        """An ``exception`` event with type, message and stack trace."""
        return cls(
            name="exception",
            attributes={
                "exception.message": _safe_str(exception),
                "exception.type": type(exception).__name__,
                "exception.stacktrace": _stacktrace(exception),
            },
        )

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "timestamp": self.timestamp, "attributes": self.attributes}


def _safe_str(exception: BaseException) -> str:
    try:
        return str(exception)
    except Exception:  # noqa: BLE001 - a user exception whose __str__ raises
        return f"<{type(exception).__name__}: unprintable>"


def _stacktrace(exception: BaseException) -> str:
    try:
        return "".join(
            traceback.format_exception(type(exception), exception, exception.__traceback__)
        ).strip()
    except Exception:  # noqa: BLE001 - formatting must never replace the user's exception
        return _safe_str(exception)
