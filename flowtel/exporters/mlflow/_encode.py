"""flowtel spans <-> OTLP protobuf, the way MLflow's client and server convert them.

Write side: :func:`encode_traces` builds the ``ExportTraceServiceRequest`` body of
``POST /v1/traces``. Span attributes, which flowtel keeps as MLflow JSON strings, are sent as
*native typed* AnyValues (string / int / double / bool / kvlist / array), as MLflow's own client
does; the server JSON-encodes each value once on ingest. One case is sent differently: a string
value whose text is itself JSON for a string, object or array. The server strips one JSON layer
from such values (``sanitize_attributes``), so MLflow's client turns the string ``'{"a": 1}'``
into the object ``{"a": 1}``; flowtel sends it JSON-encoded, so after the strip it is stored as
the same string it was.

Read side: :func:`span_from_otlp_dict` turns a span of a ``GetTrace`` / ``BatchGetTraces``
response (OTLP proto JSON) into a flowtel :class:`~flowtel.entities.Span`, like MLflow's
``Span.from_otel_proto``: every attribute becomes a JSON string again and
``mlflow.traceRequestId`` is derived from the OTLP trace id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    KeyValue,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace import Status as OTelStatus
from opentelemetry.trace import StatusCode as OTelStatusCode

from flowtel._version import __version__
from flowtel.entities import Span
from flowtel.entities._constants import SpanAttributeKey
from flowtel.entities._ids import otel_trace_id_from_mlflow, trace_id_from_otel
from flowtel.entities._json import dump_json
from flowtel.exporters._otlp_proto import (
    add_attributes,
    encode_span,
    is_json_text,
    set_string,
    set_value,
)
from flowtel.tracing._finalize import remote_parent_of

if TYPE_CHECKING:
    from flowtel.entities import Trace

__all__ = [
    "attribute_any_value",
    "distributed_parent",
    "encode_traces",
    "span_from_otlp_dict",
    "span_from_proto",
    "span_to_proto",
    "to_any_value",
]

_STATUS_CODES = {
    OTelStatusCode.UNSET: Status.STATUS_CODE_UNSET,
    OTelStatusCode.OK: Status.STATUS_CODE_OK,
    OTelStatusCode.ERROR: Status.STATUS_CODE_ERROR,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_CODES.items()}
# OTel SDK SpanKind values are 0-based, OTLP's are 1-based (0 is UNSPECIFIED).
_KIND_TO_PROTO = {kind: kind.value + 1 for kind in SpanKind}
_KIND_FROM_PROTO = {v: k for k, v in _KIND_TO_PROTO.items()}
_EMPTY_RESOURCE = Resource.get_empty()


# -- write side ----------------------------------------------------------------------------------
def encode_traces(traces: Sequence[Trace]) -> bytes:
    """Serialized ``ExportTraceServiceRequest`` carrying every span of ``traces``."""
    body: bytes = build_request(traces).SerializeToString()
    return body


def build_request(traces: Sequence[Trace]) -> ExportTraceServiceRequest:
    """One ``ResourceSpans`` with every span of ``traces``, in trace order."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    add_attributes(resource_spans.resource.attributes, resource_attributes().items())
    spans = resource_spans.scope_spans.add().spans
    for trace in traces:
        # The caller's span in another process: the server joins both processes' spans in one tree.
        parent = distributed_parent(trace)
        for span in trace.data.spans:
            encode_span(spans.add(), span, write_attributes=_mlflow_attributes, root_parent=parent)
    return request


def distributed_parent(trace: Trace) -> SpanContext | None:
    """The span of another process (W3C trace context) that this trace continues, if any.

    Such a trace is shipped as spans only, under that span, and the caller's process sends the
    trace info (MLflow's distributed tracing). An application's own in-process OTel span as
    parent does not count: it never reaches MLflow, so there the flowtel root stays a root.
    """
    parent = remote_parent_of(trace)
    return parent if parent is not None and parent.is_remote else None


def resource_attributes() -> dict[str, Any]:
    """What MLflow's client sends: the SDK identity, plus ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` when set (the server turns those into trace tags). The OTel
    SDK's defaults (``unknown_service``, a random ``service.instance.id``) are left out: they
    would become meaningless tags on every trace."""
    attrs: dict[str, Any] = dict(OTELResourceDetector().detect().attributes)
    attrs.update({
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "flowtel",
        "telemetry.sdk.version": __version__,
    })
    return attrs


def span_to_proto(span: Span) -> PbSpan:
    """The OTLP span of a finished flowtel span (native typed attribute values)."""
    pb = PbSpan()
    encode_span(pb, span, write_attributes=_mlflow_attributes)
    return pb


def _mlflow_attributes(pb: PbSpan, span: Span) -> tuple[str, SpanKind]:
    """MLflow's convention: every attribute, natively typed; name and kind as recorded."""
    attributes = pb.attributes
    for key, raw in _raw_attributes(span).items():
        attributes.append(_attribute(key, raw))
    return span._span.name, span._span.kind


def _raw_attributes(span: Span) -> dict[str, Any]:
    """The span's attributes as MLflow stores them (JSON strings), including the keys flowtel
    derives when a span is read (trace id, default log level) rather than on the hot path."""
    raw = getattr(span, "_raw_attributes", None)
    return raw() if callable(raw) else dict(span._span.attributes or {})


def _attribute(key: str, raw: Any) -> KeyValue:
    """The KeyValue of a span attribute; small ones (span types, names, levels...) repeat a
    lot, so their messages are built once and reused (protobuf copies them in C)."""
    cacheable = isinstance(raw, str) and len(raw) <= _CACHED_VALUE_CHARS
    if cacheable:
        cached = _attribute_cache.get((key, raw))
        if cached is not None:
            return cached
    kv = KeyValue(key=key)
    set_attribute_value(kv.value, raw)
    if cacheable:
        if len(_attribute_cache) >= _ATTRIBUTE_CACHE_SIZE:
            _attribute_cache.clear()
        _attribute_cache[(key, raw)] = kv
    return kv


_CACHED_VALUE_CHARS = 64
_ATTRIBUTE_CACHE_SIZE = 4096
_attribute_cache: dict[tuple[str, str], KeyValue] = {}


def attribute_any_value(raw: Any) -> AnyValue:
    """AnyValue of one flowtel span attribute (a JSON string, or a raw OTel value)."""
    value = AnyValue()
    set_attribute_value(value, raw)
    return value


def set_attribute_value(target: AnyValue, raw: Any) -> None:
    """Set ``target`` from a flowtel span attribute (a JSON string, or a raw OTel value): the
    decoded value, natively typed, except JSON text in a string (see the module docstring)."""
    if not isinstance(raw, str):
        set_value(target, raw)
        return
    try:
        value = json.loads(raw)
    except ValueError:
        set_string(target, raw)
        return
    if isinstance(value, str) and is_json_text(value):
        # Sent JSON-encoded so that the server's one-layer strip restores this exact string.
        set_string(target, raw)
        return
    set_value(target, value)


def to_any_value(value: Any) -> AnyValue:
    """Native typed AnyValue (MLflow's ``_set_otel_proto_anyvalue``); None is an empty value."""
    target = AnyValue()
    set_value(target, value)
    return target


# -- read side -----------------------------------------------------------------------------------
def span_from_otlp_dict(data: dict[str, Any]) -> Span:
    """A flowtel span from one OTLP-proto-JSON span of a GetTrace/BatchGetTraces response.

    Raises:
        ValueError: the dict is not a valid OTLP span.
    """
    pb = PbSpan()
    try:
        json_format.ParseDict(data, pb, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(f"Invalid OTLP span in the server response: {exc}") from None
    return span_from_proto(pb)


def span_from_proto(pb: PbSpan) -> Span:
    """A flowtel span from an OTLP span, attribute values JSON-encoded as MLflow stores them."""
    if not pb.trace_id or not pb.span_id:
        raise ValueError("An OTLP span needs a trace_id and a span_id.")
    trace_id = int.from_bytes(pb.trace_id, "big")
    attributes = {kv.key: dump_json(from_any_value(kv.value)) for kv in pb.attributes}
    attributes[SpanAttributeKey.REQUEST_ID] = json.dumps(trace_id_from_otel(trace_id))
    parent = int.from_bytes(pb.parent_span_id, "big") if pb.parent_span_id else None
    readable = ReadableSpan(
        name=pb.name,
        context=_context(trace_id, int.from_bytes(pb.span_id, "big")),
        parent=_context(trace_id, parent) if parent else None,
        kind=_KIND_FROM_PROTO.get(pb.kind, SpanKind.INTERNAL),
        start_time=pb.start_time_unix_nano,
        end_time=pb.end_time_unix_nano or None,
        attributes=attributes,
        status=OTelStatus(_STATUS_FROM_PROTO.get(pb.status.code, OTelStatusCode.UNSET),
                          pb.status.message or None),
        events=[
            Event(name=e.name, timestamp=e.time_unix_nano, attributes=_decoded(e.attributes))
            for e in pb.events
        ],
        links=[_link_from_proto(link) for link in pb.links],
        resource=_EMPTY_RESOURCE,
    )
    return Span(readable)


def _link_from_proto(link: PbSpan.Link) -> Link:
    context = _context(int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"))
    return Link(context, _decoded(link.attributes) or None)


def _decoded(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: from_any_value(kv.value) for kv in key_values}


def from_any_value(value: AnyValue) -> Any:
    """Python value of an AnyValue (MLflow's ``_decode_otel_proto_anyvalue``)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [from_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: from_any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def otel_trace_id_bytes(trace_id: str) -> bytes | None:
    """16 bytes of the OTel trace id behind an MLflow ``tr-`` id, or None."""
    otel_id = otel_trace_id_from_mlflow(trace_id)
    return otel_id.to_bytes(16, "big") if otel_id is not None else None
