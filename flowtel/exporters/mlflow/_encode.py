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
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Status
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
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

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
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
    resource = PbResource(attributes=_key_values(resource_attributes()))
    spans = [pb for trace in traces for pb in _trace_spans(trace)]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def _trace_spans(trace: Trace) -> list[PbSpan]:
    spans = [span_to_proto(span) for span in trace.data.spans]
    parent = distributed_parent(trace)
    if parent is not None:
        # The caller's span in another process: the server joins both processes' spans in one tree.
        for pb in spans:
            if not pb.parent_span_id:
                pb.parent_span_id = parent.span_id.to_bytes(8, "big")
    return spans


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
    otel = span._span
    context = otel.context
    parent = otel.parent
    status = otel.status
    pb = PbSpan(
        trace_id=context.trace_id.to_bytes(16, "big"),
        span_id=context.span_id.to_bytes(8, "big"),
        name=otel.name,
        kind=_KIND_TO_PROTO.get(otel.kind, PbSpan.SPAN_KIND_INTERNAL),  # type: ignore[arg-type]
        start_time_unix_nano=otel.start_time or 0,
        end_time_unix_nano=otel.end_time or 0,
        attributes=[_attribute(k, v) for k, v in _raw_attributes(span).items()],
        events=[
            PbSpan.Event(
                name=e.name, time_unix_nano=e.timestamp, attributes=_key_values(e.attributes or {})
            )
            for e in otel.events
        ],
        links=[_link_to_proto(link) for link in otel.links or ()],
        status=Status(code=_STATUS_CODES[status.status_code], message=status.description or ""),
    )
    if parent is not None:
        pb.parent_span_id = parent.span_id.to_bytes(8, "big")
    return pb


def _raw_attributes(span: Span) -> dict[str, Any]:
    """The span's attributes as MLflow stores them (JSON strings), including the keys flowtel
    derives when a span is read (trace id, default log level) rather than on the hot path."""
    raw = getattr(span, "_raw_attributes", None)
    return raw() if callable(raw) else dict(span._span.attributes or {})


def _link_to_proto(link: Link) -> PbSpan.Link:
    return PbSpan.Link(
        trace_id=link.context.trace_id.to_bytes(16, "big"),
        span_id=link.context.span_id.to_bytes(8, "big"),
        attributes=_key_values(link.attributes or {}),
    )


def _key_values(attributes: Any) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=to_any_value(v)) for k, v in attributes.items()]


def _attribute(key: str, raw: Any) -> KeyValue:
    """The KeyValue of a span attribute; small ones (span types, names, levels...) repeat a
    lot, so their messages are built once and reused (protobuf copies them in C)."""
    cacheable = isinstance(raw, str) and len(raw) <= _CACHED_VALUE_CHARS
    if cacheable:
        cached = _attribute_cache.get((key, raw))
        if cached is not None:
            return cached
    kv = KeyValue(key=key, value=attribute_any_value(raw))
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
    if not isinstance(raw, str):
        return to_any_value(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        return AnyValue(string_value=_clean(raw))
    if isinstance(value, str) and _is_json_container_or_string(value):
        # Sent JSON-encoded so that the server's one-layer strip restores this exact string.
        return AnyValue(string_value=_clean(raw))
    return to_any_value(value)


def _is_json_container_or_string(text: str) -> bool:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '"{[':
        return False
    try:
        return isinstance(json.loads(text), (str, dict, list))
    except ValueError:
        return False


def to_any_value(value: Any) -> AnyValue:
    """Native typed AnyValue (MLflow's ``_set_otel_proto_anyvalue``); None is an empty value."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=_clean(value))
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (bytes, bytearray)):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[to_any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=_key_values(value)))
    return AnyValue(string_value=_clean(str(value)))


def _clean(text: str) -> str:
    # Protobuf strings must be valid UTF-8; lone surrogates would make serialization fail.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


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
