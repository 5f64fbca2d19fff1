"""Every use flowtel makes of OpenTelemetry's private internals, in this one module.

flowtel's hot path (a ``@trace`` call) is a few microseconds; the OTel SDK's general-purpose
``Tracer.start_span``, per-attribute validation and ``end()`` snapshot copy would double it. So,
for spans on flowtel's own private provider, flowtel reaches into the SDK:

- builds started ``_Span`` objects itself, with the ids, flags, parent and trace state
  ``Tracer.start_span`` would give, from a template span whose layout is checked
  (``DirectSpanFactory``);
- writes already-encoded attribute values into the span's attribute dict
  (``writable_attributes``, guarded by ``end_time``; ``sole_processor`` tells a span built for
  flowtel's assembler), marks status OK (``set_ok_unless_set``), and ends a span by handing
  the ended span itself to its sole processor, without the ``ReadableSpan`` copy
  (``end_directly``);
- keeps values whose encoding is deferred on the SDK span object (``defer``,
  ``clear_deferred``; read back with a plain ``getattr(span, DEFERRED_SLOT, None)``);
- reads attributes, events and links without the SDK's locked copies (``attribute_mapping``,
  ``event_list``, ``link_list``);
- attaches and detaches the current span with OTel's private context key and runtime context
  (``context_with_span``, ``detach``).

Nothing else on the span path touches a private OTel name (the delivery side's
instrumentation-suppression key is a separate matter). Everything here is guarded twice: the
installed SDK's version must lie in ``VERIFIED_RANGE`` (the releases this code was checked
against, oldest and newest), and a structural self-check of a probe span must pass. Otherwise
:func:`internals_usable` is False: ``DirectSpanFactory.for_tracer`` and ``writable_attributes``
give nothing (so ``end_directly``, ``defer`` and the other writers are never reached), the
context and read functions take their public forms, and flowtel uses ``Tracer.start_span``,
``span.set_attribute``, ``span.end()``, ``span.attributes`` ... -- the same traces, only slower.
The reason is logged once, at debug level. Extending the range means running the
test suite against the new release (``tests/test_otel_sdk.py`` and ``tests/test_span_starter.py``
compare both paths).
"""

from __future__ import annotations

import functools
import inspect
import logging
import operator
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk import version as _sdk_version
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

try:
    from opentelemetry.sdk.trace import _Span as _SdkSpanImpl  # what Tracer.start_span builds
except ImportError:  # pragma: no cover - such an SDK fails the structural check
    _SdkSpanImpl = None  # type: ignore[assignment,misc]

_logger = logging.getLogger("flowtel")

# [oldest, first unverified): verified with 1.27.0 and 1.45.2 (the newest release at the time).
VERIFIED_RANGE = ("1.27.0", "1.46.0")

DEFERRED_SLOT = "_flowtel_deferred"  # on an SDK span: {key: (value, token)}, see ``defer``

_SPAN_KEY: Any = getattr(otel_trace, "_SPAN_KEY", None)
_RUNTIME_CONTEXT: Any = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_UNSET = StatusCode.UNSET
_OK_STATUS = Status(StatusCode.OK)
_SAMPLED = int(TraceFlags.SAMPLED)
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_FLAGS = {bits: TraceFlags(bits) for bits in (_SAMPLED, _SAMPLED | _RANDOM)}
_SAMPLED_FLAGS = _FLAGS[_SAMPLED]
_RECORD_AND_SAMPLE = Decision.RECORD_AND_SAMPLE
_SPAN_PARAMETERS = (
    "name", "context", "parent", "sampler", "resource", "attributes", "span_processor", "kind",
    "links", "instrumentation_info", "limits", "instrumentation_scope",
)


# -- the decision --------------------------------------------------------------------------------
def sdk_version() -> str:
    """The installed ``opentelemetry-sdk`` version."""
    return str(_sdk_version.__version__)


def version_verified(version: str) -> bool:
    """Whether ``version`` lies in :data:`VERIFIED_RANGE`."""
    low, high = VERIFIED_RANGE
    return _release(low) <= _release(version) < _release(high)


_usable = False


def internals_usable() -> bool:
    """Whether flowtel may use the SDK internals (decided once, at import; see :func:`recheck`)."""
    return _usable


def recheck() -> bool:
    """Decide again (tests patch :func:`sdk_version`); spans already started keep their path.

    Takes effect for span starters built afterwards (``flowtel.tracing.reset()`` rebuilds them).
    """
    global _usable
    _usable = False
    _bind_context_functions(False)
    version = sdk_version()
    if not version_verified(version):
        reason = f"version {version} is outside the verified range {VERIFIED_RANGE[0]} to below {VERIFIED_RANGE[1]}"
    else:
        reason = _structure_problem()
    if reason:
        _logger.debug("flowtel: OpenTelemetry SDK internals not used (%s); taking the public API.", reason)
        return False
    _usable = True
    _bind_context_functions(True)
    return True


def _release(version: str) -> tuple[int, ...]:
    """(1, 46, 0) for "1.46.0", "1.46.0.dev0" and "1.46.0rc1" alike: a pre-release counts as the release."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("rc")[0].split("dev")[0])[:3])


def _structure_problem() -> str:
    """Empty when a probe span has every private field flowtel uses, else what is missing."""
    try:
        if _SPAN_KEY is None or _RUNTIME_CONTEXT is None:
            return "no private context key or runtime context"
        if not _constructor_compatible():
            return "the span constructor differs"
        probe = _SdkSpanImpl(name="probe", context=SpanContext(1, 1, False, _SAMPLED_FLAGS), parent=None,
                             resource=Resource.get_empty())
        attributes = probe._attributes
        if not (isinstance(attributes, BoundedAttributes) and isinstance(attributes._dict, dict)
                and hasattr(attributes, "_immutable") and isinstance(probe._status, Status)
                and probe._end_time is None and hasattr(probe, "_span_processor")
                and _lock_factory(probe._lock) is not None and hasattr(probe, "__dict__")
                and all(isinstance(x, BoundedList) and hasattr(x, "_dq") for x in (probe._events, probe._links))):
            return "the span layout differs"
        return ""
    except Exception as exc:  # noqa: BLE001 - any surprise means: use the public API
        return f"probe failed: {exc!r}"


# -- context -------------------------------------------------------------------------------------
# Bound by recheck() to the private fast forms or their public equivalents: on the hot path
# (every span is attached and detached) an extra Python call frame is a measurable cost.

#: ``context_with_span(span)``: the current context with ``span`` as its current span
#: (``otel_trace.set_span_in_context``), for ``otel_context.attach``.
context_with_span: Callable[[Any], otel_context.Context] = otel_trace.set_span_in_context

#: ``detach(token)``: undo ``otel_context.attach``. The private form raises on a token from
#: another context, where the public one logs an error.
detach: Callable[[Any], None] = otel_context.detach


def _bind_context_functions(usable: bool) -> None:
    global context_with_span, detach, sole_processor
    if usable:
        context_with_span = functools.partial(otel_context.set_value, _SPAN_KEY)
        detach = _RUNTIME_CONTEXT.detach
        sole_processor = operator.attrgetter("_span_processor")
    else:
        context_with_span = otel_trace.set_span_in_context
        detach = otel_context.detach
        sole_processor = _no_processor


# -- live spans: hot path (callers check writable_attributes() first) ---------------------------
def writable_attributes(span: Any, known_layout: bool, max_attributes: int) -> dict[str, Any] | None:
    """The attribute dict of SDK span ``span`` flowtel may write encoded values into while it is
    open (``span.is_recording()``), or None: write through ``span.set_attribute``.

    ``known_layout``: ``span`` was built by a :class:`DirectSpanFactory` template.
    """
    if not _usable:
        return None
    if known_layout:
        return span._attributes._dict  # type: ignore[no-any-return]
    bounded = getattr(span, "_attributes", None)
    target = getattr(bounded, "_dict", None)
    if isinstance(target, dict) and getattr(bounded, "maxlen", None) in (None, max_attributes) and hasattr(
        span, "_end_time"
    ) and isinstance(getattr(span, "_status", None), Status):
        return target
    return None


def _no_processor(span: Any) -> Any:
    return None


#: ``sole_processor(span)``: the processor a recording span of flowtel's provider ends into
#: (compared with flowtel's assembler: a direct span); None when the internals are not used.
sole_processor: Callable[[Any], Any] = _no_processor

#: ``end_time(span)``: the end time of a span :func:`writable_attributes` gave a dict for (None
#: while it is open); a C-level read: it guards every direct attribute write.
end_time: Callable[[Any], int | None] = operator.attrgetter("_end_time")


def set_ok_unless_set(span: Any) -> None:
    """Status OK if it is still UNSET (an open span with writable attributes only)."""
    if span._status.status_code is _UNSET:
        span._status = _OK_STATUS


def end_directly(span: Any, end_time: int, ok: bool = False) -> None:
    """End ``span`` (built by a :class:`DirectSpanFactory`) as ``span.end`` would, but hand the
    ended span itself to its processor instead of a ``ReadableSpan`` copy: nothing can change it
    any more (every SDK setter, and flowtel's own, checks the end time). Ending twice does nothing.
    ``ok``: first :func:`set_ok_unless_set` (one call for ``@trace``'s normal exit)."""
    if ok and span._status.status_code is _UNSET:
        span._status = _OK_STATUS
    with span._lock:
        if span._end_time is not None:
            return
        span._end_time = end_time
        span._attributes._immutable = True
    record_end_metrics = span.__dict__.get("_record_end_metrics")  # (newer SDKs only)
    if record_end_metrics is not None:
        record_end_metrics()
    span._span_processor.on_end(span)


def defer(span: Any, key: str, value: Any, token: Any) -> None:
    """Keep ``value`` (to encode later under ``token``) on the SDK span, in its ``DEFERRED_SLOT``
    attribute (readers use ``getattr(span, DEFERRED_SLOT, None)``, valid on any object)."""
    deferred = span.__dict__.get(DEFERRED_SLOT)
    if deferred is None:
        setattr(span, DEFERRED_SLOT, {key: (value, token)})
    else:
        deferred[key] = (value, token)


def clear_deferred(span: Any) -> None:
    setattr(span, DEFERRED_SLOT, None)


def attribute_dict(span: Any) -> dict[str, Any]:
    """The attribute dict of a span :func:`defer` kept values on (to swap in their encodings)."""
    return span._attributes._dict  # type: ignore[no-any-return]


# -- reading spans without the SDK's locked copies -------------------------------------------------
def attribute_mapping(span: Any) -> Mapping[str, Any]:
    """``span``'s attributes as stored, as a plain mapping (no copy when possible).

    ``ReadableSpan.attributes`` wraps OTel's BoundedAttributes in a MappingProxy, and iterating
    either goes through Python-level generators; the dict underneath is several times faster.
    """
    if _usable:
        stored = getattr(span, "_attributes", None)
        inner = getattr(stored, "_dict", stored)
        if isinstance(inner, dict):
            return inner
    return span.attributes or {}


def event_list(span: Any) -> Sequence[Any]:
    """A finished span's events, without the locked copy ``ReadableSpan.events`` makes."""
    if not _usable:
        return span.events  # type: ignore[no-any-return]
    stored = getattr(span, "_events", None)
    fields = getattr(stored, "__dict__", None)
    if fields is not None and "_maxlen" in fields:  # a _LazyBoundedList (below)
        return fields.get("_dq", ())  # type: ignore[no-any-return]  # no deque yet: nothing was ever added
    return () if stored is None else getattr(stored, "_dq", stored)  # a BoundedList holds a deque


def link_list(span: Any) -> Sequence[Any]:
    """A finished span's links, without the locked copy ``ReadableSpan.links`` makes."""
    if not _usable:
        return getattr(span, "links", ())
    stored = getattr(span, "_links", None)
    fields = getattr(stored, "__dict__", None)
    if fields is not None and "_maxlen" in fields:  # a _LazyBoundedList (below)
        return fields.get("_dq", ())  # type: ignore[no-any-return]
    return () if stored is None else getattr(stored, "_dq", stored)


# -- starting spans without Tracer.start_span ------------------------------------------------------
class DirectSpanFactory:
    """Starts SDK spans for one always-sampling tracer exactly as ``Tracer.start_span`` would, for less.

    Used by ``flowtel.tracing._spans.SpanStarter`` when every trace is recorded. ``start`` gives
    the span the ids, flags, trace state and parent ``Tracer.start_span`` would, and returns None
    where the sampler must decide (a parent that is not sampled): the caller then takes
    ``Tracer.start_span``. With a sole processor (flowtel's assembler), spans are built from a
    :class:`_SpanTemplate` and handed to it directly; otherwise the SDK's constructor is called.
    """

    @classmethod
    def for_tracer(cls, provider: Any, tracer: Any) -> DirectSpanFactory | None:
        """A factory, or None: start spans with ``tracer.start_span``."""
        if not _usable or not _tracer_enabled(tracer):
            return None
        multi = getattr(provider, "_active_span_processor", None)
        common: dict[str, Any] = {
            "sampler": tracer.sampler,
            "resource": tracer.resource,
            "kind": SpanKind.INTERNAL,
            "instrumentation_info": getattr(tracer, "instrumentation_info", None),
            "limits": getattr(tracer, "_span_limits", None),
            "instrumentation_scope": getattr(tracer, "_instrumentation_scope", None),
        }
        if multi is None or common["limits"] is None:
            return None
        return cls(multi, tracer, common)

    def __init__(self, multi: Any, tracer: Any, common: dict[str, Any]) -> None:
        self._multi = multi
        self._common = common
        self._id_generator = tracer.id_generator
        self._random_ids = getattr(self._id_generator, "is_trace_id_random", None)
        self._processors_of = getattr(multi, "_span_processors", None)
        self._tracer_metrics = (
            getattr(tracer, "_tracer_metrics", None) if "record_end_metrics" in _span_parameters() else None
        )
        self._template: _SpanTemplate | None = None
        if self._processors_of is not None and len(self._processors_of) == 1:
            self._template = _SpanTemplate.for_sdk(self._processors_of[0], common)

    @property
    def template_layout(self) -> bool:
        """Spans handed to a sole processor have the layout the template checked."""
        return self._template is not None

    def start(self, name: str, context: otel_context.Context | None, start_time: int) -> Any:
        current = context if context is not None else _RUNTIME_CONTEXT.get_current()
        parent_span: Any = current.get(_SPAN_KEY)
        parent: SpanContext | None = None
        if parent_span is not None:
            parent = parent_span.get_span_context()
            if parent is not None and not isinstance(parent, SpanContext):
                return None
            if parent is None or not parent.is_valid:
                parent = None
            elif not parent.trace_flags & _SAMPLED:
                return None  # a parent that is not sampled: the sampler decides (ParentBased drops it)
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
        end_metrics = (
            self._tracer_metrics.start_span(parent, _RECORD_AND_SAMPLE) if self._tracer_metrics is not None else None
        )
        processors = self._processors_of
        if processors is not None and len(processors) == 1:
            # flowtel's assembler is the provider's only processor: call it directly.
            processor = processors[0]
            template = self._template
            if template is not None and template.processor is processor:
                span = template.build(name, span_context, parent, start_time, end_metrics)
                processor.on_start(span, parent_context=context)
                return span
        else:
            processor = self._multi
        kwargs = dict(self._common)
        if end_metrics is not None:
            kwargs["record_end_metrics"] = end_metrics
        span = _SdkSpanImpl(name=name, context=span_context, parent=parent, span_processor=processor, **kwargs)
        span.start(start_time=start_time, parent_context=context)
        return span


class _LazyBoundedList(BoundedList):  # type: ignore[type-arg]
    """The SDK's ``BoundedList`` (events, links of a span) with its deque made on first use.

    Most spans get no event and no link, and an empty bounded deque is the most expensive part
    of a new span's containers. Every ``BoundedList`` method reaches the deque as ``self._dq``:
    the first such access creates it (``__getattr__`` runs only while the attribute is missing).
    """

    def __getattr__(self, name: str) -> Any:
        if name == "_dq":  # (callers may hold self._lock: not taken here; setdefault is atomic)
            return self.__dict__.setdefault("_dq", deque(maxlen=self.__dict__["_maxlen"]))
        raise AttributeError(name)


_new_object = object.__new__


class _SpanTemplate:
    """Builds started SDK spans field by field, as the SDK's constructor would, for less.

    ``_Span.__init__`` (and ``start``) spend most of their time on keyword handling, defaults
    and a lock round trip that a span nobody else has seen yet does not need. The template is a
    span made by the SDK's own constructor: a new span takes its fields, with fresh containers
    (attributes, events, links) and a fresh lock, and the per-span values. It is used only when
    that span's layout is exactly the one known here (``for_sdk``); ``tests/test_span_starter.py``
    checks the spans it builds against the SDK's.
    """

    # The span's fields as of SDK 1.27; later releases add "_record_end_metrics" (_END_METRICS).
    _SPAN_FIELDS = frozenset({
        "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent",
        "_start_time", "_end_time", "_attributes", "_events", "_links", "_resource", "_status",
        "_sampler", "_trace_config", "_record_exception", "_set_status_on_exception",
        "_span_processor", "_limits", "_lock",
    })
    _END_METRICS = "_record_end_metrics"
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
        self._end_metrics = self._END_METRICS in self._span_fields

    @classmethod
    def for_sdk(cls, processor: Any, common: dict[str, Any]) -> _SpanTemplate | None:
        try:
            probe_context = SpanContext(1, 1, is_remote=False, trace_flags=_SAMPLED_FLAGS)
            span = _SdkSpanImpl(name="probe", context=probe_context, parent=None, span_processor=processor, **common)
            attributes, events, links = span._attributes, span._events, span._links
            parts: tuple[Any, ...] = (span, attributes, events, links)
            if (
                set(vars(span)) - {cls._END_METRICS} != cls._SPAN_FIELDS
                or type(attributes) is not BoundedAttributes or set(vars(attributes)) != cls._ATTRIBUTE_FIELDS
                or attributes._dict or attributes._immutable
                or any(type(x) is not BoundedList or set(vars(x)) != cls._LIST_FIELDS or len(x) for x in (events, links))
                or span._start_time is not None or span._end_time is not None
                or vars(span).get(cls._END_METRICS) is not None
                or type(span).start is not _SdkSpanImpl.start or type(span).__new__ is not _SdkSpanImpl.__new__
            ):
                return None
            if any(_lock_factory(x._lock) is None for x in parts):
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
        if self._end_metrics:
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


recheck()
