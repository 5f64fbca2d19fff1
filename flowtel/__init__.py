"""flowtel: OpenTelemetry-native tracing for LLM applications, speaking MLflow Tracing's data model.

Switch from MLflow by changing the import::

    import flowtel

    @flowtel.trace
    def answer(question: str) -> str: ...
"""

from __future__ import annotations

from flowtel import tracing
from flowtel._config import ConfigError
from flowtel._exceptions import FlowtelException, TraceNotFoundError
from flowtel._stats import get_delivery_stats
from flowtel._version import __version__
from flowtel.entities import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Document,
    Expectation,
    Experiment,
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
from flowtel.integrations import autolog
from flowtel.tracing import _providers
from flowtel.tracing._assessments import (
    delete_assessment,
    get_assessment,
    log_assessment,
    log_expectation,
    log_feedback,
    override_feedback,
    update_assessment,
)
from flowtel.tracing._distributed import (
    get_tracing_context_headers_for_http_request,
    set_tracing_context_from_http_request_headers,
)
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
from flowtel.tracing._scope import context
from flowtel.tracing._sessions import Session, search_sessions
from flowtel.tracing._setup import set_experiment, set_tracking_uri
from flowtel.tracing._tracking import get_tracking_uri, is_tracking_uri_set

# ``flowtel.openai`` etc. (one per provider registry entry) import on first attribute access, so
# ``import flowtel`` imports no SDK.
_LAZY_INTEGRATIONS = frozenset(_providers.PROVIDERS)


def __getattr__(name: str) -> object:
    """``flowtel.openai`` / ``.anthropic`` / ``.langchain``: the integration module, imported on first use."""
    if name in _LAZY_INTEGRATIONS:
        import importlib

        module = importlib.import_module(f"flowtel.integrations.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'flowtel' has no attribute {name!r}")


__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "ConfigError",
    "Document",
    "Expectation",
    "Experiment",
    "Feedback",
    "FlowtelException",
    "LiveSpan",
    "NoOpSpan",
    "Session",
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
    "anthropic",
    "autolog",
    "bedrock",
    "context",
    "delete_assessment",
    "delete_trace_tag",
    "flush",
    "flush_trace_async_logging",
    "gemini",
    "get_active_trace_id",
    "get_assessment",
    "get_current_active_span",
    "get_delivery_stats",
    "get_last_active_trace_id",
    "get_trace",
    "get_tracing_context_headers_for_http_request",
    "get_tracking_uri",
    "is_tracking_uri_set",
    "langchain",
    "litellm",
    "log_assessment",
    "log_expectation",
    "log_feedback",
    "log_trace",
    "openai",
    "override_feedback",
    "search_sessions",
    "search_traces",
    "set_experiment",
    "set_trace_tag",
    "set_tracing_context_from_http_request_headers",
    "set_tracking_uri",
    "start_span",
    "start_span_no_context",
    "trace",
    "tracing",
    "update_assessment",
    "update_current_trace",
]
