"""Trace assembly: a span processor that gathers a trace's spans and hands the finished trace on.

The caller's thread does only bookkeeping here; building the :class:`Trace` (previews, token
usage, size stats) happens later, on a delivery worker, through :func:`finalize`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Link

from flowtel._errors import report_internal_error
from flowtel.entities._constants import PREVIEW_MAX_CHARS
from flowtel.entities._ids import trace_id_from_otel
from flowtel.entities._span import materialize

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import Span as SdkSpan

    from flowtel.entities import LiveSpan


_MAX_EXPIRED_IDS = 10_000


class TraceRecord:
    """Everything known about one trace while it is in progress in this process."""

    __slots__ = (
        "otel_trace_id", "_trace_id", "root_span_id", "root_name",
        "started", "finished", "open_spans", "live", "_tags", "_metadata", "client_request_id",
        "_request_preview", "_response_preview", "preview_chars", "state", "experiment_id", "_assessments",
        "start_monotonic", "remote_parent",
    )

    def __init__(self, otel_trace_id: int, root: SdkSpan, start_monotonic: float) -> None:
        self.otel_trace_id = otel_trace_id
        self._trace_id: str | None = None
        context = root.context
        self.root_span_id = context.span_id
        self.root_name = root.name
        self.remote_parent = root.parent is not None
        # The root counts as started and open from here (one lock round trip per new trace).
        self.started: list[int] = [context.span_id]
        self.finished: dict[int, ReadableSpan] = {}
        self.open_spans = 1
        self.live: dict[int, LiveSpan] = {}
        # Most traces never get tags, metadata or assessments: made on first use.
        self._tags: dict[str, str] | None = None
        self._metadata: dict[str, str] | None = None
        self.client_request_id: str | None = None
        self._request_preview: str | None = None
        self._response_preview: str | None = None
        self.preview_chars = 0  # length of both explicit previews (size estimates read no property)
        self.state: str | None = None
        self.experiment_id: str | None = None
        self._assessments: list[Any] | None = None
        self.start_monotonic = start_monotonic

    @property
    def tags(self) -> dict[str, str]:
        tags = self._tags
        if tags is None:
            tags = self._tags = {}
        return tags

    @property
    def metadata(self) -> dict[str, str]:
        metadata = self._metadata
        if metadata is None:
            metadata = self._metadata = {}
        return metadata

    @property
    def assessments(self) -> list[Any]:
        assessments = self._assessments
        if assessments is None:
            assessments = self._assessments = []
        return assessments

    # Explicit previews (update_current_trace) are cut like the derived ones, when set: a
    # megabyte "preview" must not sit in memory (or the queue's byte budget) at full size.
    @property
    def request_preview(self) -> str | None:
        return self._request_preview

    @request_preview.setter
    def request_preview(self, text: str | None) -> None:
        self._request_preview = _preview(text)
        self._count_preview_chars()

    @property
    def response_preview(self) -> str | None:
        return self._response_preview

    @response_preview.setter
    def response_preview(self, text: str | None) -> None:
        self._response_preview = _preview(text)
        self._count_preview_chars()

    def _count_preview_chars(self) -> None:
        self.preview_chars = len(self._request_preview or "") + len(self._response_preview or "")

    @property
    def trace_id(self) -> str:
        """The MLflow id (``tr-<32 hex>``), formatted on first use."""
        trace_id = self._trace_id
        if trace_id is None:
            trace_id = self._trace_id = trace_id_from_otel(self.otel_trace_id)
        return trace_id

    @property
    def request_id_json(self) -> str:
        return '"' + self.trace_id + '"'

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
        # Reentrant: a signal handler may run traced code on a thread interrupted inside one of
        # the sections below; it must not wait for itself. Each section stays consistent when
        # another one runs nested inside it at any call boundary (decisions are single dict ops).
        self._lock = threading.RLock()
        self._traces: dict[int, TraceRecord] = {}
        self._thread_local = threading.local()
        self._last_otel_trace_id: int | None = None
        self.dropped_open_traces = 0
        # Ids of traces closed by the trace timeout: spans starting in them later are dropped
        # (counted), not delivered as a second, headless trace with the same id.
        self._expired: dict[int, None] = {}
        self._closed: dict[int, None] = {}  # recently completed traces (bounded)
        self.late_spans = 0
        # Traces that were open in the parent when this process was forked (see _spans/_fluent).
        self.parent_trace_ids: frozenset[int] = frozenset()

    def connect(self, on_trace: Callable[[TraceRecord], None], *,
                on_root_start: Callable[[TraceRecord], None] | None = None) -> None:
        """Set where finished traces and new roots go (when they are known only after construction)."""
        self._on_trace, self._on_root_start = on_trace, on_root_start

    # -- SpanProcessor ----------------------------------------------------------------------
    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        try:
            context = span.context
            record = self._traces.get(context.trace_id)
            if record is None:
                self._new_record(context.trace_id, span)
                return
            with self._lock:
                if self._traces.get(context.trace_id) is not record:  # completed meanwhile
                    record = None
                else:
                    record.open_spans += 1
                    record.started.append(context.span_id)
            if record is None:
                self._new_record(context.trace_id, span)
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
                live = record.live.pop(sid, None)
                # Whoever removes the record hands it off: exactly once, even if a nested
                # section (signal handler) completed the trace in between.
                done = record.open_spans <= 0 and self._traces.pop(tid, None) is record
                if done:  # (_remember_closed_locked, inlined: once per trace on the caller's path)
                    closed = self._closed
                    closed[tid] = None
                    if len(closed) > _MAX_EXPIRED_IDS:
                        del closed[next(iter(closed))]
            if live is not None and live._span is not span:
                # Ended through the SDK (e.g. the OTel API's span.end()): the snapshot shares
                # the live span's attributes, so values still deferred on it are encoded now.
                materialize(live._span)
            if sid == record.root_span_id:
                self._last_otel_trace_id = tid  # formatted when asked for
                self._thread_local.last = tid
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

    @property
    def last_trace_id(self) -> str | None:
        tid = self._last_otel_trace_id
        return None if tid is None else trace_id_from_otel(tid)

    def last_trace_id_of_thread(self) -> str | None:
        tid = getattr(self._thread_local, "last", None)
        return None if tid is None else trace_id_from_otel(tid)

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
        """Traces open at fork time belong to the parent, which finishes and sends them: their
        ids are remembered, so spans the child starts under them begin traces of their own."""
        self._lock = threading.RLock()
        self.parent_trace_ids = frozenset(self._traces) | self.parent_trace_ids
        self._traces = {}

    def detach_from_parent_process(
        self, parent: Context | None, links: list[Link] | None
    ) -> tuple[Context | None, list[Link] | None]:
        """In a forked child, a span whose parent belongs to a trace the parent process was
        recording starts a trace of its own, linked to that parent span: two processes must
        never write the same trace id (the child's fragment would replace the parent's trace)."""
        parent_span = trace_api.get_current_span(parent)
        span_context = parent_span.get_span_context()
        if not span_context.is_valid or span_context.trace_id not in self.parent_trace_ids:
            return parent, links
        link = Link(span_context, {"flowtel.link.type": "forked_from_parent_process"})
        root_context = trace_api.set_span_in_context(trace_api.INVALID_SPAN, parent)
        return root_context, [*(links or []), link]

    def _remember_closed_locked(self, tid: int) -> None:
        """A span starting under a finished trace (a thread outliving it) must not become a
        second, headless trace with the same id, which would overwrite the first one."""
        closed = self._closed
        closed[tid] = None
        if len(closed) > _MAX_EXPIRED_IDS:
            del closed[next(iter(closed))]

    def _new_record(self, tid: int, span: SdkSpan) -> TraceRecord | None:
        """Open the record of a new trace with ``span`` as its first (open) span."""
        record = TraceRecord(tid, span, self._monotonic())
        with self._lock:
            existing = self._traces.get(tid)
            if existing is not None:  # another thread opened it first: join it
                existing.open_spans += 1
                existing.started.append(span.context.span_id)
                return existing
            if tid in self._expired or (tid in self._closed and _local_parent(span)):
                self.late_spans += 1
                return None
            if len(self._traces) >= self._max_open:
                self.dropped_open_traces += 1
                return None
            self._traces[tid] = record
        if self._on_root_start is not None:
            self._on_root_start(record)
        return record


def _local_parent(span: SdkSpan) -> bool:
    parent = span.parent
    return parent is not None and not parent.is_remote


def _preview(text: str | None) -> str | None:
    if text is None or len(text) <= PREVIEW_MAX_CHARS:
        return text
    return text[: PREVIEW_MAX_CHARS - 3] + "..."
