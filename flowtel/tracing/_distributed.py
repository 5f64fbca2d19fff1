"""Distributed tracing over HTTP with W3C Trace Context (``traceparent``/``tracestate``) and
baggage, so that work done in another process joins the caller's trace."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowtel._exceptions import InvalidParameterError

_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def get_tracing_context_headers_for_http_request() -> dict[str, str]:
    """Headers that carry the current span to another service: ``traceparent`` (and
    ``tracestate`` / ``baggage`` when present). Empty outside a trace."""
    headers: dict[str, str] = {}
    if not otel_trace.get_current_span().get_span_context().is_valid and not baggage.get_all():
        return headers
    _PROPAGATOR.inject(headers)
    return headers


@contextmanager
def set_tracing_context_from_http_request_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Continue the caller's trace: spans started inside the block are children of the span
    named in the request's ``traceparent`` header (header names are case-insensitive).

    Raises:
        FlowtelException: the headers carry no valid ``traceparent``.
    """
    try:
        carrier = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    except Exception:  # noqa: BLE001 - any non-mapping argument: one clear refusal
        raise InvalidParameterError(
            f"headers must be a mapping of header names to values, got {type(headers).__name__}."
        ) from None
    if "traceparent" not in carrier:
        raise InvalidParameterError("The request headers carry no 'traceparent' header.")
    ctx = _PROPAGATOR.extract(carrier)
    if not otel_trace.get_current_span(ctx).get_span_context().is_valid:
        raise InvalidParameterError(f"Invalid 'traceparent' header: {carrier['traceparent']!r}.")
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
