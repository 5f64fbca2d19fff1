"""Closing traces that never finish.

A span that is never ended (a killed task, a generator nobody consumed, a bug) would keep its
trace open, and in memory, forever. A daemon thread checks open traces; one open for longer
than the trace timeout is closed as ERROR and handed to delivery like any finished trace. Every
span of it still open is recorded as ended at that moment, with status ERROR and an
``exception`` event saying what happened; the user's span objects are not touched, so their
code keeps running unaware. Spans of that trace that end or start later are dropped and counted
(``late_spans``) rather than sent as a second trace with the same id.

The check never runs on the user's thread; the thread starts with the first trace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status, StatusCode

from flowtel import _config
from flowtel._errors import report_internal_error
from flowtel.entities._span import materialize

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as SdkSpan

    from flowtel.tracing._processor import TraceAssembler, TraceRecord

__all__ = ["TraceTimeoutError", "TraceTimeouts", "close_as_error", "resolve_timeout"]

_MIN_INTERVAL_S = 0.05
_MAX_INTERVAL_S = 30.0
_MAX_NAMES = 5


class TraceTimeoutError(Exception):
    """Recorded (never raised) on the spans of a trace closed by the trace timeout."""


def resolve_timeout() -> float:
    """``FLOWTEL_TRACE_TIMEOUT_SECONDS``, else MLflow's ``MLFLOW_TRACE_TIMEOUT_SECONDS``, else
    the default (one hour)."""
    if not _config.FLOWTEL_TRACE_TIMEOUT_SECONDS.is_set() and _config.MLFLOW_TRACE_TIMEOUT_SECONDS.is_set():
        return _config.MLFLOW_TRACE_TIMEOUT_SECONDS.get()
    return _config.FLOWTEL_TRACE_TIMEOUT_SECONDS.get()


class TraceTimeouts:
    """Watches the assembler's open traces and closes the expired ones. Thread-safe.

    Args:
        assembler: Where open traces live.
        hand_off: Called with each closed record (delivery); runs on the watcher thread.
        timeout: Seconds a trace may stay open.
        monotonic: Clock of the records' start times (swappable in tests).
        now_ns: Wall clock for the end time of the spans it closes.
    """

    def __init__(
        self,
        assembler: TraceAssembler,
        hand_off: Callable[[TraceRecord], None],
        *,
        timeout: float,
        monotonic: Callable[[], float],
        now_ns: Callable[[], int],
    ) -> None:
        self.assembler = assembler
        self.timeout = timeout
        self.interval = min(max(timeout / 4, _MIN_INTERVAL_S), _MAX_INTERVAL_S)
        self.closed = 0
        self.unrecoverable = 0
        self._hand_off = hand_off
        self._monotonic = monotonic
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_root_start(self, record: TraceRecord) -> None:
        """Called on the user's thread for every new trace: only starts the watcher once
        (a forked child is reset by :meth:`after_fork_in_child`; no ``getpid`` syscall here)."""
        if self._thread is None:
            self._start()

    def after_fork_in_child(self) -> None:
        """The parent's watcher thread (and lock holder) does not exist in a forked child."""
        self._thread, self._stop, self._lock = None, threading.Event(), threading.Lock()

    def check(self) -> int:
        """Close every trace open longer than the timeout now; returns how many were closed."""
        expired = self.assembler.expire(self._monotonic() - self.timeout)
        for record in expired:
            self._close(record)
        return len(expired)

    def stop(self) -> None:
        """Stop the watcher thread (does not wait for it)."""
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="flowtel-trace-timeouts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watcher must keep watching
                report_internal_error("trace timeout check", exc)

    def _close(self, record: TraceRecord) -> None:
        if close_as_error(record, timeout=self.timeout, now_ns=self._now_ns()):
            self.closed += 1
            self._hand_off(record)
        else:
            self.unrecoverable += 1  # no span could be recorded: nothing to deliver


def close_as_error(record: TraceRecord, *, timeout: float, now_ns: int) -> bool:
    """End every still-open span of ``record`` as ERROR at ``now_ns``; mark the trace ERROR.

    Only spans flowtel created are known while open (OTel keeps no list); any other open span
    of the trace is missing from it. False if the trace has no span at all to deliver.
    """
    # A LiveSpan wraps the SDK span that is still recording.
    still_open = [live._span for sid, live in list(record.live.items()) if sid not in record.finished]
    message = _message(timeout, still_open)
    for span in still_open:
        record.finished[span.context.span_id] = _ended_as_error(span, message, now_ns)
    record.state = "ERROR"
    return bool(record.finished)


def _message(timeout: float, spans: list[SdkSpan]) -> str:
    names = ", ".join(repr(s.name) for s in spans[:_MAX_NAMES])
    more = f" and {len(spans) - _MAX_NAMES} more" if len(spans) > _MAX_NAMES else ""
    return (
        f"Trace still open after {timeout:g}s (FLOWTEL_TRACE_TIMEOUT_SECONDS): closed by flowtel as ERROR. "
        f"Span(s) never ended: {names}{more}."
    )


def _ended_as_error(span: SdkSpan, message: str, now_ns: int) -> ReadableSpan:
    """A finished copy of a live span; the live span itself is left alone."""
    materialize(span)
    event = Event(
        "exception",
        attributes={
            "exception.type": f"flowtel.{TraceTimeoutError.__name__}",
            "exception.message": message,
            "exception.stacktrace": "",
        },
        timestamp=now_ns,
    )
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=dict(span.attributes or {}),
        events=(*span.events, event),
        links=span.links,
        kind=span.kind,
        status=Status(StatusCode.ERROR, message),
        start_time=span.start_time,
        end_time=max(now_ns, span.start_time or 0),
        instrumentation_scope=span.instrumentation_scope,
    )
