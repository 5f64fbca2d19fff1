"""flowtel traces -> an OTLP ``ExportTraceServiceRequest``, in the chosen attribute conventions.

Spans keep their ids, times, kind, status, events and links. A trace that continues a span
outside flowtel (an application's OTel span, a caller in another process) gets that parent
back on its local root, so an OTLP backend shows one tree.

Trace-level data has no place of its own in OTLP, so it travels on the trace's (local) root span
(:func:`trace_attributes`):

* ``mlflow.traceTag.<key>`` for each trace tag, in every convention (MLflow's server turns them
  back into tags, including ``mlflow.traceName``); tags the server assigns itself are left out;
* ``session.id`` / ``user.id`` (OTel semconv, also read by MLflow's server and Phoenix);
* with ``mlflow`` / ``both``: ``mlflow.clientRequestId`` and ``mlflow.traceMetadata.<key>`` for the
  client request id and the other metadata (MLflow 3.17's server keeps them as root span
  attributes only). Metadata derived from the spans (previews, token usage, size stats) is not
  sent: every backend can recompute it;
* with ``genai`` / ``both``: OpenInference's ``metadata`` and ``tag.tags``
  (:mod:`flowtel.exporters.otlp._openinference`).

With ``genai`` and ``both``, feedback and expectations delivered with the trace go out as
``gen_ai.evaluation.result`` span events, and ``genai`` replaces a stream's chunk events by one
summary event (:mod:`flowtel.exporters.otlp._events`).

Attribute values, stored as MLflow JSON strings, go out as plain OTel values: strings, numbers
and booleans natively, objects and arrays as their JSON text (OTel Python has no structured
attribute values yet, and this is what the GenAI semconv asks for meanwhile). A string whose
text is itself JSON keeps its JSON encoding, so that MLflow's server, which strips one JSON
layer from such strings, stores it unchanged. ``mlflow.traceRequestId`` is not sent: it is the
OTLP trace id (MLflow's server derives it on ingest).

The protobuf messages are built in place, field by field, by the span encoder shared with the
MLflow exporter (:mod:`flowtel.exporters._otlp_proto`; this module adds the conventions): about
2.5 times faster than turning the spans into ``ReadableSpan`` objects for the OTel SDK's
generic encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.trace import SpanKind

from flowtel._errors import report_internal_error
from flowtel.entities._constants import SpanAttributeKey, TraceMetadataKey, TraceTagKey
from flowtel.exporters._otlp_proto import (
    INT64_MAX,
    INT64_MIN,
    add_attributes,
    encode_span,
    is_json_text,
    set_string,
    set_value,
)
from flowtel.exporters.otlp import _openinference
from flowtel.exporters.otlp._events import assessments_by_span, replace_chunk_events, write_evaluation_events
from flowtel.exporters.otlp._genai import CONVERSATION_ID, genai_view
from flowtel.tracing._app_spans import CapturedSpan
from flowtel.tracing._finalize import remote_parent_of

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from flowtel.entities import Span, Trace, TraceInfo

__all__ = [
    "AUTO",
    "CLIENT_REQUEST_ID",
    "CONVENTIONS",
    "SESSION_ID",
    "TRACE_METADATA_PREFIX",
    "TRACE_TAG_PREFIX",
    "USER_ID",
    "Conventions",
    "SpanEncoder",
    "trace_attributes",
]

Conventions = Literal["mlflow", "genai", "both"]
CONVENTIONS: tuple[str, ...] = ("mlflow", "genai", "both")
#: ``conventions`` setting that picks one of :data:`CONVENTIONS` from the receiver (the default).
AUTO = "auto"

TRACE_TAG_PREFIX = "mlflow.traceTag."
TRACE_METADATA_PREFIX = "mlflow.traceMetadata."
CLIENT_REQUEST_ID = "mlflow.clientRequestId"
SESSION_ID = "session.id"
USER_ID = "user.id"

# Assigned by the MLflow server; a client must not send them (3.18 drops them from this route).
_SERVER_TAGS = frozenset({
    TraceTagKey.ARTIFACT_LOCATION, TraceTagKey.SPANS_LOCATION,
    "mlflow.trace.archiveLocation", "mlflow.trace.archivalFailure",
})
# Derived from the spans by any backend, describing the MLflow upload, or sent as semconv.
_UNSENT_METADATA = frozenset({
    TraceMetadataKey.SCHEMA_VERSION, TraceMetadataKey.INPUTS, TraceMetadataKey.OUTPUTS,
    TraceMetadataKey.TOKEN_USAGE, TraceMetadataKey.COST, TraceMetadataKey.SIZE_STATS,
    TraceMetadataKey.SIZE_BYTES, TraceMetadataKey.INFO_FINALIZED,
    TraceMetadataKey.TRACE_USER, TraceMetadataKey.TRACE_SESSION,
})
_NOT_SENT = frozenset({SpanAttributeKey.REQUEST_ID})
# MLflow bookkeeping that means nothing to a GenAI-semconv backend.
_GENAI_NOT_SENT = frozenset({SpanAttributeKey.REQUEST_ID, SpanAttributeKey.LOG_LEVEL})
_JSON_STARTS = frozenset('"{[ \t\n\r')


class SpanEncoder:
    """Encodes finished traces as one OTLP request. Stateless after construction; thread-safe.

    Args:
        conventions: ``"mlflow"`` (MLflow attributes as recorded), ``"genai"`` (OTel GenAI
            semantic conventions and OpenInference, MLflow attributes only where neither has an
            equivalent) or ``"both"`` (all MLflow attributes plus the content-free ``gen_ai.*`` /
            OpenInference ones).
        resource: Resource of every span.
        scope_name: Instrumentation scope name of every span.
        scope_version: Instrumentation scope version.
    """

    def __init__(self, conventions: Conventions, resource: Resource, scope_name: str, scope_version: str) -> None:
        self.conventions = conventions
        self._resource = PbResource()
        add_attributes(self._resource.attributes, resource.attributes.items())
        self._scope = InstrumentationScope(name=scope_name, version=scope_version)

    def encode(self, traces: Sequence[Trace]) -> tuple[ExportTraceServiceRequest, list[Trace], dict[str, Exception]]:
        """The request, the traces in it, and the traces that could not be encoded (why)."""
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.CopyFrom(self._resource)
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.CopyFrom(self._scope)
        spans = scope_spans.spans
        encoded: list[Trace] = []
        failed: dict[str, Exception] = {}
        for trace in traces:
            start = len(spans)
            try:
                self._encode_trace(trace, spans)
                encoded.append(trace)
            except Exception as exc:  # noqa: BLE001 - one malformed trace must not stop the batch
                del spans[start:]
                report_internal_error("otlp span encoding", exc)
                failed[trace.info.trace_id] = exc
        return request, encoded, failed

    def _encode_trace(self, trace: Trace, spans: Any) -> None:
        remote_parent = remote_parent_of(trace)
        root_attributes = trace_attributes(trace.info, self.conventions)
        mlflow = self.conventions == "mlflow"
        # MLflow keeps assessments itself (its own API); other backends get the semconv events.
        assessments = None
        if trace.info.assessments and not mlflow:
            span_ids = {f"{s._span.context.span_id:016x}" for s in trace.data.spans}
            assessments = assessments_by_span(trace.info.assessments, span_ids)
        trace_id = None
        for span in trace.data.spans:
            if isinstance(span._span, CapturedSpan):
                continue  # the application's own OTel pipeline sends it
            if trace_id is None:
                trace_id = span._span.context.trace_id.to_bytes(16, "big")
            pb = spans.add()
            is_root = encode_span(
                pb, span, write_attributes=self._encode_attributes, root_parent=remote_parent,
                trace_id=trace_id, w3c_context=True,
            )
            if is_root:
                add_attributes(pb.attributes, root_attributes.items())
            if mlflow:
                continue
            if pb.events and self.conventions == "genai":
                replace_chunk_events(pb.events)
            if assessments:
                write_evaluation_events(pb, assessments, is_root=is_root)

    def _encode_attributes(self, pb: PbSpan, span: Span) -> tuple[str, SpanKind]:
        """Adds the span's attributes; returns its name and kind in these conventions."""
        otel = span._span
        raw = span._raw_attributes()
        attributes = pb.attributes
        if self.conventions == "mlflow":
            for key, value in raw.items():
                if key not in _NOT_SENT:
                    kv = attributes.add()
                    kv.key = key
                    _set_stored_value(kv.value, value)
            return otel.name, otel.kind
        view = genai_view(otel.name, raw, content=self.conventions == "genai")
        skipped = view.replaces | _GENAI_NOT_SENT if self.conventions == "genai" else _NOT_SENT
        for key, value in raw.items():
            if key not in skipped:
                kv = attributes.add()
                kv.key = key
                _set_stored_value(kv.value, value)
        add_attributes(attributes, view.attributes.items())
        return view.name or otel.name, SpanKind.CLIENT if view.client else otel.kind


def trace_attributes(info: TraceInfo, conventions: Conventions = "mlflow") -> dict[str, Any]:
    """Attributes that carry the trace's tags, metadata, user, session and client request id.

    ``mlflow.traceTag.<key>``, ``user.id`` and ``session.id`` always (an MLflow server reads them
    back whatever the conventions); ``mlflow.traceMetadata.*`` and ``mlflow.clientRequestId``
    with ``mlflow`` and ``both``; OpenInference's ``metadata`` / ``tag.tags`` with ``genai`` and
    ``both``; ``gen_ai.conversation.id`` with ``genai``.
    """
    attributes: dict[str, Any] = {}
    metadata = info.trace_metadata
    user = metadata.get(TraceMetadataKey.TRACE_USER)
    if user:
        attributes[USER_ID] = user
    session = metadata.get(TraceMetadataKey.TRACE_SESSION)
    if session:
        attributes[SESSION_ID] = session
        if conventions == "genai":
            attributes[CONVERSATION_ID] = session
    for key, value in info.tags.items():
        if key not in _SERVER_TAGS:
            attributes[TRACE_TAG_PREFIX + key] = value  # short; MLflow's server reads tags only so
    if conventions != "mlflow":
        attributes.update(_openinference.trace_attributes(info.tags, metadata, info.client_request_id))
    if conventions == "genai":
        return attributes
    for key, value in metadata.items():
        if value and key not in _UNSENT_METADATA:
            attributes[TRACE_METADATA_PREFIX + key] = value
    if info.client_request_id:
        attributes[CLIENT_REQUEST_ID] = info.client_request_id
    return attributes


# -- values ----------------------------------------------------------------------------------------
def _set_stored_value(target: AnyValue, raw: Any) -> None:
    """Set ``target`` from a stored MLflow attribute value (a JSON string)."""
    if not isinstance(raw, str):
        set_value(target, raw)  # a raw OTel value, written straight onto the OTel span
        return
    if not raw or raw[0] in "{[":
        set_string(target, raw)  # JSON text of an object or array goes as it is
        return
    if raw[0] == '"' and raw[-1] == '"' and len(raw) > 1 and "\\" not in raw:
        value: Any = raw[1:-1]  # a JSON string without escapes: its content, without json.loads
    elif raw.isascii() and raw.isdigit() and len(raw) < 19 and (raw[0] != "0" or len(raw) == 1):
        target.int_value = int(raw)  # the common small non-negative integers (log levels, counts)
        return
    else:
        try:
            value = json.loads(raw)
        except ValueError:
            set_string(target, raw)  # not JSON
            return
    if isinstance(value, str):
        set_string(target, raw if value and value[0] in _JSON_STARTS and is_json_text(value) else value)
    elif isinstance(value, (dict, list)) or (
        isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX
    ):
        set_string(target, raw)
    else:
        set_value(target, value)
