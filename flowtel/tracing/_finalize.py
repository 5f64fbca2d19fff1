"""Turn a finished :class:`TraceRecord` into a :class:`Trace`, the way MLflow finalises traces."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, StatusCode

from flowtel import _attachments, _otel_sdk
from flowtel.entities import (
    Span,
    Trace,
    TraceData,
    TraceInfo,
    TraceLocation,
    TraceState,
)
from flowtel.entities._constants import (
    MAX_CHARS_IN_TRACE_IO_METADATA,
    PREVIEW_MAX_CHARS,
    TRACE_SCHEMA_VERSION,
    SpanAttributeKey,
    TraceMetadataKey,
    TraceTagKey,
)
from flowtel.entities._json import dumps_default, load_json
from flowtel.entities._span import _MAX_ATTRIBUTES, materialize, plain_attributes
from flowtel.tracing._cost import add_trace_cost
from flowtel.tracing._processor import TraceRecord

# ``Trace(info, TraceData([])).to_json()`` is the info's JSON inside this text.
_EMPTY_TRACE_JSON_EXTRA = len(json.dumps({"info": {}, "data": TraceData().to_dict()})) - len("{}")

_TOKEN_KEYS = (
    "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "cache_creation_input_tokens_above_1hr", "reasoning_tokens",
)


def finalize(record: TraceRecord, *, default_experiment_id: str, env_metadata: dict[str, str],
             size_stats: bool = True) -> Trace:
    """Build the trace: info (state, timing, previews, metadata, usage, size stats) and spans."""
    readable = record.spans_in_start_order()
    for span in readable:  # values the caller's thread left to encode (see LiveSpan._defer)
        materialize(span, final=True)
    cost_metadata: dict[str, str] = {}
    add_trace_cost(cost_metadata, readable)  # before any Span wrapper caches the attributes
    remote_parent = _detach_remote_parent(readable, record.root_span_id) if record.remote_parent else None
    attachments = _bind_attachments(readable, record.trace_id)
    spans = [Span(s) for s in readable]
    root = _find_root(spans, record.root_span_id)
    raw_inputs = _raw(root, SpanAttributeKey.INPUTS)
    raw_outputs = _raw(root, SpanAttributeKey.OUTPUTS)

    metadata = dict(env_metadata)
    metadata[TraceMetadataKey.SCHEMA_VERSION] = str(TRACE_SCHEMA_VERSION)
    metadata.update(record.metadata)
    metadata[TraceMetadataKey.INPUTS] = _truncate(raw_inputs or "", MAX_CHARS_IN_TRACE_IO_METADATA)
    metadata[TraceMetadataKey.OUTPUTS] = _truncate(raw_outputs or "", MAX_CHARS_IN_TRACE_IO_METADATA)
    usage = aggregate_token_usage(spans)
    if usage:
        metadata[TraceMetadataKey.TOKEN_USAGE] = json.dumps(usage)
    metadata.update(cost_metadata)
    tags = {TraceTagKey.TRACE_NAME: record.root_name}
    tags.update(record.tags)

    start_ns = root.start_time_ns if root else min(s.start_time_ns for s in spans)
    end_ns = max((s.end_time_ns or start_ns) for s in spans) if spans else start_ns
    if root is not None and root.end_time_ns is not None:
        end_ns = root.end_time_ns
    info = TraceInfo(
        trace_id=record.trace_id,
        trace_location=TraceLocation.from_experiment_id(record.experiment_id or default_experiment_id),
        request_time=start_ns // 1_000_000,
        execution_duration=(end_ns - start_ns) // 1_000_000,
        state=_state(record, root),
        request_preview=record.request_preview
        if record.request_preview is not None
        else _request_preview(raw_inputs),
        response_preview=record.response_preview
        if record.response_preview is not None
        else _response_preview(raw_outputs),
        client_request_id=record.client_request_id,
        trace_metadata=metadata,
        tags=tags,
        assessments=list(record.assessments),
    )
    trace = Trace(info=info, data=TraceData(spans=spans))
    if size_stats:
        add_size_stats(trace)
    if attachments:
        _attachments.set_attachments(trace, attachments)
    if remote_parent is not None:
        # The trace continues one started elsewhere (another process, or an application span):
        # exporters to MLflow ship only its spans, OTLP exporters restore the real parent.
        trace.remote_parent = remote_parent  # type: ignore[attr-defined]
    return trace


def _bind_attachments(readable: list[ReadableSpan], trace_id: str) -> dict[str, _attachments.Attachment]:
    """Take the media parked for this trace's inputs/outputs and put the trace id into their
    ``mlflow-attachment://`` references (the encoder did not know it)."""
    found: dict[str, _attachments.Attachment] = {}
    for span in readable:
        attrs = _otel_sdk.writable_attributes(span, False, _MAX_ATTRIBUTES)
        values = attrs if attrs is not None else span.attributes or {}
        for key in (SpanAttributeKey.INPUTS, SpanAttributeKey.OUTPUTS):
            raw = values.get(key)
            if type(raw) is str and _attachments.has_pending_refs(raw):
                found.update(_attachments.bind([raw], trace_id))
                if attrs is not None:
                    attrs[key] = _attachments.with_trace_id(raw, trace_id)
    return found


def remote_parent_of(trace: Trace) -> SpanContext | None:
    """The span (outside flowtel) that the trace's root continues, if any."""
    return getattr(trace, "remote_parent", None)


def _detach_remote_parent(readable: list[ReadableSpan], root_span_id: int) -> SpanContext | None:
    """Make the local root a root in the MLflow view; return the parent it had."""
    for i, span in enumerate(readable):
        if span.context.span_id == root_span_id and span.parent is not None:
            parent = span.parent
            readable[i] = ReadableSpan(
                name=span.name, context=span.context, parent=None, resource=span.resource,
                attributes=span.attributes, events=span.events, links=span.links, kind=span.kind,
                status=span.status, start_time=span.start_time, end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
            return parent
    return None


def add_size_stats(trace: Trace) -> None:
    """``mlflow.trace.sizeStats`` / ``sizeBytes``, with MLflow's exact figures.

    MLflow measures ``json.dumps(span.to_dict())`` of each span and the JSON of the trace with
    no spans; the same lengths are computed here without building and encoding the span dicts
    (:meth:`Span._json_size`) or the empty trace (its JSON is the info's plus fixed text). All of
    it is ASCII JSON, so lengths in characters are lengths in UTF-8 bytes.
    """
    sizes = [s._json_size() for s in trace.data.spans]
    empty_trace_size = len(dumps_default(trace.info.to_dict())) + _EMPTY_TRACE_JSON_EXTRA
    total = sum(sizes) + empty_trace_size + max(len(sizes) - 1, 0) * 2
    ordered = sorted(sizes)
    stats = {
        "total_size_bytes": total,
        "num_spans": len(sizes),
        "max": ordered[-1] if ordered else 0,
        "p25": _percentile(ordered, 0.25),
        "p50": _percentile(ordered, 0.50),
        "p75": _percentile(ordered, 0.75),
    }
    trace.info.trace_metadata[TraceMetadataKey.SIZE_STATS] = dumps_default(stats)
    trace.info.trace_metadata[TraceMetadataKey.SIZE_BYTES] = str(total)


def aggregate_token_usage(spans: list[Span]) -> dict[str, int] | None:
    """Sum usage over spans, skipping a span whose ancestor already reports usage (no double count)."""
    key = SpanAttributeKey.CHAT_USAGE
    # Most traces have no usage at all: look for the stored key before decoding anything.
    with_usage = [s for s in spans if key in plain_attributes(s._span)]
    if not with_usage:
        return None
    usage_of = {s.span_id: u for s in with_usage if isinstance(u := s.get_attribute(key), dict)}
    if not usage_of:
        return None
    by_id = {s.span_id: s for s in spans}
    totals: dict[str, int] = {}
    for span_id, usage in usage_of.items():
        if _has_ancestor_with_usage(by_id, usage_of, span_id):
            continue
        for key in _TOKEN_KEYS:
            value = usage.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + int(value)
    if "total_tokens" not in totals and ("input_tokens" in totals or "output_tokens" in totals):
        totals["total_tokens"] = totals.get("input_tokens", 0) + totals.get("output_tokens", 0)
    return totals or None


def _has_ancestor_with_usage(by_id: dict[str, Span], usage_of: dict[str, Any], span_id: str) -> bool:
    parent = by_id[span_id].parent_id
    seen = 0
    while parent is not None and parent in by_id and seen < len(by_id):
        if parent in usage_of:
            return True
        parent = by_id[parent].parent_id
        seen += 1
    return False


def _find_root(spans: list[Span], root_span_id: int) -> Span | None:
    for span in spans:
        if span._span.context.span_id == root_span_id:
            return span
    return next((s for s in spans if s.parent_id is None), spans[0] if spans else None)


def _raw(span: Span | None, key: str) -> str | None:
    if span is None:
        return None
    value = span._raw_attributes().get(key)
    return value if isinstance(value, str) else None


def _state(record: TraceRecord, root: Span | None) -> TraceState:
    if record.state is not None:
        return TraceState(record.state)
    if root is None:
        return TraceState.ERROR
    return TraceState.ERROR if root._span.status.status_code is StatusCode.ERROR else TraceState.OK


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _percentile(ordered: list[int], q: float) -> int:
    if not ordered:
        return 0
    index = q * (len(ordered) - 1)
    lower = int(index)
    if lower + 1 >= len(ordered):
        return int(ordered[-1])
    weight = index - lower
    return int(ordered[lower] * (1 - weight) + ordered[lower + 1] * weight)


# -- previews ------------------------------------------------------------------------------------
def _request_preview(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = None
    if _may_have_keys(raw, _REQUEST_KEYS):
        text = _last_message_text(load_json(raw), ("user",), request=True)
    return _truncate(text if text is not None else raw, PREVIEW_MAX_CHARS)


def _response_preview(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = None
    if _may_have_keys(raw, _RESPONSE_KEYS):
        text = _last_message_text(load_json(raw), ("assistant",), request=False)
    return _truncate(text if text is not None else raw, PREVIEW_MAX_CHARS)


# The keys _last_message_text looks for, as they appear in JSON text.
_REQUEST_KEYS = ('"messages"', '"input"', '"request"')
_RESPONSE_KEYS = ('"choices"', '"output"')


def _may_have_keys(raw: str, keys: tuple[str, ...]) -> bool:
    """False when ``raw`` cannot decode to an object with one of ``keys``: the preview then
    needs no parse. Keys written with ``\\u`` escapes count as possibly there."""
    return raw.lstrip()[:1] == "{" and (any(key in raw for key in keys) or "\\u" in raw)


def _last_message_text(value: Any, roles: tuple[str, ...], *, request: bool) -> str | None:
    if not isinstance(value, dict):
        return None
    if request:
        if isinstance(value.get("request"), dict):
            nested = _last_message_text(value["request"], roles, request=True)
            if nested is not None:
                return nested
        messages = value.get("messages")
        if not isinstance(messages, list):
            messages = value.get("input") if isinstance(value.get("input"), list) else None
    else:
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            messages = [message] if isinstance(message, dict) else None
        else:
            messages = value.get("output") if isinstance(value.get("output"), list) else None
    if not messages:
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in roles:
            text = _content_text(message.get("content"))
            if text is not None:
                return text
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p["text"] for p in content
            if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return "".join(parts) if parts else None
    return None
