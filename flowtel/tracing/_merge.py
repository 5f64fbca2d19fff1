"""``add_trace``: graft the spans of a finished trace under a span of a trace in progress."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from flowtel.entities._constants import SpanAttributeKey

if TYPE_CHECKING:
    from flowtel.entities import LiveSpan, Trace
    from flowtel.tracing._processor import TraceAssembler, TraceRecord


def merge_spans_into(assembler: TraceAssembler, record: TraceRecord, trace: Trace, target: LiveSpan) -> None:
    """Copy every span of ``trace`` into ``record``: same span ids, this trace's id, and the
    remote root re-parented under ``target``."""
    target_id = target._span.get_span_context().span_id
    known = set(record.started)
    copies: list[ReadableSpan] = []
    for span in trace.data.spans:
        source = span._span
        parent = source.parent.span_id if source.parent else target_id
        if parent not in known and parent != target_id:
            parent = target_id
        attributes = dict(source.attributes or {})
        attributes[SpanAttributeKey.REQUEST_ID] = record.request_id_json
        copies.append(
            ReadableSpan(
                name=source.name,
                context=_context(record.otel_trace_id, source.context.span_id),
                parent=_context(record.otel_trace_id, parent),
                start_time=source.start_time,
                end_time=source.end_time,
                attributes=attributes,
                events=source.events,
                links=source.links,
                status=source.status,
                resource=source.resource,
            )
        )
        known.add(source.context.span_id)
    with assembler._lock:
        for copy in copies:
            span_id = copy.context.span_id
            record.started.append(span_id)
            record.finished[span_id] = copy


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
