"""A deliberately small OTLP/HTTP exporter for the delivery tests and benchmarks.

It speaks to the real OTLP receiver of ``tests/_servers`` over loopback and maps what happens
the way a production exporter must: connection problems, timeouts, 408, 429 and 5xx are
retryable (with ``Retry-After``); any other 4xx is not. Like many real exporters it can only
fail a whole batch, which is what the pipeline's poisoned-trace isolation has to cope with.
One HTTP request per ``export`` call; no retries of its own (the pipeline owns retrying).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from flowtel.entities import Trace
from flowtel.exporters import ExportFailure, ExportResult, TraceExporter

_RETRYABLE_STATUS = frozenset({408, 429})


class OtlpHttpTestExporter(TraceExporter):
    """POSTs traces as one OTLP protobuf request per batch. Thread-safe."""

    name = "otlp-test"

    def __init__(self, endpoint: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(endpoint)
        self.endpoint = endpoint
        self.destination_key = f"otlp-http-test:{endpoint}"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/v1/traces"
        self._timeout = timeout
        self._lock = threading.Lock()
        self.requests = 0
        self.exported_batches: list[int] = []

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        with self._lock:
            self.requests += 1
        body = encode_spans([span._span for trace in traces for span in trace.data.spans]).SerializeToString()
        failure = self._post(body)
        if failure is None:
            with self._lock:
                self.exported_batches.append(len(traces))
            return ExportResult()
        return ExportResult.all_failed(traces, failure)

    def _post(self, body: bytes) -> ExportFailure | None:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            conn.request("POST", self._path, body=body, headers={"Content-Type": "application/x-protobuf"})
            response = conn.getresponse()
            response.read()
        except TimeoutError:
            return ExportFailure("timeout", retryable=True, message=f"no answer within {self._timeout}s")
        except (OSError, http.client.HTTPException) as exc:
            return ExportFailure("connection", retryable=True, message=type(exc).__name__)
        finally:
            conn.close()
        return _failure_for(response.status, response.getheader("Retry-After"))


def _failure_for(status: int, retry_after: str | None) -> ExportFailure | None:
    if 200 <= status < 300:
        return None
    retryable = status in _RETRYABLE_STATUS or status >= 500
    return ExportFailure(f"http_{status}", retryable=retryable, retry_after=_seconds(retry_after))


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
