"""Trace assembly: a span processor that gathers a trace's spans and hands the finished trace on.

The caller's thread does only bookkeeping here; building the :class:`Trace` (previews, token
usage, size stats) happens later, on a delivery worker, through :func:`finalize`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from flowtel.entities._ids import trace_id_from_otel
from flowtel.tracing._errors import report_internal_error

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span as SdkSpan

    from flowtel.entities import LiveSpan


_MAX_EXPIRED_IDS = 10_000


class TraceRecord:
    """Everything known about one trace while it is in progress in this process."""

    __slots__ = (
        "otel_trace_id", "trace_id", "request_id_json", "root_span_id", "root_name",
        "started", "finished", "open_spans", "live", "tags", "metadata", "client_request_id",
        "request_preview", "response_preview", "state", "experiment_id", "assessments",
        "start_monotonic", "remote_parent",
    )

    def __init__(self, otel_trace_id: int, root: SdkSpan, start_monotonic: float) -> None:
        self.otel_trace_id = otel_trace_id
        self.trace_id = trace_id_from_otel(otel_trace_id)
        self.request_id_json = '"' + self.trace_id + '"'
        self.root_span_id = root.context.span_id
        self.root_name = root.name
        self.remote_parent = root.parent is not None
        self.started: list[int] = []
        self.finished: dict[int, ReadableSpan] = {}
        self.open_spans = 0
        self.live: dict[int, LiveSpan] = {}
        self.tags: dict[str, str] = {}
        self.metadata: dict[str, str] = {}
        self.client_request_id: str | None = None
        self.request_preview: str | None = None
        self.response_preview: str | None = None
        self.state: str | None = None
        self.experiment_id: str | None = None
        self.assessments: list[Any] = []
        self.start_monotonic = start_monotonic

    def spans_in_start_order(self) -> list[ReadableSpan]:
        return [self.finished[sid] for sid in self.started if sid in self.finished]


class TraceAssembler(SpanProcessor):
    """Groups spans by trace; when the last open span of a trace ends, emits its record.

    A trace completes when its root and every span started under it have ended, so work that
    outlives the root (background threads) stays in the trace. Thread-safe.
    """

    def __init__(
        self,
        on_trace: Callable[[TraceRecord], None],
        *,
        on_root_start: Callable[[TraceRecord], None] | None = None,
        max_open_traces: int = 100_000,
        monotonic: Callable[[], float],
    ) -> None:
        self._on_trace = on_trace
        self._on_root_start = on_root_start
        self._max_open = max_open_traces
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._traces: dict[int, TraceRecord] = {}
        self._thread_local = threading.local()
        self.last_trace_id: str | None = None
        self.dropped_open_traces = 0
        # Ids of traces closed by the trace timeout: spans starting in them later are dropped
        # (counted), not delivered as a second, headless trace with the same id.
        self._expired: dict[int, None] = {}
        self.late_spans = 0

    # -- SpanProcessor ----------------------------------------------------------------------
    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        try:
            tid = span.context.trace_id
            record = self._traces.get(tid)
            if record is None:
                record = self._new_record(tid, span)
                if record is None:
                    return
            with self._lock:
                record.open_spans += 1
                record.started.append(span.context.span_id)
        except Exception as exc:  # noqa: BLE001 - OTel calls us from the user's thread
            report_internal_error("span processor on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            tid = span.context.trace_id
            sid = span.context.span_id
            with self._lock:
                record = self._traces.get(tid)
                if record is None:
                    return
                record.finished[sid] = span
                record.open_spans -= 1
                record.live.pop(sid, None)
                done = record.open_spans <= 0
                if done:
                    del self._traces[tid]
            if sid == record.root_span_id:
                self.last_trace_id = record.trace_id
                self._thread_local.last_trace_id = record.trace_id
            if done:
                self._on_trace(record)
        except Exception as exc:  # noqa: BLE001 - OTel calls us from the user's thread
            report_internal_error("span processor on_end", exc)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    # -- lookups ------------------------------------------------------------------------------
    def record_for(self, otel_trace_id: int) -> TraceRecord | None:
        return self._traces.get(otel_trace_id)

    def last_trace_id_of_thread(self) -> str | None:
        return getattr(self._thread_local, "last_trace_id", None)

    def open_trace_count(self) -> int:
        return len(self._traces)

    def expire(self, older_than: float) -> list[TraceRecord]:
        """Remove and return traces started before ``older_than`` (monotonic seconds)."""
        with self._lock:
            stale = []
            for record in self._traces.values():  # insertion order is start order
                if record.start_monotonic >= older_than:
                    break
                stale.append(record)
            for record in stale:
                del self._traces[record.otel_trace_id]
                self._expired[record.otel_trace_id] = None
            while len(self._expired) > _MAX_EXPIRED_IDS:
                del self._expired[next(iter(self._expired))]
        return stale

    def after_fork_in_child(self) -> None:
        """Traces open at fork time belong to the parent, which finishes and sends them."""
        self._lock = threading.Lock()
        self._traces = {}

    def _new_record(self, tid: int, span: SdkSpan) -> TraceRecord | None:
        record = TraceRecord(tid, span, self._monotonic())
        with self._lock:
            existing = self._traces.get(tid)
            if existing is not None:
                return existing
            if tid in self._expired:
                self.late_spans += 1
                return None
            if len(self._traces) >= self._max_open:
                self.dropped_open_traces += 1
                return None
            self._traces[tid] = record
        if self._on_root_start is not None:
            self._on_root_start(record)
        return record
