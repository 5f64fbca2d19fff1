"""An OpenTelemetry ``SpanExporter`` that sends an application's own OTel spans to MLflow.

For applications traced with plain OpenTelemetry (their own ``TracerProvider``, or
``opentelemetry-instrument``): the spans go to the MLflow server's OTLP endpoint
(``POST <tracking URI>/v1/traces`` with ``x-mlflow-experiment-id``), where the server turns them
into MLflow traces (it derives the trace ids and reads GenAI/OpenInference attributes). It is
registered as the ``flowtel_mlflow`` entry point of ``opentelemetry_traces_exporter``, so
``OTEL_TRACES_EXPORTER=flowtel_mlflow`` selects it, configured by the MLflow variables::

    OTEL_TRACES_EXPORTER=flowtel_mlflow MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \\
    MLFLOW_EXPERIMENT_NAME=my-app opentelemetry-instrument python app.py

flowtel's own traces do not need it: they go to MLflow through flowtel's destinations.
(:class:`flowtel.exporters.ApplicationSpanCapture` goes the other way.)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from flowtel import _config
from flowtel._config import ConfigError
from flowtel._exceptions import FlowtelException
from flowtel._suppress import suppress_instrumentation
from flowtel.delivery._http import (
    HttpClient,
    HttpResponse,
    HttpSettings,
    TransportError,
)
from flowtel.delivery._retry import Attempt, RetryPolicy, is_retryable_status, retry_until
from flowtel.exporters.mlflow._client import OTLP_PATH, MlflowRestClient
from flowtel.exporters.mlflow._store import MlflowTraceStore
from flowtel.tracing._experiments import get_or_create

__all__ = ["MlflowSpanExporter"]

_logger = logging.getLogger("flowtel")
_DEFAULT_TIMEOUT_S = 10.0
# As the OTel SDK's exporters: doubling from 0.5 s, bounded only by the export timeout.
_RETRY = RetryPolicy(initial_backoff=0.5, max_backoff=float("inf"), max_retry_after=float("inf"))


class MlflowSpanExporter(SpanExporter):
    """Exports OpenTelemetry spans to an MLflow tracking server.

    Use it like any OTel exporter (``BatchSpanProcessor(MlflowSpanExporter(...))``), or through
    ``OTEL_TRACES_EXPORTER=flowtel_mlflow``. Each export is one protobuf ``POST /v1/traces``;
    retryable failures (connection errors, 429, 5xx) are retried with backoff, honouring
    ``Retry-After``, until ``timeout`` has passed, as the OTel SDK's OTLP exporters do.
    Thread-safe; ``export`` blocks its caller (the span processor's worker) up to ``timeout``.

    Args:
        tracking_uri: ``http(s)://`` address of the MLflow server; default ``MLFLOW_TRACKING_URI``.
            Authentication and TLS follow ``MLFLOW_TRACKING_TOKEN`` / ``_USERNAME`` /
            ``_PASSWORD`` / ``_INSECURE_TLS`` / ``_SERVER_CERT_PATH`` / ``_CLIENT_CERT_PATH``.
        experiment_id: Experiment the traces go to; default ``MLFLOW_EXPERIMENT_ID``.
        experiment_name: Used when no id is given (default ``MLFLOW_EXPERIMENT_NAME``): looked
            up on first export, and created if it does not exist. Neither given: experiment 0.
        headers: Extra request headers (e.g. for a gateway in front of the server).
        timeout: Seconds an export may take, retries included.

    Raises:
        ConfigError: no http(s) tracking URI, or an invalid MLflow variable.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = _DEFAULT_TIMEOUT_S,
    ) -> None:
        uri = (tracking_uri or _config.MLFLOW_TRACKING_URI.get()).strip()
        if not uri.startswith(("http://", "https://")):
            raise ConfigError(
                "MlflowSpanExporter needs the http(s):// address of an MLflow server: pass "
                f"tracking_uri or set MLFLOW_TRACKING_URI (got {uri!r})."
            )
        if timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        settings = HttpSettings.from_env(uri)
        # No request may outlast an export (experiment lookups included).
        self._http = HttpClient(dataclasses.replace(settings, timeout=min(settings.timeout, float(timeout))))
        self._store = MlflowTraceStore(MlflowRestClient(self._http))
        self._timeout = float(timeout)
        self._headers = {"Content-Type": "application/x-protobuf", **dict(headers or {})}
        self._experiment_id = experiment_id or _config.MLFLOW_EXPERIMENT_ID.get() or None
        self._experiment_name = experiment_name or _config.MLFLOW_EXPERIMENT_NAME.get() or None
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        return f"MlflowSpanExporter({self._http.display_url!r})"

    # -- SpanExporter -------------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped.is_set():
            _logger.warning("MlflowSpanExporter: export after shutdown; %d span(s) not sent.", len(spans))
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        token = suppress_instrumentation()  # our own HTTP calls must not become spans
        try:
            return self._export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter must report failure, never raise
            _logger.warning("MlflowSpanExporter: %d span(s) not sent: %r", len(spans), exc)
            return SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)

    def shutdown(self) -> None:
        self._stopped.set()
        self._http.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is buffered here

    # -- internals ------------------------------------------------------------------------------
    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        deadline = time.monotonic() + self._timeout
        experiment_id = self._resolve_experiment()
        if experiment_id is None:
            return SpanExportResult.FAILURE
        body = encode_spans(spans).SerializeToString()
        headers = {**self._headers, "x-mlflow-experiment-id": experiment_id}
        outcome = self._post_with_retries(body, headers, deadline)
        if outcome is None:
            return SpanExportResult.SUCCESS
        _logger.warning("MlflowSpanExporter: %d span(s) not sent to %s: %s", len(spans), self._http.display_url, outcome)
        return SpanExportResult.FAILURE

    def _post_with_retries(self, body: bytes, headers: dict[str, str], deadline: float) -> str | None:
        """None when the server took the spans, else why not."""

        def post(remaining: float) -> Attempt:
            try:
                response = self._http.request("POST", OTLP_PATH, body=body, headers=headers, timeout=remaining)
            except TransportError as exc:
                return Attempt(exc.message, exc.kind != "tls")
            if response.ok:
                return Attempt(None)
            return Attempt(_describe(response), is_retryable_status(response.status), response.retry_after)

        return retry_until(post, deadline=deadline, policy=_RETRY, stop=self._stopped, gave_up_after=self._timeout)

    def _resolve_experiment(self) -> str | None:
        with self._lock:
            if self._experiment_id is None and self._experiment_name is None:
                self._experiment_id = "0"
            if self._experiment_id is None:
                self._experiment_id = self._experiment_by_name(self._experiment_name or "")
            return self._experiment_id

    def _experiment_by_name(self, name: str) -> str | None:
        """The experiment's id (created when missing): the store's one lookup, as for
        ``MLFLOW_EXPERIMENT_NAME`` on flowtel's own traces. None (logged) when it fails."""
        try:
            return get_or_create(self._store, name).experiment_id
        except FlowtelException as exc:
            _logger.warning("MlflowSpanExporter: cannot look up or create experiment %r: %s", name, exc.message)
            return None


def _describe(response: HttpResponse) -> str:
    text = response.body[:300].decode("utf-8", errors="replace").strip()
    return f"HTTP {response.status}" + (f": {text}" if text else "")



