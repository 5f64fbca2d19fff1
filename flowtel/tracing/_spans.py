"""Starting flowtel's OpenTelemetry spans with as little work as possible on the caller's thread.

``Tracer.start_span`` of the OTel SDK is general-purpose: for every span it looks the parent up
twice, asks the sampler (through ``ParentBased``), builds a ``SamplingResult``, consults the
tracer configurator and fans out to the span processors. flowtel's provider is private and its
sampling is known when it is built, so in the common case -- every trace recorded, no links,
no per-span sampling override, and a parent (if any) that is sampled -- the SDK span is
constructed here directly, with exactly the context, flags, trace state, resource, limits and
scope ``Tracer.start_span`` would give it (``tests/test_span_starter.py`` compares the two).
Every other case, and any SDK whose span constructor does not look as expected, goes through
``Tracer.start_span`` unchanged.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import Span as SdkSpan

try:
    from opentelemetry.sdk.trace import _Span as _SdkSpanImpl  # what Tracer.start_span builds
except ImportError:  # pragma: no cover - an SDK without it takes the regular path
    _SdkSpanImpl = None  # type: ignore[assignment,misc]
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link

_SPAN_KEY = otel_trace._SPAN_KEY  # type: ignore[attr-defined]
_RUNTIME_CONTEXT = otel_context._RUNTIME_CONTEXT  # type: ignore[attr-defined]
_INTERNAL = SpanKind.INTERNAL
_RECORD_AND_SAMPLE = Decision.RECORD_AND_SAMPLE
_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_FLAGS = {bits: TraceFlags(bits) for bits in (_SAMPLED, _SAMPLED | _RANDOM)}
_SPAN_PARAMETERS = (
    "name", "context", "parent", "sampler", "resource", "attributes", "span_processor", "kind",
    "links", "instrumentation_info", "limits", "instrumentation_scope",
)


class SpanStarter:
    """``start(name, context, start_time)``: an SDK span, started, as ``Tracer.start_span`` makes it."""

    def __init__(self, provider: TracerProvider, tracer: Any, *, always_sample: bool) -> None:
        self._tracer = tracer
        self._provider = provider
        self._fast = always_sample and _constructor_compatible() and _tracer_enabled(tracer)
        self._with_end_metrics = "record_end_metrics" in _span_parameters()
        self._tracer_metrics = getattr(tracer, "_tracer_metrics", None)
        self._id_generator = tracer.id_generator
        self._random_ids = getattr(self._id_generator, "is_trace_id_random", None)
        multi = getattr(provider, "_active_span_processor", None)
        self._processor: Any = multi
        self._processors_of = getattr(multi, "_span_processors", None)
        self._common: dict[str, Any] = {
            "sampler": tracer.sampler,
            "resource": tracer.resource,
            "kind": _INTERNAL,
            "instrumentation_info": getattr(tracer, "instrumentation_info", None),
            "limits": getattr(tracer, "_span_limits", None),
            "instrumentation_scope": getattr(tracer, "_instrumentation_scope", None),
        }
        if self._processor is None or self._common["limits"] is None:
            self._fast = False

    @property
    def fast(self) -> bool:
        return self._fast

    def start(
        self,
        name: str,
        context: otel_context.Context | None,
        start_time: int,
        *,
        attributes: dict[str, Any] | None = None,
        links: list[Link] | None = None,
    ) -> Any:
        if not self._fast or attributes or links:
            return self._tracer.start_span(name, context=context, attributes=attributes, links=links,
                                           start_time=start_time)
        current = context if context is not None else _RUNTIME_CONTEXT.get_current()
        parent_span: Any = current.get(_SPAN_KEY)
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
        processors = self._processors_of
        # With flowtel's assembler as the provider's only processor, call it directly.
        processor = processors[0] if processors is not None and len(processors) == 1 else self._processor
        kwargs = dict(self._common)
        if self._with_end_metrics and self._tracer_metrics is not None:
            kwargs["record_end_metrics"] = self._tracer_metrics.start_span(parent, _RECORD_AND_SAMPLE)
        span = _SdkSpanImpl(name=name, context=span_context, parent=parent, span_processor=processor, **kwargs)
        span.start(start_time=start_time, parent_context=context)
        return span


def _span_parameters() -> set[str]:
    try:
        return set(inspect.signature(SdkSpan.__init__).parameters)
    except (TypeError, ValueError):
        return set()


def _constructor_compatible() -> bool:
    params = _span_parameters()
    return _SdkSpanImpl is not None and all(p in params for p in _SPAN_PARAMETERS) and hasattr(SdkSpan, "start")


def _tracer_enabled(tracer: Any) -> bool:
    is_enabled = getattr(tracer, "_is_enabled", None)
    try:
        return bool(is_enabled()) if is_enabled is not None else True
    except Exception:  # noqa: BLE001 - an unexpected SDK: use the regular path
        return False
