"""flowtel: OpenTelemetry-native tracing for LLM applications, speaking MLflow Tracing's data model.

Switch from MLflow by changing the import::

    import flowtel

    @flowtel.trace
    def answer(question: str) -> str: ...
"""

from __future__ import annotations

from flowtel import tracing
from flowtel._stats import get_delivery_stats
from flowtel._version import __version__
from flowtel.entities import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Document,
    Expectation,
    Feedback,
    LiveSpan,
    NoOpSpan,
    Span,
    SpanEvent,
    SpanStatus,
    SpanStatusCode,
    SpanType,
    Trace,
    TraceData,
    TraceInfo,
    TraceLocation,
    TraceState,
)
from flowtel.tracing._config import ConfigError
from flowtel.tracing._exceptions import FlowtelException, TraceNotFoundError
from flowtel.tracing._fluent import (
    add_trace,
    delete_trace_tag,
    flush,
    flush_trace_async_logging,
    get_active_trace_id,
    get_current_active_span,
    get_last_active_trace_id,
    get_trace,
    log_trace,
    search_traces,
    set_trace_tag,
    start_span,
    start_span_no_context,
    trace,
    update_current_trace,
)
from flowtel.tracing._tracking import get_tracking_uri, is_tracking_uri_set, set_tracking_uri

__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "ConfigError",
    "Document",
    "Expectation",
    "Feedback",
    "FlowtelException",
    "LiveSpan",
    "NoOpSpan",
    "Span",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceLocation",
    "TraceNotFoundError",
    "TraceState",
    "__version__",
    "add_trace",
    "delete_trace_tag",
    "flush",
    "flush_trace_async_logging",
    "get_active_trace_id",
    "get_current_active_span",
    "get_delivery_stats",
    "get_last_active_trace_id",
    "get_trace",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "log_trace",
    "search_traces",
    "set_trace_tag",
    "set_tracking_uri",
    "start_span",
    "start_span_no_context",
    "trace",
    "tracing",
    "update_current_trace",
]
