"""Delivery: a bounded queue and a worker thread in front of each exporter.

The user's thread only appends to the queue. The worker batches traces, calls the exporter,
and accounts for every trace: sent, or dropped with a reason. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from opentelemetry import context as otel_context

from flowtel.exporters._base import ExportFailure, ExportResult, TraceExporter
from flowtel.tracing._errors import report_internal_error

if TYPE_CHECKING:
    from flowtel.entities import Trace

_logger = logging.getLogger("flowtel")
_SUPPRESS_KEY = otel_context.create_key("suppress_instrumentation")
_WARN_INTERVAL_S = 10.0


class Deliverable(Protocol):
    """A finished trace waiting for delivery (finalised lazily, once)."""

    trace_id: str

    def trace(self) -> Trace: ...

    def release(self) -> None: ...


@dataclass
class DeliveryStats:
    """Counters of one destination. ``dropped`` maps reason to count."""

    destination: str
    queued: int = 0
    in_flight: int = 0
    sent: int = 0
    retried: int = 0
    spooled: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class DeliveryPipeline:
    """Bounded queue + worker thread for one exporter. Thread-safe; fork-safe.

    Args:
        exporter: The destination.
        max_queued: Traces waiting at most; past it new traces are dropped (reason
            ``queue_full``), counted and warned about.
        batch_size: Traces per ``export`` call at most.
    """

    def __init__(self, exporter: TraceExporter, *, max_queued: int = 10_000, batch_size: int = 100) -> None:
        self.exporter = exporter
        self.name = exporter.name
        self._max_queued = max_queued
        self._batch_size = batch_size
        self._cond = threading.Condition()
        self._queue: deque[Deliverable] = deque()
        self._in_flight = 0
        self._sent = 0
        self._dropped: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._last_warning = 0.0
        self._unwarned: Counter[str] = Counter()
        _PIPELINES.add(self)

    # -- producer side (user's thread) --------------------------------------------------------
    def submit(self, item: Deliverable) -> bool:
        """Queue a trace; never blocks. False when it had to be dropped (counted)."""
        with self._cond:
            if self._stopping:
                self._drop_locked("shutdown", 1)
                item.release()
                return False
            if len(self._queue) >= self._max_queued:
                self._drop_locked("queue_full", 1)
                item.release()
                return False
            self._queue.append(item)
            if self._thread is None:
                self._start_worker_locked()
            self._cond.notify()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was handled. True if it finished in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Drain within ``timeout``, then stop. What could not be sent is dropped and counted."""
        drained = self.flush(timeout)
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            if left:
                self._drop_locked("shutdown_timeout", len(left))
            self._cond.notify_all()
        for item in left:
            item.release()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        try:
            self.exporter.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutdown runs at exit; never raise there
            report_internal_error(f"{self.name} exporter shutdown", exc)
        return drained and not left

    def stats(self) -> DeliveryStats:
        with self._cond:
            return DeliveryStats(
                destination=self.name,
                queued=len(self._queue),
                in_flight=self._in_flight,
                sent=self._sent,
                dropped=dict(self._dropped),
            )

    # -- worker side --------------------------------------------------------------------------
    def _start_worker_locked(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"flowtel-delivery-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # The exporter's own HTTP calls must never be traced by instrumentation.
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_KEY, True))
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._deliver(batch)
        finally:
            otel_context.detach(token)

    def _next_batch(self) -> list[Deliverable] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            n = min(self._batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight += n
            return batch

    def _deliver(self, batch: list[Deliverable]) -> None:
        traces: list[Trace] = []
        sent = 0
        dropped: Counter[str] = Counter()
        try:
            for item in batch:
                try:
                    traces.append(item.trace())
                except Exception as exc:  # noqa: BLE001 - one bad trace must not stop delivery
                    report_internal_error("trace finalisation", exc)
                    dropped["finalize_error"] += 1
            result = self._export(traces)
            for trace in traces:
                failure = result.failures.get(trace.info.trace_id)
                if failure is None:
                    sent += 1
                else:
                    dropped[failure.reason] += 1
        finally:
            for item in batch:
                item.release()
            with self._cond:
                self._in_flight -= len(batch)
                self._sent += sent
                for reason, n in dropped.items():
                    self._drop_locked(reason, n)
                self._cond.notify_all()

    def _export(self, traces: list[Trace]) -> ExportResult:
        if not traces:
            return ExportResult()
        try:
            return self.exporter.export(traces)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the worker
            report_internal_error(f"{self.name} exporter", exc)
            return ExportResult.all_failed(
                traces, ExportFailure("exporter_error", retryable=False, message=repr(exc))
            )

    # -- accounting ---------------------------------------------------------------------------
    def _drop_locked(self, reason: str, n: int) -> None:
        self._dropped[reason] += n
        self._unwarned[reason] += n
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S or self._last_warning == 0.0:
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(self._unwarned.items()))
            _logger.warning(
                "flowtel dropped traces for destination %r (%s). See flowtel.get_delivery_stats().",
                self.name, summary,
            )
            self._unwarned.clear()
            self._last_warning = now

    def _after_fork_in_child(self) -> None:
        # The parent still owns and sends what it queued; the child starts empty.
        self._cond = threading.Condition()
        self._queue = deque()
        self._in_flight = 0
        self._thread = None
        self._stopping = False


_PIPELINES: weakref.WeakSet[DeliveryPipeline] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pipeline in list(_PIPELINES):
        pipeline._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
