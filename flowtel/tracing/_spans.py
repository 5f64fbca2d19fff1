"""Starting flowtel's OpenTelemetry spans with as little work as possible on the caller's thread.

``Tracer.start_span`` of the OTel SDK is general-purpose: for every span it looks the parent up
twice, asks the sampler (through ``ParentBased``), builds a ``SamplingResult``, consults the
tracer configurator and fans out to the span processors. flowtel's provider is private and its
sampling is known when it is built, so in the common case -- every trace recorded, no links,
no per-span sampling override, and a parent (if any) that is sampled -- the span is built by
``flowtel._otel_sdk.DirectSpanFactory`` (the one module that touches SDK internals) with exactly
the ids, flags, trace state and parent ``Tracer.start_span`` would give
(``tests/test_span_starter.py`` compares the two). Every other case, and any SDK that module
does not vouch for, goes through ``Tracer.start_span`` unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from flowtel import _otel_sdk

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link

class SpanStarter:
    """``start(name, context, start_time)``: an SDK span, started, as ``Tracer.start_span`` makes it."""

    def __init__(self, provider: TracerProvider, tracer: Any, *, always_sample: bool) -> None:
        self._tracer = tracer
        self._factory = _otel_sdk.DirectSpanFactory.for_tracer(provider, tracer) if always_sample else None
        #: Spans this starter hands to a sole processor have the layout its template checked.
        self.template_layout = self._factory is not None and self._factory.template_layout

    @property
    def fast(self) -> bool:
        """Spans are built directly (not by ``Tracer.start_span``) when nothing calls for the sampler."""
        return self._factory is not None

    def start(
        self,
        name: str,
        context: otel_context.Context | None,
        start_time: int,
        *,
        attributes: dict[str, Any] | None = None,
        links: list[Link] | None = None,
    ) -> Any:
        factory = self._factory
        if factory is not None and not attributes and not links:
            span = factory.start(name, context, start_time)
            if span is not None:
                return span
        return self._tracer.start_span(name, context=context, attributes=attributes, links=links,
                                       start_time=start_time)
