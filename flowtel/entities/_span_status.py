from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from opentelemetry import trace as otel_trace

_PROTO_NAMES = {
    "UNSET": "STATUS_CODE_UNSET",
    "OK": "STATUS_CODE_OK",
    "ERROR": "STATUS_CODE_ERROR",
}


class SpanStatusCode(str, Enum):
    """Status code of a span: the OpenTelemetry codes."""

    UNSET = "UNSET"
    OK = "OK"
    ERROR = "ERROR"

    def to_otel_proto_status_code_name(self) -> str:
        return _PROTO_NAMES[self.value]

    @staticmethod
    def from_otel_proto_status_code_name(name: str) -> SpanStatusCode:
        for code, proto_name in _PROTO_NAMES.items():
            if proto_name == name:
                return SpanStatusCode(code)
        raise ValueError(
            f"Invalid status code name: {name}. Valid values are: {', '.join(_PROTO_NAMES.values())}"
        )

    @staticmethod
    def parse(value: str | SpanStatusCode) -> SpanStatusCode:
        """A code from its name, its OTLP proto name, or the enum itself."""
        if isinstance(value, SpanStatusCode):
            return value
        text = str(value)
        if text.startswith("STATUS_CODE_"):
            return SpanStatusCode.from_otel_proto_status_code_name(text)
        try:
            return SpanStatusCode(text.upper())
        except ValueError:
            raise ValueError(
                f"Invalid span status {value!r}: use one of 'OK', 'ERROR', 'UNSET'."
            ) from None


_TO_OTEL = {
    SpanStatusCode.UNSET: otel_trace.StatusCode.UNSET,
    SpanStatusCode.OK: otel_trace.StatusCode.OK,
    SpanStatusCode.ERROR: otel_trace.StatusCode.ERROR,
}
_FROM_OTEL = {v: k for k, v in _TO_OTEL.items()}


@dataclass
class SpanStatus:
    """Status of a span or a trace.

    Args:
        status_code: A :class:`SpanStatusCode` or its name (``"OK"``, ``"ERROR"``, ``"UNSET"``).
        description: Message of an ERROR status.
    """

    status_code: SpanStatusCode
    description: str = ""

    def __post_init__(self) -> None:
        self.status_code = SpanStatusCode.parse(self.status_code)

    def to_otel_status(self) -> otel_trace.Status:
        code = _TO_OTEL[self.status_code]
        if code is otel_trace.StatusCode.ERROR:
            return otel_trace.Status(code, self.description or None)
        return otel_trace.Status(code)

    @classmethod
    def from_otel_status(cls, status: otel_trace.Status) -> SpanStatus:
        return cls(_FROM_OTEL.get(status.status_code, SpanStatusCode.UNSET), status.description or "")
