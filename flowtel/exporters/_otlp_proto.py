"""The one encoder of a flowtel span to an OTLP protobuf span, shared by the MLflow exporter
(``POST /v1/traces`` of an MLflow server) and the OTLP exporter.

:func:`encode_span` writes what every destination gets the same way (ids, parent, times, events,
links, status) into a ``Span`` message in place; the destination's attribute convention is a
function it passes in (MLflow's native typed values, the OTLP exporter's MLflow / GenAI
semconv views). Both exporters import this module, never each other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags, Status
from opentelemetry.trace import SpanKind, StatusCode

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from flowtel.entities import Span

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "AttributeWriter",
    "add_attributes",
    "encode_span",
    "is_json_text",
    "set_string",
    "set_value",
]

AttributeWriter = Callable[[PbSpan, "Span"], tuple[str, SpanKind]]
"""Adds a span's attributes to the message in a destination's convention; returns the span's
name and kind in that convention."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_KIND = {kind: kind.value + 1 for kind in SpanKind}  # OTLP's enum is 1-based (0 is UNSPECIFIED)
_STATUS = {StatusCode.UNSET: Status.STATUS_CODE_UNSET, StatusCode.OK: Status.STATUS_CODE_OK,
           StatusCode.ERROR: Status.STATUS_CODE_ERROR}
_INTERNAL, _OK = SpanKind.INTERNAL, StatusCode.OK
_LOCAL_PARENT_FLAGS = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_REMOTE_PARENT_FLAGS = _LOCAL_PARENT_FLAGS | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


def encode_span(
    pb: PbSpan,
    span: Span,
    *,
    write_attributes: AttributeWriter,
    root_parent: SpanContext | None = None,
    trace_id: bytes | None = None,
    w3c_context: bool = False,
) -> bool:
    """Fill ``pb`` from a finished flowtel span. Returns whether the span is a local root.

    Args:
        write_attributes: The destination's attribute convention.
        root_parent: Parent given to a local root (a span outside flowtel it continues).
        trace_id: The trace id's 16 bytes, when the caller already has them.
        w3c_context: Also send the W3C trace state and the parent's is-remote flags.
    """
    otel = span._span
    context = otel.context
    pb.trace_id = trace_id if trace_id is not None else context.trace_id.to_bytes(16, "big")
    pb.span_id = context.span_id.to_bytes(8, "big")
    if w3c_context and context.trace_state:
        pb.trace_state = context.trace_state.to_header()
    parent = otel.parent
    is_root = parent is None
    if is_root:
        parent = root_parent
    if parent is not None:
        pb.parent_span_id = parent.span_id.to_bytes(8, "big")
    if w3c_context:
        pb.flags = _REMOTE_PARENT_FLAGS if parent is not None and parent.is_remote else _LOCAL_PARENT_FLAGS
    pb.start_time_unix_nano = otel.start_time or 0
    if otel.end_time:
        pb.end_time_unix_nano = otel.end_time
    name, kind = write_attributes(pb, span)
    pb.name = name
    pb.kind = PbSpan.SPAN_KIND_INTERNAL if kind is _INTERNAL else _KIND.get(kind, PbSpan.SPAN_KIND_INTERNAL)  # type: ignore[assignment]
    for event in _events(otel):
        pb_event = pb.events.add()
        pb_event.name = event.name
        pb_event.time_unix_nano = event.timestamp
        if event.attributes:
            add_attributes(pb_event.attributes, event.attributes.items())
    for link in _links(otel):
        pb_link = pb.links.add()
        pb_link.trace_id = link.context.trace_id.to_bytes(16, "big")
        pb_link.span_id = link.context.span_id.to_bytes(8, "big")
        if link.attributes:
            add_attributes(pb_link.attributes, link.attributes.items())
    status = otel.status
    code = status.status_code
    pb.status.code = Status.STATUS_CODE_OK if code is _OK else _STATUS[code]
    if status.description:
        pb.status.message = status.description
    return is_root


def _events(span: Any) -> Any:
    # The SDK's ``events`` / ``links`` properties copy the list under a lock on every access.
    events = getattr(span, "_events", None)
    return span.events if events is None else events


def _links(span: Any) -> Any:
    links = getattr(span, "_links", None)
    return (span.links or ()) if links is None else links


# -- values ----------------------------------------------------------------------------------------
def add_attributes(target: Any, items: Iterable[tuple[Any, Any]]) -> None:
    """Append ``KeyValue``s with native typed values to a repeated attributes field."""
    for key, value in items:
        kv: KeyValue = target.add()
        kv.key = str(key)
        set_value(kv.value, value)


def set_value(target: AnyValue, value: Any) -> None:
    """Set ``target`` from a Python value, natively typed (MLflow's client's
    ``_set_otel_proto_anyvalue``); None leaves it empty; an int beyond int64 goes as its digits."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, str):
        set_string(target, value)
    elif isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif isinstance(value, Mapping):
        target.kvlist_value.SetInParent()
        add_attributes(target.kvlist_value.values, value.items())
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            set_value(target.array_value.values.add(), item)
    else:
        set_string(target, str(value))


def set_string(target: AnyValue, text: str) -> None:
    try:
        target.string_value = text
    except (ValueError, UnicodeError):
        # Protobuf strings must be valid UTF-8; lone surrogates are replaced.
        target.string_value = text.encode("utf-8", errors="replace").decode("utf-8")


def is_json_text(text: str) -> bool:
    """Whether ``text`` is itself the JSON of a string, object or array. MLflow's server strips
    one JSON layer from such string attributes, so they are sent JSON-encoded once more."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '"{[':
        return False
    try:
        return isinstance(json.loads(text), (str, dict, list))
    except ValueError:
        return False
