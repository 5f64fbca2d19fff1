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

With flowtel's assembler as the provider's only processor, spans are built from a template (a
span the SDK's own constructor made, whose layout is checked once) and handed to the assembler
directly; their event and link deques are made on first use (most spans never get one).
"""

from __future__ import annotations

import inspect
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Span as SdkSpan

try:
    from opentelemetry.sdk.trace import (
        _Span as _SdkSpanImpl,  # what Tracer.start_span builds
    )
except ImportError:  # pragma: no cover - an SDK without it takes the regular path
    _SdkSpanImpl = None  # type: ignore[assignment,misc]
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link

_new_object = object.__new__
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
        self._template: _SpanTemplate | None = None
        if self._fast and self._processors_of is not None and len(self._processors_of) == 1:
            self._template = _SpanTemplate.for_sdk(self._processors_of[0], self._common)

    @property
    def fast(self) -> bool:
        return self._fast

    @property
    def template_layout(self) -> bool:
        """Spans this starter hands to a sole processor have the layout its template checked."""
        return self._template is not None

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
        end_metrics = (
            self._tracer_metrics.start_span(parent, _RECORD_AND_SAMPLE)
            if self._with_end_metrics and self._tracer_metrics is not None else None
        )
        if processors is not None and len(processors) == 1:
            # flowtel's assembler is the provider's only processor: call it directly.
            processor = processors[0]
            template = self._template
            if template is not None and template.processor is processor:
                span = template.build(name, span_context, parent, start_time, end_metrics)
                processor.on_start(span, parent_context=context)
                return span
        else:
            processor = self._processor
        kwargs = dict(self._common)
        if end_metrics is not None:
            kwargs["record_end_metrics"] = end_metrics
        span = _SdkSpanImpl(name=name, context=span_context, parent=parent, span_processor=processor, **kwargs)
        span.start(start_time=start_time, parent_context=context)
        return span


class _LazyBoundedList(BoundedList):
    """The SDK's ``BoundedList`` (events, links of a span) with its deque made on first use.

    Most spans get no event and no link, and an empty bounded deque is the most expensive part
    of a new span's containers. Every ``BoundedList`` method reaches the deque as ``self._dq``:
    the first such access creates it (``__getattr__`` runs only while the attribute is missing).
    """

    def __getattr__(self, name: str) -> Any:
        if name == "_dq":  # (callers may hold self._lock: not taken here; setdefault is atomic)
            return self.__dict__.setdefault("_dq", deque(maxlen=self.__dict__["_maxlen"]))
        raise AttributeError(name)


class _SpanTemplate:
    """Builds started SDK spans field by field, as the SDK's constructor would, for less.

    ``_Span.__init__`` (and ``start``) spend most of their time on keyword handling, defaults
    and a lock round trip that a span nobody else has seen yet does not need. The template is a
    span made by the SDK's own constructor: a new span takes its fields, with fresh containers
    (attributes, events, links) and a fresh lock, and the per-span values. It is used only when
    that span's layout is exactly the one known here (``for_sdk``); ``tests/test_span_starter.py``
    checks the spans it builds against the SDK's.
    """

    _SPAN_FIELDS = frozenset({
        "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent",
        "_start_time", "_end_time", "_attributes", "_events", "_links", "_resource", "_status",
        "_sampler", "_trace_config", "_record_exception", "_set_status_on_exception",
        "_span_processor", "_limits", "_lock", "_record_end_metrics",
    })
    _ATTRIBUTE_FIELDS = frozenset({"_dict", "maxlen", "dropped", "max_value_len", "_lock", "_immutable"})
    _LIST_FIELDS = frozenset({"dropped", "_dq", "_lock"})

    def __init__(self, processor: Any, span: Any) -> None:
        self.processor = processor
        self._span_fields = dict(vars(span))
        self._attribute_fields = dict(vars(span._attributes))
        self._max_events = span._events._dq.maxlen
        self._max_links = span._links._dq.maxlen
        self._lock_type = _lock_factory(span._lock)
        self._attribute_lock_type = _lock_factory(span._attributes._lock)
        self._list_lock_type = _lock_factory(span._events._lock)

    @classmethod
    def for_sdk(cls, processor: Any, common: dict[str, Any]) -> _SpanTemplate | None:
        try:
            probe_context = SpanContext(1, 1, is_remote=False, trace_flags=_FLAGS[_SAMPLED])
            span = _SdkSpanImpl(name="probe", context=probe_context, parent=None, span_processor=processor, **common)
            attributes, events, links = span._attributes, span._events, span._links
            if (
                set(vars(span)) != cls._SPAN_FIELDS
                or type(attributes) is not BoundedAttributes or set(vars(attributes)) != cls._ATTRIBUTE_FIELDS
                or attributes._dict or attributes._immutable
                or any(type(x) is not BoundedList or set(vars(x)) != cls._LIST_FIELDS or len(x) for x in (events, links))
                or span._start_time is not None or span._end_time is not None or span._record_end_metrics is not None
                or type(span).start is not _SdkSpanImpl.start or type(span).__new__ is not _SdkSpanImpl.__new__
            ):
                return None
            if any(_lock_factory(x._lock) is None for x in (span, attributes, events, links)):
                return None
            return cls(processor, span)
        except Exception:  # noqa: BLE001 - an SDK that differs: its own constructor is used
            return None

    def build(self, name: str, context: SpanContext, parent: SpanContext | None, start_time: int,
              record_end_metrics: Any) -> Any:
        attribute_fields = self._attribute_fields.copy()  # dict.copy: the fast path for a dict
        attribute_fields["_dict"] = {}
        attribute_fields["_lock"] = self._attribute_lock_type()
        attributes = _new_object(BoundedAttributes)
        attributes.__dict__ = attribute_fields
        list_lock = self._list_lock_type
        events = _new_object(_LazyBoundedList)
        events.__dict__ = {"dropped": 0, "_maxlen": self._max_events, "_lock": list_lock()}
        links = _new_object(_LazyBoundedList)
        links.__dict__ = {"dropped": 0, "_maxlen": self._max_links, "_lock": list_lock()}
        fields = self._span_fields.copy()
        fields["_name"] = name
        fields["_context"] = context
        fields["_parent"] = parent
        fields["_start_time"] = start_time
        fields["_attributes"] = attributes
        fields["_events"] = events
        fields["_links"] = links
        fields["_lock"] = self._lock_type()
        fields["_record_end_metrics"] = record_end_metrics
        span = _new_object(_SdkSpanImpl)
        span.__dict__ = fields
        return span


def _lock_factory(lock: Any) -> Any:
    """``threading.Lock`` or ``threading.RLock``: whichever made ``lock`` (None: neither)."""
    for factory in (threading.Lock, threading.RLock):
        if type(lock) is type(factory()):
            return factory
    return None


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
