"""Encoding of trace/span ids and timestamps exactly as MLflow renders them (timestamps through
the one protobuf-JSON mapping, :mod:`flowtel.entities._protojson`)."""

from __future__ import annotations

import base64
import binascii

from flowtel.entities._constants import TRACE_ID_PREFIX
from flowtel.entities._protojson import format_timestamp, parse_timestamp


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


def format_timestamp_ms(ms: int) -> str:
    """RFC 3339 UTC like protobuf's JSON mapping of a Timestamp at millisecond precision."""
    return format_timestamp(ms)


def parse_timestamp_ms(value: str | int | float) -> int:
    """Milliseconds since the epoch from an RFC 3339 string (or a number of ms)."""
    if isinstance(value, (int, float)):
        return int(value)
    return parse_timestamp(value.strip())
