"""Spans: immutable :class:`Span`, the mutable :class:`LiveSpan` and :class:`NoOpSpan`.

Also here, because :class:`LiveSpan` reads them as this module's globals: the capture hooks
(installed through `entities._hooks`) and deferred encoding (:func:`materialize`). Span types and log levels
live in :mod:`~flowtel.entities._span_type`; ids, links and the span dict copy in
:mod:`~flowtel.entities._span_dicts`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as OTelEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind
from opentelemetry.trace import Status as OTelStatus
from opentelemetry.trace import StatusCode as OTelStatusCode

from flowtel import _otel_sdk
from flowtel.entities import _hooks, _ids
from flowtel.entities._constants import NO_OP_SPAN_TRACE_ID, SpanAttributeKey
from flowtel.entities._json import dump_json, json_len, load_json
from flowtel.entities._span_dicts import (
    _context,
    _copy_span_dict,
    _decode_ids,
    _link_to_dict,
    _links_from_dicts,
)
from flowtel.entities._span_event import SpanEvent
from flowtel.entities._span_status import SpanStatus, SpanStatusCode
from flowtel.entities._span_type import SpanLogLevel, SpanType, default_log_level

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as OTelSdkSpan

_EMPTY_RESOURCE = Resource.get_empty()
_OTEL_ERROR = OTelStatusCode.ERROR
_OTEL_OK_STATUS = OTelStatus(OTelStatusCode.OK)


class Span:
    """A finished span. Immutable; attribute values are decoded from their JSON strings.

    Args:
        otel_span: The OpenTelemetry ``ReadableSpan`` holding the data.
    """

    def __init__(self, otel_span: ReadableSpan) -> None:
        if not isinstance(otel_span, ReadableSpan):
            raise TypeError(
                "Span() takes an OpenTelemetry ReadableSpan, got " f"{type(otel_span).__name__}."
            )
        self._span = otel_span

    # -- identity ---------------------------------------------------------------------------
    @cached_property
    def trace_id(self) -> str:
        """The MLflow trace id (``tr-<32 hex>``)."""
        raw = self._span.attributes.get(SpanAttributeKey.REQUEST_ID) if self._span.attributes else None
        value = load_json(raw)
        if isinstance(value, str) and value:
            return value
        return _ids.trace_id_from_otel(self._span.context.trace_id)

    def _raw_attributes(self) -> dict[str, Any]:
        """Attribute values as stored (JSON strings), with the derivable MLflow keys filled in.

        flowtel does not spend the user's time writing values it can derive: the trace id and
        the default log level of its own spans are added here, when the span is read.
        """
        cached: dict[str, Any] | None = self.__dict__.get("_raw_cache")
        if cached is not None:
            return cached
        raw = dict(plain_attributes(self._span))
        if SpanAttributeKey.REQUEST_ID not in raw:
            raw[SpanAttributeKey.REQUEST_ID] = _request_id_json(self._span.context.trace_id)
        if SpanAttributeKey.LOG_LEVEL not in raw and _is_flowtel_span(self._span):
            raw[SpanAttributeKey.LOG_LEVEL] = str(_derived_log_level(self._span, raw))
        if type(self) is Span:
            self.__dict__["_raw_cache"] = raw
        return raw

    @property
    def request_id(self) -> str:
        """Deprecated alias of :attr:`trace_id`."""
        return self.trace_id

    @property
    def span_id(self) -> str:
        """16-hex-digit span id."""
        return _ids.span_id_hex(self._span.context.span_id)

    @property
    def parent_id(self) -> str | None:
        parent = self._span.parent
        return _ids.span_id_hex(parent.span_id) if parent else None

    @property
    def name(self) -> str:
        return self._span.name

    @property
    def start_time_ns(self) -> int:
        return self._span.start_time  # type: ignore[return-value]

    @property
    def end_time_ns(self) -> int | None:
        return self._span.end_time

    @property
    def status(self) -> SpanStatus:
        return SpanStatus.from_otel_status(self._span.status)

    # -- content ----------------------------------------------------------------------------
    @property
    def inputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.INPUTS)

    @property
    def outputs(self) -> Any:
        return self.get_attribute(SpanAttributeKey.OUTPUTS)

    @property
    def span_type(self) -> str | None:
        value: str | None = self.get_attribute(SpanAttributeKey.SPAN_TYPE)
        return value

    @property
    def log_level(self) -> int | None:
        value: int | None = self.get_attribute(SpanAttributeKey.LOG_LEVEL)
        return value

    @property
    def description(self) -> str | None:
        value: str | None = self.get_attribute(SpanAttributeKey.DESCRIPTION)
        return value

    @property
    def model_name(self) -> str | None:
        value: str | None = self.get_attribute(SpanAttributeKey.MODEL)
        return value

    @property
    def llm_cost(self) -> dict[str, float] | None:
        value: dict[str, float] | None = self.get_attribute(SpanAttributeKey.LLM_COST)
        return value

    @property
    def attributes(self) -> dict[str, Any]:
        """All attributes, JSON-decoded."""
        return {k: load_json(v) for k, v in self._raw_attributes().items()}

    @property
    def events(self) -> list[SpanEvent]:
        return [
            SpanEvent(name=e.name, timestamp=e.timestamp, attributes=dict(e.attributes or {}))
            for e in self._span.events
        ]

    @property
    def links(self) -> list[dict[str, Any]]:
        return [_link_to_dict(link) for link in getattr(self._span, "links", ()) or ()]

    def get_attribute(self, key: str) -> Any:
        """One attribute, JSON-decoded; None when absent."""
        return load_json(self._raw_attributes().get(key))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, trace_id={self.trace_id!r}, "
            f"span_id={self.span_id!r}, parent_id={self.parent_id!r})"
        )

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The MLflow v3 span dict (base64 ids, JSON-string attributes)."""
        cached = self.__dict__.get("_dict_cache")
        if cached is not None:
            return _copy_span_dict(cached)
        result = self._build_dict()
        if type(self) is Span:
            self.__dict__["_dict_cache"] = result
            return _copy_span_dict(result)
        return result

    def _to_dict_shared(self) -> dict[str, Any]:
        """Like :meth:`to_dict` but may return the cached dict itself: callers must not mutate it."""
        if type(self) is not Span:
            return self._build_dict()
        cached: dict[str, Any] | None = self.__dict__.get("_dict_cache")
        if cached is None:
            cached = self.__dict__["_dict_cache"] = self._build_dict()
        return cached

    def _build_dict(self) -> dict[str, Any]:
        span = self._span
        context = span.context
        parent = span.parent
        status = span.status
        links = plain_links(span)
        return {
            "trace_id": _ids.encode_trace_id_b64(context.trace_id),
            "span_id": _ids.encode_span_id_b64(context.span_id),
            "parent_span_id": _ids.encode_span_id_b64(parent.span_id) if parent else None,
            "name": span.name,
            "kind": _kind_name(span),
            "start_time_unix_nano": span.start_time,
            "end_time_unix_nano": span.end_time,
            "events": _event_dicts(span),
            "status": {
                "code": _proto_status_code_name(status),
                "message": status.description or "",
            },
            "attributes": dict(self._raw_attributes()),
            "links": [_link_to_dict(link) for link in links] if links else [],
        }

    def _json_size(self) -> int:
        """``len(json.dumps(self.to_dict()))``, MLflow's measure of a span, in bytes.

        Summed from the parts instead of building and encoding the dict: the ids have fixed
        lengths, and escaping the joined attribute keys and values costs two C calls. The JSON
        is ASCII (``ensure_ascii``), so its length in characters is its length in UTF-8 bytes.
        """
        if type(self) is not Span:
            return len(json.dumps(self.to_dict()))
        span = self._span
        status = span.status
        links = plain_links(span)
        return (
            _SPAN_JSON_SKELETON_LEN
            + _TRACE_ID_B64_LEN
            + _SPAN_ID_B64_LEN
            + (_SPAN_ID_B64_LEN if span.parent else 2)  # "" becomes "<id>" or null
            + json_len(span.name) - 2
            + len(_kind_name(span))
            + json_len(span.start_time) - 1
            + json_len(span.end_time) - 1
            + (len(json.dumps(_event_dicts(span))) - 2 if plain_events(span) else 0)
            + len(_proto_status_code_name(status))
            + (json_len(status.description) - 2 if status.description else 0)
            + json_len(self._raw_attributes()) - 2
            + (len(json.dumps([_link_to_dict(link) for link in links])) - 2 if links else 0)
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        """A span from an MLflow span dict (v3 with base64 or hex ids, or the older v2 form)."""
        if not isinstance(data, dict):
            raise ValueError(f"A span dict is required, got {type(data).__name__}.")
        attributes = data.get("attributes") or {}
        if not attributes.get(SpanAttributeKey.REQUEST_ID):
            raise ValueError(f"The {SpanAttributeKey.REQUEST_ID} attribute is empty or missing.")
        if "context" in data:
            return cls._from_dict_v2(data)
        try:
            trace_id, span_id, parent_id = _decode_ids(data)
            status = data.get("status") or {}
            span_status = SpanStatus(
                SpanStatusCode.parse(status.get("code", "STATUS_CODE_UNSET")),
                status.get("message", "") or "",
            )
            end = data.get("end_time_unix_nano")
            otel_span = ReadableSpan(
                name=data["name"],
                context=_context(trace_id, span_id),
                parent=_context(trace_id, parent_id) if parent_id else None,
                kind=_kind_from_name(data.get("kind")),
                start_time=int(data["start_time_unix_nano"]),
                end_time=int(end) if end else None,
                attributes=dict(attributes),
                status=span_status.to_otel_status(),
                resource=_EMPTY_RESOURCE,
                events=[
                    OTelEvent(
                        name=e["name"],
                        timestamp=int(e["time_unix_nano"]),
                        attributes=e.get("attributes") or {},
                    )
                    for e in data.get("events") or []
                ],
                links=_links_from_dicts(data.get("links") or [], trace_id),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"Invalid span dict ({type(exc).__name__}: {exc}).") from exc
        return cls(otel_span)

    @classmethod
    def _from_dict_v2(cls, data: dict[str, Any]) -> Span:
        ctx = data["context"]
        trace_id = int(str(ctx["trace_id"]).removeprefix("0x"), 16)
        span_id = int(str(ctx["span_id"]).removeprefix("0x"), 16)
        parent = data.get("parent_id")
        parent_id = int(str(parent).removeprefix("0x"), 16) if parent else None
        status = SpanStatus(data.get("status_code", "UNSET"), data.get("status_message", "") or "")
        otel_span = ReadableSpan(
            name=data["name"],
            context=_context(trace_id, span_id),
            parent=_context(trace_id, parent_id) if parent_id else None,
            start_time=data["start_time"],
            end_time=data.get("end_time"),
            attributes=dict(data["attributes"]),
            status=status.to_otel_status(),
            resource=_EMPTY_RESOURCE,
            events=[
                OTelEvent(name=e["name"], timestamp=e["timestamp"], attributes=e.get("attributes") or {})
                for e in data.get("events") or []
            ],
        )
        return cls(otel_span)


class LiveSpan(Span):
    """A span that is still running: set inputs, outputs, attributes, status, events; then end.

    Setters never raise: a failure inside tracing is reported, the user's program goes on.
    Not meant to be shared between threads while it is being mutated.
    """

    _span: OTelSdkSpan  # (a Span holds a ReadableSpan; a live one, the SDK span itself)

    def __init__(self, otel_span: OTelSdkSpan, trace_id: str | None = None, span_type: str = SpanType.UNKNOWN,
                 *, direct: bool = False, known_layout: bool = False):
        self._span = otel_span
        self._trace_id = trace_id
        self._span_type = span_type
        # known_layout: the span starter checked this SDK's span layout (its template).
        self._attrs = (
            otel_span._attributes._dict if known_layout  # type: ignore[union-attr]  # (writable_attributes' template case, inlined)
            else _otel_sdk.writable_attributes(otel_span, False, _MAX_ATTRIBUTES)
        )
        # ``direct``: the SDK span was built by flowtel's span starter with flowtel's trace
        # assembler as its only processor. It then ends without the SDK's snapshot copy, and
        # immutable values may be encoded later, off the caller's thread (see ``_defer``).
        self._direct = direct and self._attrs is not None

    @property
    def trace_id(self) -> str:
        trace_id = self._trace_id
        if trace_id is None:  # formatted on first use: most spans are never asked
            trace_id = self._trace_id = _ids.trace_id_from_otel(self._span.context.trace_id)
        return trace_id

    @property
    def span_type(self) -> str | None:
        return self._span_type

    def set_span_type(self, span_type: str) -> None:
        span_type = span_type if type(span_type) is str else str(span_type)
        self._span_type = span_type
        self._set_raw(SpanAttributeKey.SPAN_TYPE, _hooks.encode_attribute(SpanAttributeKey.SPAN_TYPE, span_type))

    def set_description(self, description: str) -> None:
        self.set_attribute(SpanAttributeKey.DESCRIPTION, description)

    def set_log_level(self, level: int | str) -> None:
        if isinstance(level, str):
            level = getattr(SpanLogLevel, level.upper(), SpanLogLevel.INFO)
        self.set_attribute(SpanAttributeKey.LOG_LEVEL, int(level))

    def set_inputs(self, inputs: Any) -> None:
        self.set_attribute(SpanAttributeKey.INPUTS, inputs)

    def set_outputs(self, outputs: Any) -> None:
        self.set_attribute(SpanAttributeKey.OUTPUTS, outputs)

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        if not isinstance(attributes, dict):
            _report(f"set_attributes() takes a dict, got {type(attributes).__name__}; ignored.")
            return
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            _report(f"Attribute keys must be strings, got {type(key).__name__}; ignored.")
            return
        self._set_raw(key, _hooks.encode_attribute(key, value))

    def _set_raw(self, key: str, raw: str) -> None:
        attrs = self._attrs
        # Values are already-encoded strings, valid OTel attribute values by construction, so
        # OTel's per-value validation (the largest cost of a span) is skipped while the span is
        # open; anything unusual goes through the regular SDK path.
        if attrs is not None and self._span._end_time is None and (len(attrs) < _MAX_ATTRIBUTES or key in attrs):
            attrs[key] = raw
        elif self._span.is_recording():
            self._span.set_attribute(key, raw)

    def _defer(self, key: str, value: Any, token: Any) -> None:
        """Record ``value`` (immutable: str, int, float, bool or None, or a fresh dict of them)
        under ``key``, encoded when the span is first read -- in practice by the delivery worker.

        The attribute dict holds the :data:`DEFERRED` marker meanwhile, which keeps the key's
        position and counts against the attribute limit; :func:`materialize` swaps it for the
        encoding (``token`` is the capture policy to encode with). Any later write to the key
        replaces the marker, and the deferred value is then ignored.
        """
        attrs = self._attrs
        span = self._span
        if self._direct and attrs is not None and span._end_time is None and (len(attrs) < _MAX_ATTRIBUTES or key in attrs):
            # (_otel_sdk.defer, inlined: flowtel's own slot on the span, twice per traced call)
            deferred = span.__dict__.get(_DEFERRED_SLOT)
            if deferred is None:
                setattr(span, _DEFERRED_SLOT, {key: (value, token)})
            else:
                deferred[key] = (value, token)
            attrs[key] = DEFERRED
        else:
            self._set_raw(key, _hooks.encode_deferred(key, value, token))

    def _finish(self, end_time: int) -> None:
        """End the SDK span at ``end_time``.

        A direct span is handed to the assembler as it is: the SDK's ``end`` would build a
        ``ReadableSpan`` copy of it for the processors, but the ended span is itself a
        ``ReadableSpan`` and nothing can change it any more (every SDK setter, and flowtel's own,
        checks the end time).
        """
        span = self._span
        if not self._direct:  # (nothing is ever deferred on these: see _defer)
            span.end(end_time=end_time)
            return
        _otel_sdk.end_directly(span, end_time)

    def _set_raw_many(self, raw: dict[str, str]) -> None:
        attrs = self._attrs
        if attrs is not None and self._span._end_time is None and len(attrs) + len(raw) <= _MAX_ATTRIBUTES:
            attrs.update(raw)
        elif self._span.is_recording():
            self._span.set_attributes(raw)

    def set_status(self, status: SpanStatus | SpanStatusCode | str) -> None:
        try:
            if not isinstance(status, SpanStatus):
                status = SpanStatus(SpanStatusCode.parse(status))
        except ValueError as exc:
            _report(str(exc))
            return
        if self._span.is_recording():
            self._span.set_status(status.to_otel_status())

    def add_event(self, event: SpanEvent) -> None:
        if self._span.is_recording():
            self._span.add_event(event.name, _hooks.event_attributes(event.name, event.attributes), event.timestamp)

    def record_exception(self, exception: BaseException | str) -> None:
        """Add an ``exception`` event and set the status to ERROR."""
        if isinstance(exception, str):
            exception = Exception(exception)
        event = SpanEvent.from_exception(exception)
        event.timestamp = _now_ns()
        self.add_event(event)
        self.set_status(SpanStatus(SpanStatusCode.ERROR, _hooks.status_description(type(exception).__name__, _error_message(exception))))

    def end(
        self,
        outputs: Any = None,
        attributes: dict[str, Any] | None = None,
        status: SpanStatus | str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        """End the span. Status becomes OK unless it is ERROR. Ending twice does nothing."""
        span = self._span
        if not span.is_recording():
            return
        if attributes:
            self.set_attributes(attributes)
        if outputs is not None:
            self.set_outputs(outputs)
        if status is not None:
            self.set_status(status)
        if span.status.status_code is not _OTEL_ERROR:
            span.set_status(_OTEL_OK_STATUS)
        _hooks.before_end(self)
        self._finish(end_time_ns if end_time_ns is not None else _hooks.now_ns())

    def _end_ok(self, outputs: Any, has_outputs: bool, defer_token: Any = None) -> None:
        """``@trace``'s normal exit: record the outputs, status OK unless ERROR, end now.

        The same as ``set_outputs(outputs); end()``, minus the SDK's per-call locking and
        validation on the common path (a span flowtel's provider made, still open). With a
        ``defer_token`` (the capture policy; the caller checked that ``outputs`` is immutable)
        the outputs are encoded later, see :meth:`_defer`.
        """
        span = self._span
        attrs = self._attrs
        if attrs is None or span._end_time is not None:
            if has_outputs:
                self.set_outputs(outputs)
            self.end()
            return
        if has_outputs:
            if defer_token is not None:
                self._defer(SpanAttributeKey.OUTPUTS, outputs, defer_token)
            else:
                self._set_raw(SpanAttributeKey.OUTPUTS, _hooks.encode_attribute(SpanAttributeKey.OUTPUTS, outputs))
        if self._direct and not _hooks.span_processors:
            _otel_sdk.end_directly(span, _hooks.now_ns(), True)  # status OK unless set, then end
            return
        _otel_sdk.set_ok_unless_set(span)
        if _hooks.span_processors:
            _hooks.before_end(self)
        self._finish(_hooks.now_ns())

    def to_immutable_span(self) -> Span:
        return Span(self._span)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        raise NotImplementedError("LiveSpan cannot be built from a dict; use Span.from_dict.")


def _never_raises(method: Any) -> Any:
    """The LiveSpan contract, "setters never raise", enforced for any argument: misuse is
    reported (a warning, once per kind) and ignored. ``end`` still ends the span."""

    def guarded(self: LiveSpan, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - user-facing setter: misuse is logged, never raised
            _report(f"LiveSpan.{method.__name__}() ignored an invalid argument ({type(exc).__name__}).")
            if method.__name__ == "end" and self._span.end_time is None:
                self._finish(_hooks.now_ns())  # a span must never stay open because of its arguments

    guarded.__name__ = method.__name__
    guarded.__qualname__ = method.__qualname__
    guarded.__doc__ = method.__doc__
    guarded.__wrapped__ = method  # type: ignore[attr-defined]
    return guarded


for _method in ("set_span_type", "set_description", "set_log_level", "set_inputs", "set_outputs",
                "set_attributes", "set_attribute", "set_status", "add_event", "record_exception", "end"):
    setattr(LiveSpan, _method, _never_raises(getattr(LiveSpan, _method)))


class NoOpSpan(Span):
    """Stands in for a span that is not recorded (tracing disabled, sampled out, or failed).

    Every method works and does nothing, so user code never has to check.
    """

    def __init__(self, otel_span: Any = None) -> None:
        # A NonRecordingSpan stands in for the ReadableSpan: NoOpSpan overrides every reader.
        placeholder: Any = otel_span if otel_span is not None else NonRecordingSpan(_INVALID_CONTEXT)
        self._span = placeholder

    @property
    def trace_id(self) -> str:
        return NO_OP_SPAN_TRACE_ID

    @property
    def span_id(self) -> None:  # type: ignore[override]
        return None

    @property
    def parent_id(self) -> None:
        return None

    @property
    def name(self) -> None:  # type: ignore[override]
        return None

    @property
    def start_time_ns(self) -> None:  # type: ignore[override]
        return None

    @property
    def end_time_ns(self) -> None:
        return None

    @property
    def status(self) -> None:  # type: ignore[override]
        return None

    @property
    def attributes(self) -> dict[str, Any]:
        return {}

    @property
    def events(self) -> list[SpanEvent]:
        return []

    def get_attribute(self, key: str) -> None:
        return None

    def set_span_type(self, span_type: str) -> None: ...
    def set_description(self, description: str) -> None: ...
    def set_log_level(self, level: int | str) -> None: ...
    def set_inputs(self, inputs: Any) -> None: ...
    def set_outputs(self, outputs: Any) -> None: ...
    def set_attributes(self, attributes: dict[str, Any]) -> None: ...
    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_status(self, status: Any) -> None: ...
    def add_event(self, event: SpanEvent) -> None: ...
    def record_exception(self, exception: BaseException | str) -> None: ...

    def end(self, outputs: Any = None, attributes: Any = None, status: Any = None,
            end_time_ns: int | None = None) -> None:
        end = getattr(self._span, "end", None)
        if callable(end) and not isinstance(self._span, NonRecordingSpan):
            end()

    def to_dict(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        return "NoOpSpan()"


# -- helpers -------------------------------------------------------------------------------------
_INVALID_CONTEXT = SpanContext(0, 0, False)


def _now_ns() -> int:
    return _hooks.now_ns()


# -- values encoded off the caller's thread --------------------------------------------------------
# The marker a deferred value holds in the attribute dict until it is encoded: a str (a valid
# attribute value) recognised by identity, never by equality, so no user value can pass for it.
DEFERRED = "".join(('"', "[flowtel: not yet encoded]", '"'))
_DEFERRED_SLOT = _otel_sdk.DEFERRED_SLOT
# Hot paths below read ``span._end_time`` inline rather than through ``_otel_sdk.end_time``
# (an attrgetter call costs several times a specialised attribute load), always behind an
# ``attrs is not None`` check: ``_otel_sdk.writable_attributes`` gave a dict, so the span has
# the SDK layout that module verified.


def materialize(span: Any, *, final: bool = False) -> None:
    """Encode the values deferred on ``span`` (see :meth:`LiveSpan._defer`) into its attributes.

    Idempotent and safe to race: every caller encodes the same value, and a key whose marker
    was replaced by a later write is left alone. ``final`` (the span has ended, so nothing more
    can be deferred on it) also drops the deferred values.
    """
    deferred = getattr(span, _DEFERRED_SLOT, None)
    if not deferred:
        return
    attrs = _otel_sdk.attribute_dict(span)
    try:
        for key, (value, token) in list(deferred.items()):
            if attrs.get(key) is DEFERRED:
                attrs[key] = _hooks.encode_deferred(key, value, token)
    except Exception as exc:  # noqa: BLE001 - reading a span must not raise
        _report(f"flowtel could not encode a recorded value: {exc!r}")
        for key in deferred:
            if attrs.get(key) is DEFERRED:
                attrs[key] = dump_json(f"[unrecordable value: {type(exc).__name__}]")
    if final:
        _otel_sdk.clear_deferred(span)


def _report(message: str) -> None:
    _hooks.report_misuse(message)


def _error_message(exception: BaseException) -> str:
    try:
        return str(exception)
    except Exception:  # noqa: BLE001 - a user exception whose __str__ raises
        return "<unprintable>"




_MAX_ATTRIBUTES = 1000  # flowtel's provider sets SpanLimits(max_attributes=1000)


def plain_attributes(span: Any) -> Mapping[str, Any]:
    """A span's attributes as a plain mapping, read without copying when possible.

    ``ReadableSpan.attributes`` wraps OTel's BoundedAttributes in a MappingProxy, and iterating
    either goes through Python-level generators; the dict underneath is several times faster.
    """
    if getattr(span, _DEFERRED_SLOT, None):
        materialize(span)
    return _otel_sdk.attribute_mapping(span)


def stored_attributes(span: Any) -> Mapping[str, Any]:
    """Like :func:`plain_attributes`, but as stored right now: values still deferred (see
    :meth:`LiveSpan._defer`) read as the :data:`DEFERRED` marker. For cheap size estimates."""
    return _otel_sdk.attribute_mapping(span)


def attribute_bytes(spans: Any, event_bytes: int = 400, event_values: bool = False) -> int:
    """Rough memory held by the attribute values and events of ``spans``, without encoding
    anything: values still deferred (see :meth:`LiveSpan._defer`) count by their raw lengths.
    For size estimates on the caller's thread, so it only reads lengths. ``event_values``: count
    the events' attribute values too (streamed chunks carry up to a whole value each), not only
    ``event_bytes`` per event."""
    total = 0
    for span in spans:
        values = _otel_sdk.attribute_mapping(span).values()
        events = _otel_sdk.event_list(span)  # (creates no deque that was never needed)
        try:
            total += sum(map(len, values))  # flowtel's values are all strings: one C loop
        except TypeError:
            total += sum(len(v) if type(v) is str else 16 for v in values)
        if events:
            total += len(events) * event_bytes
            if event_values:
                total += _event_value_bytes(events)
        deferred = getattr(span, _DEFERRED_SLOT, None)
        if deferred:
            total += _deferred_bytes(deferred)
    return total


def _event_value_bytes(events: Any) -> int:
    total = 0
    for event in events:
        attributes = event.attributes
        if not attributes:
            continue
        for value in attributes.values():
            if type(value) is str:
                total += len(value)
            elif isinstance(value, (list, tuple)):
                total += sum(len(v) if type(v) is str else 16 for v in value)
            else:
                total += 16
    return total


def _deferred_bytes(deferred: dict[str, tuple[Any, Any]]) -> int:
    total = 0
    for value, _token in deferred.values():  # only the thread that owns the span adds entries
        if type(value) is dict:  # bound arguments: strings count by length, the rest as 16
            total += 16 * len(value)
            for item in value.values():
                if type(item) is str:
                    total += len(item)
        elif type(value) is str:
            total += len(value)
        else:
            total += 16
    return total


def plain_events(span: Any) -> Sequence[Any]:
    """A finished span's events, read without the locked copy ``ReadableSpan.events`` makes."""
    return _otel_sdk.event_list(span)


def plain_links(span: Any) -> Sequence[Any]:
    """A finished span's links, read without the locked copy ``ReadableSpan.links`` makes."""
    return _otel_sdk.link_list(span)


def _event_dicts(span: Any) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "time_unix_nano": e.timestamp, "attributes": dict(e.attributes or {})}
        for e in plain_events(span)
    ]


_PROTO_OK = SpanStatusCode.OK.to_otel_proto_status_code_name()
_PROTO_ERROR = SpanStatusCode.ERROR.to_otel_proto_status_code_name()
_PROTO_UNSET = SpanStatusCode.UNSET.to_otel_proto_status_code_name()


def _proto_status_code_name(status: OTelStatus) -> str:
    """``STATUS_CODE_OK`` etc., as ``SpanStatus.from_otel_status(status)`` would name it."""
    code = status.status_code  # identity checks: hashing an Enum member runs Python code
    return _PROTO_OK if code is OTelStatusCode.OK else _PROTO_ERROR if code is _OTEL_ERROR else _PROTO_UNSET


_last_request_id: tuple[int, str] = (-1, "")


def _request_id_json(otel_trace_id: int) -> str:
    """The JSON-encoded MLflow trace id; the spans of a trace ask for the same one in a row."""
    global _last_request_id
    last = _last_request_id
    if last[0] == otel_trace_id:
        return last[1]
    encoded = '"' + _ids.trace_id_from_otel(otel_trace_id) + '"'
    _last_request_id = (otel_trace_id, encoded)
    return encoded


# -- JSON sizes ----------------------------------------------------------------------------------
# JSON length of a span dict (see ``Span._build_dict``) whose variable parts are all empty: "",
# 0, [] or {}. A span's size adds how much longer each of its parts is than the empty one.
_SPAN_JSON_SKELETON_LEN = len(json.dumps({
    "trace_id": "", "span_id": "", "parent_span_id": "", "name": "", "kind": "", "start_time_unix_nano": 0,
    "end_time_unix_nano": 0, "events": [], "status": {"code": "", "message": ""},
    "attributes": {}, "links": [],
}))
_TRACE_ID_B64_LEN = len(_ids.encode_trace_id_b64(0))
_KIND_NAMES = {kind: f"SPAN_KIND_{kind.name}" for kind in SpanKind}


def _kind_name(span: Any) -> str:
    """The OTLP enum name of the span's kind, as MLflow 3.18 writes it (``SPAN_KIND_INTERNAL``)."""
    return _KIND_NAMES.get(getattr(span, "kind", SpanKind.INTERNAL), "SPAN_KIND_INTERNAL")


def _kind_from_name(name: Any) -> SpanKind:
    """A span dict's ``kind`` (MLflow 3.18; absent before, meaning INTERNAL) as an OTel SpanKind."""
    if isinstance(name, str):
        for kind, kind_name in _KIND_NAMES.items():
            if name in (kind_name, kind.name):
                return kind
    return SpanKind.INTERNAL
_SPAN_ID_B64_LEN = len(_ids.encode_span_id_b64(0))


def _is_flowtel_span(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    return scope is not None and scope.name == "flowtel"


def _derived_log_level(span: Any, raw: dict[str, Any]) -> int:
    """MLflow's rule: ERROR after an exception, else INFO for model/tool spans, DEBUG otherwise."""
    events = plain_events(span)
    if span.status.status_code is _OTEL_ERROR or (events and any(e.name == "exception" for e in events)):
        return SpanLogLevel.ERROR
    encoded = raw.get(SpanAttributeKey.SPAN_TYPE)
    if isinstance(encoded, str) and len(encoded) > 1 and encoded[0] == '"' == encoded[-1] and "\\" not in encoded:
        return default_log_level(encoded[1:-1])  # a plain JSON string: no need to parse
    return default_log_level(load_json(encoded))


def span_size_bytes(span: Span) -> int:
    """Size of the span as MLflow measures it: length of its JSON dict."""
    return len(json.dumps(span.to_dict(), ensure_ascii=False).encode("utf-8"))
