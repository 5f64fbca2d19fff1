"""The span engine under the public tracing API and the integrations.

:mod:`flowtel.tracing._fluent` (``@trace``, ``start_span``, ...), the LLM SDK integrations and the
read-side modules (:mod:`~flowtel.tracing._assessments`, :mod:`~flowtel.tracing._sessions`) drive
spans and traces through this small API, and through nothing else:

Spans
    :func:`tracing_on` (the fast "is anything recorded here" check), :func:`start_attributes`
    (the encoded start attributes of a span), :func:`start_live_span` (start and wrap an OTel span
    on flowtel's provider), :func:`attach` / :func:`detach` (make a span current and undo it),
    :func:`end_ok` / :func:`end_error` (end with outputs / with the user's exception),
    :func:`encode` (one attribute value, under the capture policy), :data:`IMMUTABLE_TYPES`.
Traces
    :func:`record_of` (the in-progress :class:`~flowtel.tracing._processor.TraceRecord` of a trace
    id), :func:`pending_trace` (a finished trace still being delivered), :func:`settle` (wait,
    bounded by :data:`READ_FLUSH_TIMEOUT_S`, until it is delivered), :func:`trace_store` (the
    configured destination's read side).

None of the span functions raises: a failure inside tracing is reported through
:func:`report_internal_error` and the caller gets a :class:`NoOpSpan` or nothing. They run on the
caller's thread on every traced call, so they stay flat (no extra call layers: ``_fluent`` binds
them as its own module globals).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Link

from flowtel import _otel_sdk
from flowtel._config import ConfigError
from flowtel._errors import report_internal_error
from flowtel._exceptions import FlowtelException
from flowtel.entities import LiveSpan, NoOpSpan, Span, SpanType, _hooks
from flowtel.entities._constants import SpanAttributeKey
from flowtel.entities._ids import otel_trace_id_from_mlflow
from flowtel.tracing import _capture, _clock, _runtime, _scope
from flowtel.tracing._sampling import SAMPLING_OVERRIDE_ATTRIBUTE

if TYPE_CHECKING:
    from flowtel.delivery._store import TraceStore
    from flowtel.tracing._processor import TraceRecord
    from flowtel.tracing._runtime import PendingTrace

__all__ = [
    "IMMUTABLE_TYPES",
    "READ_FLUSH_TIMEOUT_S",
    "attach",
    "detach",
    "encode",
    "end_error",
    "end_ok",
    "pending_trace",
    "record_of",
    "settle",
    "start_attributes",
    "start_live_span",
    "trace_store",
    "tracing_on",
]

_logger = logging.getLogger("flowtel")


# Values whose encoding can wait for the delivery worker: nothing can change them meanwhile.
IMMUTABLE_TYPES = frozenset({str, int, float, bool, type(None)})

READ_FLUSH_TIMEOUT_S = 10.0
"""How long a read of a trace that is still being delivered waits for its delivery."""


def encode(key: str, value: Any) -> str:
    """``value`` as the JSON text stored for attribute ``key``, under the current capture policy."""
    encoded: str = _hooks.encode_attribute(key, value)
    return encoded


# -- spans ----------------------------------------------------------------------------------------
def tracing_on() -> bool:
    """Whether spans started here are recorded (tracing enabled, not switched off in this scope)."""
    return _runtime.enabled and _scope.current.get().enabled


# -- user values, made safe -----------------------------------------------------------------------
def span_type_name(span_type: Any) -> str:
    """A span type as recorded: any value the user passed, as a string (None: UNKNOWN)."""
    if type(span_type) is str:
        return span_type or SpanType.UNKNOWN
    return SpanType.UNKNOWN if span_type is None else safe_str(span_type)


def string_keyed(attributes: Any) -> dict[str, Any]:
    """User attributes as a dict with string keys; anything else is ignored with a warning."""
    try:
        if not isinstance(attributes, Mapping):
            raise TypeError(type(attributes).__name__)
        return {safe_str(k): v for k, v in attributes.items()}
    except Exception:  # noqa: BLE001 - misuse is logged, never raised
        _logger.warning("attributes ignored: expected a dict, got %s.", type(attributes).__name__)
        return {}


def safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a user object whose __str__ raises
        return f"<unprintable {type(value).__name__}>"


def start_live_span(
    name: str,
    span_type: str | None,
    attributes: dict[str, str],
    *,
    parent: otel_context.Context | None = None,
    start_time_ns: int | None = None,
    links: list[Link] | None = None,
) -> LiveSpan | NoOpSpan:
    """Start an OTel span on flowtel's provider and wrap it. Never raises."""
    try:
        if type(name) is not str:
            name = safe_str(name)
        if type(span_type) is not str or not span_type:  # (the common case needs no call)
            span_type = span_type_name(span_type)
        runtime = _runtime.get_runtime()
        # The sampler's per-root override travels as a start attribute; everything else is
        # written into the span directly by LiveSpan below.
        sampling = (
            {SAMPLING_OVERRIDE_ATTRIBUTE: attributes.pop(SAMPLING_OVERRIDE_ATTRIBUTE)}
            if SAMPLING_OVERRIDE_ATTRIBUTE in attributes else None
        )
        assert runtime.starter is not None  # set by Runtime.__post_init__
        if runtime.assembler.parent_trace_ids:  # a forked child: never extend the parent's traces
            parent, links = runtime.assembler.detach_from_parent_process(parent, links)
        otel_span = runtime.starter.start(
            name, parent, start_time_ns if start_time_ns is not None else _clock.now_ns(),
            attributes=sampling, links=links,
        )
        if not otel_span.is_recording():
            return NoOpSpan(otel_span)
        ctx = otel_span.get_span_context()
        assembler = runtime.assembler
        record = assembler.record_for(ctx.trace_id)
        if record is None:
            return NoOpSpan(otel_span)
        # Direct: built by the starter for flowtel's assembler as the only processor.
        direct = _otel_sdk.sole_processor(otel_span) is assembler
        live = LiveSpan(otel_span, None, span_type or SpanType.UNKNOWN,
                        direct=direct, known_layout=direct and runtime.starter.template_layout)
        live._set_raw_many(attributes)
        record.live[ctx.span_id] = live
        return live
    except _runtime.RuntimeBusy:  # traced code re-entered from inside the runtime's build
        return NoOpSpan()
    except ConfigError as exc:
        _runtime.report_config_error(exc)
        return NoOpSpan()
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's call
        report_internal_error("span start", exc)
        return NoOpSpan()


def attach(span: Span) -> object:
    """Make ``span`` the current span; returns the token for :func:`detach`."""
    return otel_context.attach(_otel_sdk.context_with_span(span._span))


def detach(token: object) -> None:
    """Undo :func:`attach`. Never raises (a token from another context is ignored)."""
    try:
        _otel_sdk.detach(token)
    except Exception:  # noqa: BLE001 - a token from another context (user moved a span
        # across tasks); OTel would log an error on every call, the span itself is fine.
        pass


def start_attributes(
    span_type: str | None,
    user_attributes: dict[str, Any] | None,
    *,
    inputs: Any = None,
    has_inputs: bool = False,
    function_name: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The span's start attributes, each value encoded: span type, function name, inputs (when
    ``has_inputs``), the user's attributes, then ``extra`` (already encoded) as they are."""
    attrs = {SpanAttributeKey.SPAN_TYPE: encode(SpanAttributeKey.SPAN_TYPE, span_type_name(span_type))}
    if function_name is not None:
        attrs[SpanAttributeKey.FUNCTION_NAME] = encode(SpanAttributeKey.FUNCTION_NAME, function_name)
    if has_inputs:
        attrs[SpanAttributeKey.INPUTS] = encode(SpanAttributeKey.INPUTS, inputs)
    if user_attributes is not None:
        for key, value in string_keyed(user_attributes).items():
            attrs[key] = encode(key, value)
    if extra:
        attrs.update(extra)
    return attrs


def end_ok(span: LiveSpan | NoOpSpan, outputs: Any, has_outputs: bool = True) -> None:
    """End ``span`` with status OK and ``outputs`` (none when not ``has_outputs``). Never raises."""
    try:
        if type(span) is LiveSpan:
            token = None
            if span._direct and type(outputs) in IMMUTABLE_TYPES:
                token = _capture._policy  # deferred under the policy of the moment (None: not yet read)
                if token is not None and not token.capture_content:
                    token = None
            span._end_ok(outputs, has_outputs, token)
        else:
            span.end()
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's call
        report_internal_error("span end", exc)


def end_error(span: LiveSpan | NoOpSpan, exc: BaseException) -> None:
    """End ``span`` with status ERROR and an ``exception`` event for ``exc``. Never raises."""
    try:
        span.record_exception(exc)
        span.end()
    except Exception as inner:  # noqa: BLE001 - the user's exception must propagate as it is
        report_internal_error("span end with exception", inner)


# -- traces ---------------------------------------------------------------------------------------
def record_of(trace_id: str) -> TraceRecord | None:
    """The in-progress record (tags, metadata, live spans...) of this trace, or None when the
    trace is unknown or already finished."""
    runtime = _runtime.peek_runtime()
    otel_id = otel_trace_id_from_mlflow(trace_id) if trace_id else None
    if runtime is None or otel_id is None:
        return None
    return runtime.assembler.record_for(otel_id)


def pending_trace(trace_id: str) -> PendingTrace | None:
    """The finished trace with this id if it is still being delivered (a ``PendingTrace``), else
    None."""
    runtime = _runtime.peek_runtime()
    if runtime is None:
        return None
    pending = runtime.pending.get(otel_trace_id_from_mlflow(trace_id))  # type: ignore[arg-type]
    return pending if pending is not None and pending.trace_id == trace_id else None


def settle(trace_id: str) -> None:
    """Wait (bounded) until a trace that is being delivered has reached its destinations."""
    if pending_trace(trace_id) is not None:
        _runtime.get_runtime().flush(READ_FLUSH_TIMEOUT_S)


def trace_store() -> TraceStore:
    """The read side of the configured destinations (a ``TraceStore``).

    Raises:
        FlowtelException: No configured destination can be read back (OTLP only).
    """
    store = _runtime.get_runtime().store
    if store is None:
        raise FlowtelException(
            "No configured destination can be read back (an OTLP-only setup has no trace "
            "store). Set MLFLOW_TRACKING_URI to an MLflow server or keep the embedded store."
        )
    return store
