"""Application OTel spans recorded into flowtel traces (opt-in :class:`ApplicationSpanCapture`).

Added to the application's own ``TracerProvider``, it records the application's OTel spans that
run inside a flowtel trace (an HTTP client call, a database query made by an instrumented
library) into that trace, so they reach flowtel's destinations with it. Without it, the
application's spans stay in the application's own pipeline only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from flowtel._errors import report_internal_error
from flowtel.entities._constants import SpanAttributeKey
from flowtel.entities._json import dump_json

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span as SdkSpan

    from flowtel.tracing._processor import TraceAssembler

__all__ = ["ApplicationSpanCapture", "CapturedSpan"]


class CapturedSpan(ReadableSpan):
    """An application's OTel span recorded into a flowtel trace by :class:`ApplicationSpanCapture`,
    its attribute values JSON-encoded like flowtel's own. flowtel's OTLP exporter does not send
    these again: the application's own OTel pipeline already does."""


class ApplicationSpanCapture(SpanProcessor):
    """Opt-in: records the application's OTel spans that run inside a flowtel trace into it.

    Add it to the application's own provider::

        provider.add_span_processor(flowtel.exporters.ApplicationSpanCapture())

    A span is captured when its trace is a flowtel trace in progress in this process (it was
    started inside a ``@flowtel.trace`` function or ``flowtel.start_span`` block); the trace is
    then delivered once the captured spans have ended too. Other spans are ignored. The spans
    keep their ids and parents; their attributes are stored the way flowtel stores its own
    (JSON values) and their span type is ``UNKNOWN``. Thread-safe; never raises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[int, int], TraceAssembler] = {}

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        try:
            from flowtel.tracing import _runtime

            runtime = _runtime.peek_runtime()
            context = span.get_span_context()
            if runtime is None or runtime.assembler.record_for(context.trace_id) is None:
                return
            with self._lock:
                self._open[(context.trace_id, context.span_id)] = runtime.assembler
            runtime.assembler.on_start(span, parent_context)
        except Exception as exc:  # noqa: BLE001 - called on the application's thread
            report_internal_error("application span capture", exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            context = span.get_span_context()
            if context is None:
                return
            with self._lock:
                assembler = self._open.pop((context.trace_id, context.span_id), None)
            if assembler is not None:
                assembler.on_end(_captured(span))
        except Exception as exc:  # noqa: BLE001 - called on the application's thread
            report_internal_error("application span capture", exc)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _captured(span: ReadableSpan) -> CapturedSpan:

    attributes = {key: dump_json(_plain(value)) for key, value in (span.attributes or {}).items()}
    attributes.setdefault(SpanAttributeKey.SPAN_TYPE, '"UNKNOWN"')
    return CapturedSpan(
        name=span.name, context=span.get_span_context(), parent=span.parent, resource=span.resource,
        attributes=attributes, events=span.events, links=span.links, kind=span.kind,
        status=span.status, start_time=span.start_time, end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

