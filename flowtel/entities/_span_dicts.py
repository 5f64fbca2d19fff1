"""Between SDK span parts and MLflow span dicts: span contexts and ids decoded from a dict, links
to and from dicts, and the copy of a cached span dict that ``Span.to_dict`` hands out."""

from __future__ import annotations

import copy
from typing import Any

from opentelemetry.trace import SpanContext, TraceFlags

from flowtel.entities import _ids


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _decode_ids(data: dict[str, Any]) -> tuple[int, int, int | None]:
    raw_trace = str(data["trace_id"])
    parent = data.get("parent_span_id")
    if _ids.is_base64(raw_trace) and not raw_trace.startswith("tr-"):
        return (
            _ids.decode_id_b64(raw_trace),
            _ids.decode_id_b64(data["span_id"]),
            _ids.decode_id_b64(parent) if parent else None,
        )
    otel_trace = _ids.otel_trace_id_from_mlflow(raw_trace)
    trace_id = otel_trace if otel_trace is not None else int(raw_trace.removeprefix("0x"), 16)
    return (
        trace_id,
        int(str(data["span_id"]).removeprefix("0x"), 16),
        int(str(parent).removeprefix("0x"), 16) if parent else None,
    )


# -- copying a cached span dict ------------------------------------------------------------------
# ``Span.to_dict`` hands out a copy of its cached dict. ``copy.deepcopy`` costs ~20 µs a span;
# the dict has a known shape (see ``Span._build_dict``), so it is copied by hand instead, and
# anything off that shape goes to ``copy.deepcopy``. Immutable values (scalars, tuples of
# scalars) are shared, as deepcopy shares them; every dict and list is new.
_ATOMIC_TYPES = frozenset((str, int, float, bool, type(None)))
_SPAN_DICT_SCALAR_KEYS = (
    "trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano", "end_time_unix_nano",
)
_SPAN_DICT_KEYS = frozenset((*_SPAN_DICT_SCALAR_KEYS, "events", "status", "attributes", "links"))


class _UnexpectedShape(Exception):
    pass


def _copy_span_dict(cached: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``Span._build_dict`` dict sharing no mutable object with it; equal to
    ``copy.deepcopy(cached)``."""
    try:
        return _copy_span_dict_fast(cached)
    except _UnexpectedShape:
        return copy.deepcopy(cached)


def _copy_span_dict_fast(cached: Any) -> dict[str, Any]:
    if type(cached) is not dict or cached.keys() != _SPAN_DICT_KEYS:
        raise _UnexpectedShape
    for key in _SPAN_DICT_SCALAR_KEYS:
        if type(cached[key]) not in _ATOMIC_TYPES:
            raise _UnexpectedShape
    events = cached["events"]
    links = cached["links"]
    if type(events) is not list or type(links) is not list:
        raise _UnexpectedShape
    out = cached.copy()
    out["events"] = [_copy_record(event) for event in events] if events else []
    out["links"] = [_copy_record(link) for link in links] if links else []
    out["status"] = _copy_flat_dict(cached["status"])
    out["attributes"] = _copy_flat_dict(cached["attributes"])
    return out


def _copy_record(record: Any) -> dict[str, Any]:
    """An event or link dict: scalars, and an ``attributes`` dict (or None)."""
    if type(record) is not dict:
        raise _UnexpectedShape
    out = record.copy()
    for key, value in record.items():
        if type(key) is not str:
            raise _UnexpectedShape
        if type(value) in _ATOMIC_TYPES:
            continue
        if key == "attributes":
            out[key] = _copy_flat_dict(value)
        else:
            raise _UnexpectedShape
    return out


def _copy_flat_dict(data: Any) -> dict[str, Any]:
    """A dict of str keys to scalars or lists/tuples of scalars (attributes, status)."""
    if type(data) is not dict:
        raise _UnexpectedShape
    out = data.copy()
    for key, value in data.items():
        if type(key) is not str:
            raise _UnexpectedShape
        kind = type(value)
        if kind in _ATOMIC_TYPES:
            continue  # the usual case: span attribute values are JSON strings
        if kind is not list and kind is not tuple:
            raise _UnexpectedShape
        for item in value:
            if type(item) not in _ATOMIC_TYPES:
                raise _UnexpectedShape
        if kind is list:
            out[key] = value.copy()  # a tuple of scalars is immutable: deepcopy shares it too
    return out


def _link_to_dict(link: Any) -> dict[str, Any]:
    return {
        "trace_id": _ids.trace_id_from_otel(link.context.trace_id),
        "span_id": _ids.span_id_hex(link.context.span_id),
        "attributes": dict(link.attributes) if link.attributes else None,
    }


def _links_from_dicts(links: list[dict[str, Any]], trace_id: int) -> list[Any]:
    from opentelemetry.trace import Link

    result = []
    for link in links:
        link_trace = _ids.otel_trace_id_from_mlflow(str(link.get("trace_id", ""))) or trace_id
        result.append(
            Link(_context(link_trace, int(str(link["span_id"]), 16)), link.get("attributes") or None)
        )
    return result
