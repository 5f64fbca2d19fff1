"""Encoding of trace/span ids and timestamps exactly as MLflow renders them."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime, timezone

from flowtel.entities._constants import TRACE_ID_PREFIX


def trace_id_from_otel(otel_trace_id: int) -> str:
    """MLflow trace id (``tr-<32 hex>``) of an OTel trace id."""
    return _TRACE_ID_FORMAT % otel_trace_id


_TRACE_ID_FORMAT = TRACE_ID_PREFIX + "%032x"


def otel_trace_id_from_mlflow(trace_id: str) -> int | None:
    """OTel trace id of an MLflow ``tr-`` id, or None when it is not of that form."""
    if type(trace_id) is not str or not trace_id.startswith(TRACE_ID_PREFIX):
        return None
    try:
        return int(trace_id[len(TRACE_ID_PREFIX):], 16)
    except ValueError:
        return None


def span_id_hex(span_id: int) -> str:
    return format(span_id, "016x")


def encode_trace_id_b64(trace_id: int) -> str:
    return base64.b64encode(trace_id.to_bytes(16, "big")).decode("ascii")


def encode_span_id_b64(span_id: int) -> str:
    return base64.b64encode(span_id.to_bytes(8, "big")).decode("ascii")


def decode_id_b64(value: str) -> int:
    return int.from_bytes(base64.b64decode(value), "big")


def is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def format_timestamp_ms(ms: int) -> str:
    """RFC 3339 UTC like protobuf's JSON mapping of a Timestamp at millisecond precision."""
    seconds, millis = divmod(ms, 1000)
    global _last_second
    last = _last_second  # traces come in time order: most share the second of the previous one
    if last[0] == seconds:
        text = last[1]
    else:
        text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, text)
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp_ms(value: str | int | float) -> int:
    """Milliseconds since the epoch from an RFC 3339 string (or a number of ms)."""
    if isinstance(value, (int, float)):
        return int(value)
    match = _RFC3339.match(value.strip())
    if not match:
        raise ValueError(f"Invalid RFC 3339 timestamp: {value!r}")
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    base = datetime.fromisoformat(f"{date}T{clock}{zone}")
    seconds = int(base.timestamp())
    nanos = int((fraction or "0").ljust(9, "0"))
    return seconds * 1000 + nanos // 1_000_000
