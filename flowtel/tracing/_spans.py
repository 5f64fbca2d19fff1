"""Starting flowtel's OpenTelemetry spans with as little work as possible on the caller's thread.

``Tracer.start_span`` of the OTel SDK is general-purpose: for every span it looks the parent up
twice, asks the sampler (through ``ParentBased``), builds a ``SamplingResult``, consults the
tracer configurator and fans out to the span processors. flowtel's provider is private and its
sampling is known when it is built, so in the common case -- every trace recorded, no links,
no per-span sampling override, and a parent (if any) that is sampled -- the ids, flags, trace
state and parent are decided here, with exactly the values ``Tracer.start_span`` would give
(``tests/test_span_starter.py`` compares the two), and the span itself is built by
``flowtel._otel_sdk.DirectSpanFactory``, the one module that touches SDK internals. Every other
case, and any SDK that module does not vouch for, goes through ``Tracer.start_span`` unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext, TraceFlags

from flowtel import _otel_sdk

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link

_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_FLAGS = {bits: TraceFlags(bits) for bits in (_SAMPLED, _SAMPLED | _RANDOM)}


class SpanStarter:
    """``start(name, context, start_time)``: an SDK span, started, as ``Tracer.start_span`` makes it."""

    def __init__(self, provider: TracerProvider, tracer: Any, *, always_sample: bool) -> None:
        self._tracer = tracer
        self._factory = _otel_sdk.DirectSpanFactory.for_tracer(provider, tracer) if always_sample else None
        self._id_generator = tracer.id_generator
        self._random_ids = getattr(self._id_generator, "is_trace_id_random", None)

    @property
    def fast(self) -> bool:
        """Spans are built directly (not by ``Tracer.start_span``) when nothing calls for the sampler."""
        return self._factory is not None

    @property
    def template_layout(self) -> bool:
        """Spans this starter hands to a sole processor have the layout its template checked."""
        return self._factory is not None and self._factory.template_layout

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
        if factory is None or attributes or links:
            return self._tracer.start_span(name, context=context, attributes=attributes, links=links,
                                           start_time=start_time)
        parent_span: Any = _otel_sdk.parent_span(context)
        parent: SpanContext | None = None
        if parent_span is not None:
            parent = parent_span.get_span_context()
            if parent is not None and not isinstance(parent, SpanContext):
                return self._tracer.start_span(name, context=context, start_time=start_time)
            if parent is None or not parent.is_valid:
                parent = None
            elif not parent.trace_flags & _SAMPLED:
                # A parent that is not sampled: the sampler decides (ParentBased drops it).
                return self._tracer.start_span(name, context=context, start_time=start_time)
        if parent is None:
            trace_id = self._id_generator.generate_trace_id()
            random = self._random_ids is not None and self._random_ids()
            flags = _FLAGS[_SAMPLED | _RANDOM] if random else _FLAGS[_SAMPLED]
            trace_state = None
        else:
            trace_id = parent.trace_id
            flags = _FLAGS[_SAMPLED | (parent.trace_flags & _RANDOM)]
            trace_state = parent.trace_state
        span_context = SpanContext(
            trace_id, self._id_generator.generate_span_id(), is_remote=False, trace_flags=flags,
            trace_state=trace_state,
        )
        return factory.start(name, span_context, parent, start_time, context)
