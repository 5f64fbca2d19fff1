"""The one protobuf-JSON mapping of flowtel: ``google.protobuf.Timestamp`` (RFC 3339 strings)
and ``google.protobuf.Value`` (JSON-like values), exactly as MLflow renders them with
``MessageToDict`` / reads them with ``ParseDict``.

NaN/Infinity policy (MLflow's): a ``Value`` cannot hold a non-finite number. protobuf's JSON
printer refuses to write one ("Fail to serialize NaN for Value.number_value"), so MLflow raises
``ValueError`` when such an assessment value is serialised; flowtel does the same, before
anything is sent or stored. (Span attributes are not ``Value``s: they are JSON strings, where
MLflow writes the bare ``NaN``/``Infinity`` tokens; see ``tracing/_serialize.py``.)

Stdlib only: this module must never import mlflow or protobuf.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

__all__ = [
    "format_timestamp",
    "parse_timestamp",
    "to_pb_value",
]

_TIMESTAMP_SECONDS_MIN = -62135596800  # 0001-01-01T00:00:00Z
_TIMESTAMP_SECONDS_MAX = 253402300799  # 9999-12-31T23:59:59Z
_SECONDS_PER_DAY = 24 * 3600
_NANOS_PER_MILLI = 1_000_000
_NANOS_PER_SECOND = 1_000_000_000
_EPOCH = datetime.datetime(1970, 1, 1)
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"

# ``json_format.ParseDict``'s default ``max_recursion_depth`` (one level per Value, Struct and
# ListValue message converted).
_PARSE_DEPTH_LIMIT = 100
# upb's nesting limit hit when MLflow copies the Value into the Assessment message; counted as
# 1 per Value, +1 per ListValue, +2 per Struct (Struct + map entry).
_MESSAGE_DEPTH_LIMIT = 101


# -- Timestamp ------------------------------------------------------------------------------------
def format_timestamp(millis: int | float) -> str:
    """Epoch milliseconds as protobuf's Timestamp JSON: ``...:25.316Z``, or ``...:25Z`` on a
    whole second. Fast for successive times of the same second (the common case).

    Raises:
        ValueError: outside protobuf's range (years 1 to 9999), with protobuf's message.
    """
    millis = math.floor(millis) if isinstance(millis, float) else int(millis)
    seconds, rem_millis = divmod(millis, 1000)
    global _last_second
    last = _last_second
    if last[0] == seconds:
        text = last[1]
    else:
        _check_timestamp(seconds, rem_millis * _NANOS_PER_MILLI)
        day_seconds = seconds % _SECONDS_PER_DAY
        days = (seconds - day_seconds) // _SECONDS_PER_DAY
        text = (_EPOCH + datetime.timedelta(days, day_seconds)).isoformat()
        _last_second = (seconds, text)
    return f"{text}.{rem_millis:03d}Z" if rem_millis else f"{text}Z"


_last_second: tuple[int, str] = (0, "1970-01-01T00:00:00")


def parse_timestamp(value: str) -> int:
    """Epoch milliseconds of an RFC 3339 string, like protobuf's ``Timestamp.FromJsonString``
    then ``ToMilliseconds``: up to 9 fractional digits (sub-millisecond digits floored away),
    ``Z`` or ``±HH:MM`` offsets.

    Raises:
        ValueError: not a string protobuf accepts (protobuf's message).
    """
    if not isinstance(value, str):
        raise ValueError(f"Timestamp JSON value not a string: {value!r}")
    position = _split_timezone(value)
    clock, _, fraction = value[:position].partition(".")
    if "t" in clock:
        raise ValueError(
            f"time data '{clock}' does not match format '{_TIMESTAMP_FORMAT}', "
            "lowercase 't' is not accepted"
        )
    delta = datetime.datetime.strptime(clock, _TIMESTAMP_FORMAT) - _EPOCH
    seconds = delta.seconds + delta.days * _SECONDS_PER_DAY
    nanos = _parse_nanos(fraction)
    seconds += _timezone_shift_seconds(value, position)
    _check_timestamp(seconds, nanos)
    return seconds * 1000 + nanos // _NANOS_PER_MILLI


def _check_timestamp(seconds: int, nanos: int) -> None:
    if seconds < _TIMESTAMP_SECONDS_MIN or seconds > _TIMESTAMP_SECONDS_MAX:
        raise ValueError(
            f"Timestamp is not valid: Seconds {seconds} must be in range "
            f"[{_TIMESTAMP_SECONDS_MIN}, {_TIMESTAMP_SECONDS_MAX}]."
        )
    if nanos < 0 or nanos >= _NANOS_PER_SECOND:
        raise ValueError(f"Timestamp is not valid: Nanos {nanos} must be in a range [0, 999999].")


def _split_timezone(value: str) -> int:
    position = value.find("Z")
    if position == -1:
        position = value.find("+")
    if position == -1:
        position = value.rfind("-")
    if position == -1:
        raise ValueError("Failed to parse timestamp: missing valid timezone offset.")
    return position


def _parse_nanos(fraction: str) -> int:
    if len(fraction) > 9:
        raise ValueError(
            f"Failed to parse Timestamp: nanos {fraction} more than 9 fractional digits."
        )
    return round(float("0." + fraction) * 1e9) if fraction else 0


def _timezone_shift_seconds(value: str, position: int) -> int:
    if value[position] == "Z":
        if len(value) != position + 1:
            raise ValueError(f"Failed to parse timestamp: invalid trailing data {value}.")
        return 0
    zone = value[position:]
    colon = zone.find(":")
    if colon == -1:
        raise ValueError(f"Invalid timezone offset value: {zone}.")
    offset = (int(zone[1:colon]) * 60 + int(zone[colon + 1 :])) * 60
    return -offset if zone[0] == "+" else offset


# -- Value ----------------------------------------------------------------------------------------
def to_pb_value(value: Any) -> Any:
    """``value`` as a round trip through ``google.protobuf.Value`` leaves it.

    Numbers become floats, tuples become lists, str/int/float subclasses become plain builtins.

    Raises:
        TypeError: A value (or dict key) that ``google.protobuf.Value`` cannot hold.
        ValueError: NaN/Infinity (see the module docstring), or nesting deeper than protobuf
            accepts.
        OverflowError: An int too large for a double.
    """
    converted, message_depth = _convert_value(value, frame=1)
    if message_depth > _MESSAGE_DEPTH_LIMIT:
        raise ValueError(
            "Error parsing message with type 'google.protobuf.Value': value nested too deeply."
        )
    return converted


def _check_parse_frame(frame: int) -> None:
    if frame > _PARSE_DEPTH_LIMIT:
        raise ValueError(f"Message too deep. Max recursion depth is {_PARSE_DEPTH_LIMIT}")


def _convert_value(value: Any, frame: int) -> tuple[Any, int]:
    """The normalised value and its message nesting depth (upb counting)."""
    _check_parse_frame(frame)
    if isinstance(value, dict):
        return _convert_struct(value, frame + 1)
    if isinstance(value, (list, tuple)):
        return _convert_list(value, frame + 1)
    return _convert_scalar(value), 1


def _convert_struct(value: dict[Any, Any], frame: int) -> tuple[dict[str, Any], int]:
    _check_parse_frame(frame)
    result: dict[str, Any] = {}
    deepest = 0
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"Struct keys must be strings, got {type(key).__name__}: {key!r}")
        result[str.__str__(key)], depth = _convert_value(item, frame + 1)
        deepest = max(deepest, depth + 1)  # + the map entry message
    return result, 2 + deepest


def _convert_list(value: list[Any] | tuple[Any, ...], frame: int) -> tuple[list[Any], int]:
    _check_parse_frame(frame)
    result: list[Any] = []
    deepest = 0
    for item in value:
        converted, depth = _convert_value(item, frame + 1)
        result.append(converted)
        deepest = max(deepest, depth)
    return result, 2 + deepest


def _convert_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, (int, float)):
        number = float(value)
        if math.isinf(number):
            raise ValueError(
                "Fail to serialize Infinity for Value.number_value, which would parse as "
                "string_value"
            )
        if math.isnan(number):
            raise ValueError(
                "Fail to serialize NaN for Value.number_value, which would parse as string_value"
            )
        return number
    raise TypeError(f"Value {value!r} has unexpected type {type(value)} at Value")
