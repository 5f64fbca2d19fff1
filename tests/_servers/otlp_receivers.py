"""Real OTLP trace receivers (gRPC and HTTP) that record everything they receive.

Both receivers listen on ``127.0.0.1`` only, speak the official OTLP trace protocol
(``opentelemetry.proto.collector.trace.v1``) and keep every export attempt in memory so
tests can assert exported spans attribute by attribute::

    with OtlpHttpReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.endpoint)
        ...
        (span,) = receiver.wait_for_spans(1)
        assert span.attributes["mlflow.spanType"] == '"LLM"'

Fault injection knobs (all thread-safe, all bounded in time):

* :meth:`~OtlpReceiver.fail_next` answers the next *n* requests with an error status
  (HTTP status such as 429/500/503, optionally with ``Retry-After``; the gRPC receiver maps
  it to the matching gRPC status, e.g. 503 -> ``UNAVAILABLE``, 429 -> ``RESOURCE_EXHAUSTED``).
* :meth:`~OtlpReceiver.set_delay` delays every answer (slow collector).
* :meth:`~OtlpReceiver.reject_if` rejects any request containing a matching span with
  HTTP 400 / gRPC ``INVALID_ARGUMENT`` (poisoned data).
* :meth:`~OtlpReceiver.pause` / :meth:`~OtlpReceiver.resume` hold requests until released,
  a deterministic alternative to delays for back-pressure tests.
* :meth:`~OtlpReceiver.stop` / :meth:`~OtlpReceiver.start` take the receiver down and bring
  it back **on the same port** (collector outage).

Waiting uses a :class:`threading.Condition` that is notified on every recorded request, so
``wait_for_*`` never sleep-polls.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import math
import socket
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "HTTP_TO_GRPC_STATUS",
    "OTLP_METRICS_PATH",
    "OTLP_TRACES_PATH",
    "OtlpGrpcReceiver",
    "OtlpHttpReceiver",
    "OtlpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "SpanPredicate",
    "decode_any_value",
    "decode_attributes",
    "grpc_status_for_http",
]

OTLP_TRACES_PATH: Final = "/v1/traces"
OTLP_METRICS_PATH: Final = "/v1/metrics"
"""Path of the OTLP/HTTP trace endpoint."""

_HOST: Final = "127.0.0.1"
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_GRPC_WORKERS: Final = 8

HTTP_TO_GRPC_STATUS: Final[Mapping[int, grpc.StatusCode]] = MappingProxyType(
    {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        409: grpc.StatusCode.ABORTED,
        413: grpc.StatusCode.OUT_OF_RANGE,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,
        499: grpc.StatusCode.CANCELLED,
        500: grpc.StatusCode.INTERNAL,
        501: grpc.StatusCode.UNIMPLEMENTED,
        502: grpc.StatusCode.UNAVAILABLE,
        503: grpc.StatusCode.UNAVAILABLE,
        504: grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
"""HTTP status -> gRPC status used by :class:`OtlpGrpcReceiver` for ``fail_next(status=int)``."""

_OTLP_JSON_HEX_ID_FIELDS: Final = ("traceId", "spanId", "parentSpanId")

_ReceiverT = TypeVar("_ReceiverT", bound="OtlpReceiver")


def grpc_status_for_http(status: int) -> grpc.StatusCode:
    """Map an HTTP status code to the gRPC status an OTLP/gRPC collector would answer."""
    if status in HTTP_TO_GRPC_STATUS:
        return HTTP_TO_GRPC_STATUS[status]
    if 200 <= status < 300:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN


# --------------------------------------------------------------------------------------
# Decoding helpers
# --------------------------------------------------------------------------------------


def decode_any_value(value: common_pb2.AnyValue) -> Any:
    """Convert an OTLP ``AnyValue`` into a plain Python value.

    ``string``/``bool``/``int``/``double``/``bytes`` map to ``str``/``bool``/``int``/
    ``float``/``bytes``; ``array_value`` to ``list``; ``kvlist_value`` to ``dict``; an unset
    value to ``None``.
    """
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [decode_any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, kind)


def decode_attributes(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    """Convert repeated OTLP ``KeyValue`` into a ``dict`` (later duplicate keys win)."""
    return {kv.key: decode_any_value(kv.value) for kv in attributes}


def _json_or_raw(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received, with the resource and instrumentation scope it arrived under."""

    proto: trace_pb2.Span
    """The raw protobuf span."""
    resource_attributes: Mapping[str, Any]
    scope_name: str
    scope_version: str
    scope_attributes: Mapping[str, Any]

    @property
    def name(self) -> str:
        """Span name."""
        return self.proto.name

    @property
    def trace_id(self) -> str:
        """Trace id as 32 lowercase hex characters."""
        return self.proto.trace_id.hex()

    @property
    def span_id(self) -> str:
        """Span id as 16 lowercase hex characters."""
        return self.proto.span_id.hex()

    @property
    def parent_span_id(self) -> str | None:
        """Parent span id as hex, or ``None`` for a root span."""
        return self.proto.parent_span_id.hex() or None

    @property
    def kind(self) -> str:
        """Span kind name, e.g. ``"SPAN_KIND_INTERNAL"``."""
        return trace_pb2.Span.SpanKind.Name(self.proto.kind)

    @property
    def start_time_unix_nano(self) -> int:
        """Start timestamp in nanoseconds since the epoch."""
        return self.proto.start_time_unix_nano

    @property
    def end_time_unix_nano(self) -> int:
        """End timestamp in nanoseconds since the epoch."""
        return self.proto.end_time_unix_nano

    @property
    def attributes(self) -> dict[str, Any]:
        """Span attributes decoded to plain Python values (MLflow JSON strings stay strings)."""
        return decode_attributes(self.proto.attributes)

    @property
    def json_attributes(self) -> dict[str, Any]:
        """Span attributes with string values JSON-decoded where possible (MLflow encoding)."""
        return {key: _json_or_raw(value) for key, value in self.attributes.items()}

    @property
    def status_code(self) -> str:
        """Status code name: ``STATUS_CODE_UNSET``, ``STATUS_CODE_OK`` or ``STATUS_CODE_ERROR``."""
        return trace_pb2.Status.StatusCode.Name(self.proto.status.code)

    @property
    def status_message(self) -> str:
        """Status description ("" when unset)."""
        return self.proto.status.message

    @property
    def events(self) -> list[dict[str, Any]]:
        """Events as ``{"name", "time_unix_nano", "attributes"}`` dicts."""
        return [
            {
                "name": event.name,
                "time_unix_nano": event.time_unix_nano,
                "attributes": decode_attributes(event.attributes),
            }
            for event in self.proto.events
        ]

    @property
    def links(self) -> list[dict[str, Any]]:
        """Links as ``{"trace_id", "span_id", "attributes"}`` dicts (hex ids)."""
        return [
            {
                "trace_id": link.trace_id.hex(),
                "span_id": link.span_id.hex(),
                "attributes": decode_attributes(link.attributes),
            }
            for link in self.proto.links
        ]


SpanPredicate = Callable[[ReceivedSpan], bool]
"""Predicate over a received span, used by :meth:`OtlpReceiver.reject_if`."""


def _span_count(message: trace_service_pb2.ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for resource in message.resource_spans for scope in resource.scope_spans)


def _flatten(message: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in message.resource_spans:
        resource_attributes = MappingProxyType(decode_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_attributes = MappingProxyType(decode_attributes(scope.attributes))
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    proto=span,
                    resource_attributes=resource_attributes,
                    scope_name=scope.name,
                    scope_version=scope.version,
                    scope_attributes=scope_attributes,
                )


@dataclass(frozen=True)
class ReceivedRequest:
    """One export attempt as seen by a receiver (accepted or not)."""

    transport: Literal["grpc", "http"]
    message: trace_service_pb2.ExportTraceServiceRequest | None
    """The decoded request, or ``None`` if the body could not be decoded."""
    headers: Mapping[str, str]
    """Request headers / gRPC metadata, lower-cased keys (``-bin`` values base64-encoded)."""
    status: int | grpc.StatusCode
    """What the receiver answered: an HTTP status (HTTP) or a :class:`grpc.StatusCode` (gRPC)."""
    accepted: bool
    content_type: str | None = None
    """HTTP only: media type without parameters (``application/x-protobuf`` / ``application/json``)."""
    content_encoding: str | None = None
    """HTTP only: ``Content-Encoding`` (``gzip``, ``deflate``) or ``None``."""
    error: str | None = None
    """Error message sent back for rejected requests."""

    def spans(self) -> list[ReceivedSpan]:
        """Spans contained in this request (empty if it could not be decoded)."""
        return [] if self.message is None else list(_flatten(self.message))


# --------------------------------------------------------------------------------------
# Shared receiver core
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    status: int | grpc.StatusCode
    retry_after: str | None
    message: str


@dataclass(frozen=True)
class _Verdict:
    accepted: bool
    status: int | grpc.StatusCode
    retry_after: str | None = None
    message: str | None = None


def _format_retry_after(retry_after: float | str | None) -> str | None:
    if retry_after is None or isinstance(retry_after, str):
        return retry_after
    if not math.isfinite(retry_after) or retry_after < 0:
        raise ValueError(f"retry_after must be a finite, non-negative number: {retry_after!r}")
    return str(int(retry_after)) if float(retry_after).is_integer() else repr(float(retry_after))


class OtlpReceiver:
    """Common recording, waiting and fault-injection logic of the OTLP receivers.

    Subclasses bind the actual server; everything observable by tests lives here. Recorded
    data survives :meth:`stop`/:meth:`start` cycles; use :meth:`clear` to drop it.
    """

    transport: ClassVar[Literal["grpc", "http"]]

    def __init__(self, *, port: int = 0, hold_timeout: float = 30.0) -> None:
        """Create a stopped receiver.

        Args:
            port: Port to listen on; ``0`` picks a free port on first :meth:`start` and then
                keeps it for later restarts.
            hold_timeout: Upper bound, in seconds, for how long a request may be held by
                :meth:`pause`; a request still held after that is answered with 503 /
                ``UNAVAILABLE``.
        """
        self._port = port
        self._hold_timeout = hold_timeout
        self._cond = threading.Condition(threading.RLock())
        self._attempts: list[ReceivedRequest] = []
        self._accepted_spans = 0
        self._metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self._failures: deque[_Failure] = deque()
        self._delay = 0.0
        self._reject: SpanPredicate | None = None
        self._reject_message = "rejected by reject_if predicate"
        self._paused = False
        self._in_flight = 0
        self._running = False
        # Set while stopped: releases delayed and held requests immediately.
        self._stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """Bound port (``0`` before the first :meth:`start` when no port was given)."""
        return self._port

    @property
    def endpoint(self) -> str:
        """Endpoint to hand to the matching OpenTelemetry exporter."""
        raise NotImplementedError

    @property
    def is_running(self) -> bool:
        """Whether the receiver is currently accepting connections."""
        return self._running

    def start(self: _ReceiverT) -> _ReceiverT:
        """Start listening (on the same port as before if previously started); idempotent."""
        with self._cond:
            if self._running:
                return self
            self._stopping.clear()
            self._port = self._bind(self._port)
            self._running = True
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and drop open connections; held/delayed requests are answered
        with 503 / ``UNAVAILABLE``. Recorded data is kept. Idempotent.

        Args:
            timeout: Upper bound for the graceful shutdown, in seconds.
        """
        with self._cond:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            self._cond.notify_all()
        self._shutdown(timeout)

    def __enter__(self: _ReceiverT) -> _ReceiverT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<{type(self).__name__} {self.endpoint} {state}>"

    def _bind(self, port: int) -> int:
        raise NotImplementedError

    def _shutdown(self, timeout: float) -> None:
        raise NotImplementedError

    # -- recorded data -------------------------------------------------------------------

    @property
    def attempts(self) -> list[ReceivedRequest]:
        """Every request received, in arrival order, including rejected ones."""
        with self._cond:
            return list(self._attempts)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Accepted requests only, in arrival order."""
        with self._cond:
            return [attempt for attempt in self._attempts if attempt.accepted]

    @property
    def in_flight(self) -> int:
        """Number of requests currently being held (paused/delayed) or processed."""
        with self._cond:
            return self._in_flight

    @property
    def span_count(self) -> int:
        """Number of spans in accepted requests (cheap; same as ``len(self.spans())``)."""
        with self._cond:
            return self._accepted_spans

    def spans(self) -> list[ReceivedSpan]:
        """All spans of accepted requests, flattened, in arrival order (retries may duplicate)."""
        with self._cond:
            return [span for request in self.requests for span in request.spans()]

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        """Accepted spans grouped by hex trace id."""
        grouped: dict[str, list[ReceivedSpan]] = {}
        for span in self.spans():
            grouped.setdefault(span.trace_id, []).append(span)
        return grouped

    def clear(self) -> None:
        """Forget all recorded requests."""
        with self._cond:
            self._attempts.clear()
            self._accepted_spans = 0
            self._cond.notify_all()

    # -- metrics (the OTLP MetricsService, always accepted) --------------------------------

    @property
    def metric_requests(self) -> list[metrics_service_pb2.ExportMetricsServiceRequest]:
        """Every metrics export received, in order."""
        with self._cond:
            return list(self._metric_requests)

    def metric_points(self, name: str) -> list[dict[str, Any]]:
        """Data points of metric ``name`` in the latest request that has it, each as
        ``{"attributes": {...}, "value": ..., "count": ..., "sum": ..., "kind": ...}``."""
        for request in reversed(self.metric_requests):
            points = [p for metric in _metrics_named(request, name) for p in _points(metric)]
            if points:
                return points
        return []

    def wait_for_metric(
        self, name: str, predicate: Callable[[list[dict[str, Any]]], bool] = bool, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Wait until the latest data points of metric ``name`` satisfy ``predicate``."""
        self.wait_for(lambda r: predicate(r.metric_points(name)), timeout, f"metric {name}")
        return self.metric_points(name)

    def _record_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self._cond:
            self._metric_requests.append(request)
            self._cond.notify_all()

    # -- waiting -------------------------------------------------------------------------

    def wait_for(
        self: _ReceiverT,
        predicate: Callable[[_ReceiverT], bool],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> None:
        """Block until ``predicate(self)`` is true, re-checking whenever a request arrives
        or the receiver state changes.

        Raises:
            TimeoutError: if the predicate is still false after ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout=timeout):
                raise TimeoutError(
                    f"{type(self).__name__}: {what} not reached within {timeout}s; "
                    f"received {len(self._attempts)} request(s), "
                    f"{self._accepted_spans} accepted span(s), "
                    f"statuses={[_status_name(r.status) for r in self._attempts]}"
                )

    def wait_for_spans(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """Wait until at least ``n`` spans were accepted; return all accepted spans."""
        self.wait_for(lambda r: r.span_count >= n, timeout, f"{n} accepted span(s)")
        return self.spans()

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least ``n`` requests were accepted; return all accepted requests."""
        self.wait_for(lambda r: len(r.requests) >= n, timeout, f"{n} accepted request(s)")
        return self.requests

    def wait_for_attempts(self, n: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least ``n`` requests arrived (accepted or not); return them all."""
        self.wait_for(lambda r: len(r.attempts) >= n, timeout, f"{n} request attempt(s)")
        return self.attempts

    # -- fault injection -----------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int | grpc.StatusCode = 503,
        *,
        retry_after: float | str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests with an error (queued after earlier ``fail_next``).

        Args:
            n: Number of requests to fail.
            status: HTTP status (e.g. 429, 500, 503). The gRPC receiver maps it with
                :func:`grpc_status_for_http` and also accepts a :class:`grpc.StatusCode`.
            retry_after: Seconds (or an HTTP-date string for HTTP) the client should wait:
                sent as ``Retry-After`` (HTTP) or as ``google.rpc.RetryInfo`` trailing
                metadata (gRPC), which the OpenTelemetry exporters honour.
            message: Error message sent back; defaults to a description of the fault.
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        self._check_status(status)
        failure = _Failure(
            status=status,
            retry_after=_format_retry_after(retry_after),
            message=message or f"injected failure ({_status_name(status)})",
        )
        with self._cond:
            self._failures.extend([failure] * n)

    def set_delay(self, seconds: float) -> None:
        """Delay every answer by ``seconds`` (``0`` disables). Cut short by :meth:`stop`."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"delay must be a finite, non-negative number: {seconds!r}")
        with self._cond:
            self._delay = seconds

    def reject_if(self, predicate: SpanPredicate | None, *, message: str | None = None) -> None:
        """Reject (HTTP 400 / gRPC ``INVALID_ARGUMENT``) every request containing a span for
        which ``predicate`` is true; ``None`` removes the predicate."""
        with self._cond:
            self._reject = predicate
            self._reject_message = message or "rejected by reject_if predicate"

    def pause(self) -> None:
        """Hold incoming requests (unanswered) until :meth:`resume`, :meth:`stop` or the
        ``hold_timeout`` elapses. Use :attr:`in_flight` / :meth:`wait_for` to observe them."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """Release requests held by :meth:`pause`."""
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def reset_faults(self) -> None:
        """Remove every fault knob: queued failures, delay, reject predicate and pause."""
        with self._cond:
            self._failures.clear()
            self._delay = 0.0
            self._reject = None
            self._paused = False
            self._cond.notify_all()

    def _check_status(self, status: int | grpc.StatusCode) -> None:
        if isinstance(status, grpc.StatusCode):
            raise TypeError(f"{type(self).__name__} needs an HTTP status code, got {status}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")

    # -- request processing (called from server threads) ---------------------------------

    def _process(
        self,
        message: trace_service_pb2.ExportTraceServiceRequest,
        describe: Callable[[_Verdict], ReceivedRequest],
    ) -> _Verdict:
        """Apply the fault knobs to a decoded request and record ``describe(verdict)``.

        The request counts as :attr:`in_flight` until it is recorded (atomically), so a waiter
        never observes it as neither in flight nor recorded.
        """
        with self._cond:
            self._in_flight += 1
            self._cond.notify_all()
            delay = self._delay
        verdict = _Verdict(False, 500, message="receiver error")
        try:
            verdict = self._judge(message, delay)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._append(describe(verdict))
        return verdict

    def _judge(self, message: trace_service_pb2.ExportTraceServiceRequest, delay: float) -> _Verdict:
        """Delay, pause gate, queued failures and reject predicate, in that order."""
        if delay:
            self._stopping.wait(delay)
        with self._cond:
            released = self._cond.wait_for(
                lambda: not self._paused or self._stopping.is_set(), timeout=self._hold_timeout
            )
            if self._stopping.is_set():
                return _Verdict(False, 503, message="receiver is stopping")
            if not released:
                return _Verdict(False, 503, message=f"request held longer than {self._hold_timeout}s")
            if self._failures:
                failure = self._failures.popleft()
                return _Verdict(False, failure.status, failure.retry_after, failure.message)
            predicate, reject_message = self._reject, self._reject_message
        if predicate is not None:
            try:
                poisoned = any(predicate(span) for span in _flatten(message))
            except Exception as exc:  # a broken predicate is a test bug: make it visible
                return _Verdict(False, 500, message=f"reject_if predicate raised {exc!r}")
            if poisoned:
                return _Verdict(False, 400, message=reject_message)
        return _Verdict(True, 200)

    def _record(self, request: ReceivedRequest) -> None:
        self._append(request)

    def _append(self, request: ReceivedRequest) -> None:
        with self._cond:
            self._attempts.append(request)
            if request.accepted and request.message is not None:
                self._accepted_spans += _span_count(request.message)
            self._cond.notify_all()


def _metrics_named(request: metrics_service_pb2.ExportMetricsServiceRequest, name: str) -> Iterator[Any]:
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    yield metric


def _points(metric: Any) -> list[dict[str, Any]]:
    kind = metric.WhichOneof("data")
    points = []
    for point in getattr(metric, kind).data_points:
        entry: dict[str, Any] = {"attributes": decode_attributes(point.attributes), "kind": kind}
        if kind == "histogram":
            entry.update(count=point.count, sum=point.sum)
        else:
            entry["value"] = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
        points.append(entry)
    return points


def _status_name(status: int | grpc.StatusCode) -> str:
    return status.name if isinstance(status, grpc.StatusCode) else str(status)


# --------------------------------------------------------------------------------------
# gRPC receiver
# --------------------------------------------------------------------------------------


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):
    """The official generated ``TraceService`` servicer, delegating to the receiver."""

    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802 - generated gRPC method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        return self._receiver._handle(request, context)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    """The official generated ``MetricsService`` servicer: records every request."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(  # noqa: N802 - generated gRPC method name
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._receiver._record_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpGrpcReceiver(OtlpReceiver):
    """OTLP/gRPC trace receiver implementing the official ``TraceService``.

    Use ``OTLPSpanExporter(endpoint=receiver.endpoint, insecure=True)`` from
    ``opentelemetry.exporter.otlp.proto.grpc.trace_exporter``.
    """

    transport = "grpc"

    def __init__(self, *, port: int = 0, hold_timeout: float = 30.0) -> None:
        """See :meth:`OtlpReceiver.__init__`."""
        super().__init__(port=port, hold_timeout=hold_timeout)
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (the ``http`` scheme makes the exporter insecure)."""
        return f"http://{_HOST}:{self._port}"

    @property
    def target(self) -> str:
        """``127.0.0.1:<port>``, for ``grpc.insecure_channel``."""
        return f"{_HOST}:{self._port}"

    def _check_status(self, status: int | grpc.StatusCode) -> None:
        if isinstance(status, grpc.StatusCode):
            if status is grpc.StatusCode.OK:
                raise ValueError("fail_next needs an error status, not OK")
            return
        super()._check_status(status)

    def _bind(self, port: int) -> int:
        executor = futures.ThreadPoolExecutor(max_workers=_GRPC_WORKERS, thread_name_prefix="otlp-grpc-receiver")
        server = grpc.server(
            executor,
            options=[
                # Exclusive bind: gRPC enables SO_REUSEPORT by default, which would let two
                # servers share a port silently.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", _MAX_BODY_BYTES),
            ],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceServicer(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), server)
        try:
            bound = server.add_insecure_port(f"{_HOST}:{port}")
        except RuntimeError as exc:
            executor.shutdown(wait=False)
            raise OSError(f"OtlpGrpcReceiver could not bind {_HOST}:{port}: {exc}") from exc
        if bound == 0:
            executor.shutdown(wait=False)
            raise OSError(f"OtlpGrpcReceiver could not bind {_HOST}:{port}")
        server.start()
        self._server, self._executor = server, executor
        return bound

    def _shutdown(self, timeout: float) -> None:
        server, executor = self._server, self._executor
        self._server = self._executor = None
        if server is not None:
            server.stop(grace=min(1.0, timeout)).wait(timeout)
        if executor is not None:
            # Handlers were released by the stopping flag, so this join is short.
            executor.shutdown(wait=True)

    def _handle(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = {
            key.lower(): base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
            for key, value in context.invocation_metadata()
        }

        def describe(verdict: _Verdict) -> ReceivedRequest:
            return ReceivedRequest(
                transport="grpc",
                message=request,
                headers=headers,
                status=_grpc_code(verdict),
                accepted=verdict.accepted,
                error=None if verdict.accepted else verdict.message or _grpc_code(verdict).name,
            )

        verdict = self._process(request, describe)
        if verdict.accepted:
            return trace_service_pb2.ExportTraceServiceResponse()
        code = _grpc_code(verdict)
        message = verdict.message or code.name
        context.set_trailing_metadata(_grpc_error_metadata(code, message, verdict.retry_after))
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _grpc_code(verdict: _Verdict) -> grpc.StatusCode:
    if isinstance(verdict.status, grpc.StatusCode):
        return verdict.status
    return grpc_status_for_http(verdict.status)


def _grpc_error_metadata(code: grpc.StatusCode, message: str, retry_after: str | None) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata for an error: rich ``grpc-status-details-bin`` status and, when a
    retry delay is set, ``google.rpc.retryinfo-bin`` (the key the OTel Python exporter reads)."""
    details: list[any_pb2.Any] = []
    metadata: list[tuple[str, bytes]] = []
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError as exc:
            raise ValueError(f"gRPC retry_after must be a number of seconds: {retry_after!r}") from exc
        retry_info = error_details_pb2.RetryInfo()
        retry_info.retry_delay.seconds = int(seconds)
        retry_info.retry_delay.nanos = round((seconds - int(seconds)) * 1e9)
        metadata.append(("google.rpc.retryinfo-bin", retry_info.SerializeToString()))
        packed = any_pb2.Any()
        packed.Pack(retry_info)
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    metadata.append(("grpc-status-details-bin", status.SerializeToString()))
    return tuple(metadata)


# --------------------------------------------------------------------------------------
# HTTP receiver
# --------------------------------------------------------------------------------------


class _ReceiverHttpServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that tracks live connections so :meth:`stop` can cut
    keep-alive connections (otherwise a pooled client connection keeps being served)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, port: int, receiver: OtlpHttpReceiver) -> None:
        self.receiver = receiver
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((_HOST, port), _OtlpHttpHandler)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ReceiverHttpServer
    timeout = 30  # bounds reads from a stalled client
    server_version = "flowtel-test-otlp-receiver"

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (tests assert on recorded requests instead)."""

    def do_POST(self) -> None:
        self.server.receiver._handle(self)

    def do_GET(self) -> None:
        self._reject_method()

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _reject_method(self) -> None:
        path = urlsplit(self.path).path
        if path == OTLP_TRACES_PATH:
            self.reply(405, b"", "text/plain", extra_headers={"Allow": "POST"})
        else:
            self.reply(404, b"", "text/plain")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_header)
        except ValueError as exc:
            raise _BadRequestError(400, f"invalid Content-Length {length_header!r}") from exc
        if length > _MAX_BODY_BYTES:
            raise _BadRequestError(413, f"body larger than {_MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _BadRequestError(400, "malformed chunked body") from exc
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # discard trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise _BadRequestError(413, f"body larger than {_MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


def _http_status(verdict: _Verdict) -> int:
    # fail_next() refuses grpc.StatusCode values on the HTTP receiver, so this is an int.
    return verdict.status if isinstance(verdict.status, int) else 500


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding in (None, "", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise _BadRequestError(400, f"invalid gzip body: {exc}") from exc
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            try:
                return zlib.decompress(body, -zlib.MAX_WBITS)
            except zlib.error as exc:
                raise _BadRequestError(400, f"invalid deflate body: {exc}") from exc
    raise _BadRequestError(415, f"unsupported Content-Encoding {encoding!r}")


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON encodes ids as hex; protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _OTLP_JSON_HEX_ID_FIELDS and isinstance(value, str) and value:
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError as exc:
                    raise _BadRequestError(400, f"{key} is not hex: {value!r}") from exc
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def _parse_body(body: bytes, media_type: str) -> trace_service_pb2.ExportTraceServiceRequest:
    message = trace_service_pb2.ExportTraceServiceRequest()
    if media_type == "application/x-protobuf":
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise _BadRequestError(400, f"invalid protobuf body: {exc}") from exc
        return message
    if media_type == "application/json":
        try:
            data = json.loads(body or b"{}")
            _hex_ids_to_base64(data)
            json_format.ParseDict(data, message, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError, binascii.Error) as exc:
            raise _BadRequestError(400, f"invalid OTLP/JSON body: {exc}") from exc
        return message
    raise _BadRequestError(415, f"unsupported Content-Type {media_type!r}")


class OtlpHttpReceiver(OtlpReceiver):
    """OTLP/HTTP trace receiver (``POST /v1/traces``) on a stdlib ``ThreadingHTTPServer``.

    Accepts ``application/x-protobuf`` and ``application/json`` bodies, optionally
    ``gzip``/``deflate`` encoded (or chunked), and answers like a collector: protobuf/JSON
    ``ExportTraceServiceResponse`` on success, a ``google.rpc.Status`` body otherwise.
    Use ``OTLPSpanExporter(endpoint=receiver.endpoint)`` from
    ``opentelemetry.exporter.otlp.proto.http.trace_exporter``.
    """

    transport = "http"

    def __init__(self, *, port: int = 0, hold_timeout: float = 30.0) -> None:
        """See :meth:`OtlpReceiver.__init__`."""
        super().__init__(port=port, hold_timeout=hold_timeout)
        self._server: _ReceiverHttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{_HOST}:{self._port}"

    @property
    def endpoint(self) -> str:
        """Full trace endpoint URL, ``http://127.0.0.1:<port>/v1/traces``."""
        return self.base_url + OTLP_TRACES_PATH

    def _bind(self, port: int) -> int:
        server = _ReceiverHttpServer(port, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-http-receiver-{server.server_address[1]}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return int(server.server_address[1])

    def _shutdown(self, timeout: float) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()  # stop accepting; returns once serve_forever has exited
        server.close_connections()  # unblock handler threads waiting on keep-alive reads
        server.server_close()  # closes the listening socket and joins handler threads
        if thread is not None:
            thread.join(timeout)

    def _handle(self, handler: _OtlpHttpHandler) -> None:
        headers = {key.lower(): value for key, value in handler.headers.items()}
        content_type = headers.get("content-type")
        media_type = content_type.split(";", 1)[0].strip().lower() if content_type else ""
        encoding = headers.get("content-encoding", "").strip().lower() or None
        reply_json = media_type == "application/json"
        path = urlsplit(handler.path).path
        if path == OTLP_METRICS_PATH:
            metrics = metrics_service_pb2.ExportMetricsServiceRequest()
            metrics.ParseFromString(_decompress(handler.read_body(), encoding))
            self._record_metrics(metrics)
            handler.reply(200, metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString(),
                          "application/x-protobuf")
            return
        if path != OTLP_TRACES_PATH:
            handler.read_body()
            handler.reply(404, b"", "text/plain")
            return
        message: trace_service_pb2.ExportTraceServiceRequest | None = None
        try:
            body = handler.read_body()
            message = _parse_body(_decompress(body, encoding), media_type)
        except _BadRequestError as bad:
            self._record(
                ReceivedRequest(
                    transport="http",
                    message=message,
                    headers=headers,
                    status=bad.status,
                    accepted=False,
                    content_type=media_type or None,
                    content_encoding=encoding,
                    error=bad.message,
                )
            )
            self._reply_error(handler, bad.status, bad.message, reply_json, None)
            return

        def describe(verdict: _Verdict) -> ReceivedRequest:
            return ReceivedRequest(
                transport="http",
                message=message,
                headers=headers,
                status=_http_status(verdict),
                accepted=verdict.accepted,
                content_type=media_type,
                content_encoding=encoding,
                error=verdict.message,
            )

        verdict = self._process(message, describe)
        if not verdict.accepted:
            status = _http_status(verdict)
            self._reply_error(handler, status, verdict.message or "", reply_json, verdict.retry_after)
            return
        response = trace_service_pb2.ExportTraceServiceResponse()
        if reply_json:
            handler.reply(200, json_format.MessageToJson(response).encode(), "application/json")
        else:
            handler.reply(200, response.SerializeToString(), "application/x-protobuf")

    def _reply_error(
        self,
        handler: _OtlpHttpHandler,
        status: int,
        message: str,
        reply_json: bool,
        retry_after: str | None,
    ) -> None:
        rpc_status = status_pb2.Status(code=grpc_status_for_http(status).value[0], message=message)
        extra = {"Retry-After": retry_after} if retry_after is not None else {}
        close = self._stopping.is_set()
        if reply_json:
            body = json_format.MessageToJson(rpc_status).encode()
            handler.reply(status, body, "application/json", extra_headers=extra, close=close)
        else:
            body = rpc_status.SerializeToString()
            handler.reply(status, body, "application/x-protobuf", extra_headers=extra, close=close)
