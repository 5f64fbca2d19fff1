"""GenAI and delivery metrics over OTLP, for dashboards and alerts (Grafana, Datadog, ...).

A destination like the others: every finished trace reaches :class:`OtlpMetricsExporter` through
its own delivery pipeline (never on the user's thread), which records

* ``gen_ai.client.token.usage`` (histogram, ``{token}``; ``gen_ai.token.type`` input/output) and
  ``gen_ai.client.operation.duration`` (histogram, seconds) per ``gen_ai.operation.name``,
  ``gen_ai.provider.name``, ``gen_ai.request.model`` / ``gen_ai.response.model`` (and
  ``error.type`` for failed calls), as the OTel GenAI semantic conventions define them;
* ``flowtel.span.duration`` (histogram, seconds) per ``flowtel.span.type`` and ``flowtel.span.status``;

and reads at each collection, from the delivery pipelines (what ``flowtel.get_delivery_stats()``
returns): ``flowtel.delivery.sent`` / ``.retried`` / ``.spooled`` / ``.dropped`` (counters; per
``flowtel.destination``, dropped also per ``flowtel.drop.reason``), ``flowtel.delivery.queue.depth``
and ``flowtel.delivery.spool.pending`` (gauges) and ``flowtel.traces.open`` (gauge).

Label values are bounded: span types, statuses, operations, providers, model names, destination
kinds and drop reasons; never trace ids, span names or tags. Everything runs on flowtel's own
``MeterProvider`` (never the application's global one) with the OTel SDK's periodic reader and
OTLP metric exporter; off unless an OTLP metrics endpoint is configured
(``flowtel.tracing._runtime.otlp_metrics_enabled``).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowtel import _config
from flowtel._config import ConfigError
from flowtel._errors import report_internal_error
from flowtel._version import __version__
from flowtel.delivery import Destination
from flowtel.delivery._exporter import ExportResult, TraceExporter
from flowtel.entities._constants import SpanAttributeKey
from flowtel.exporters.otlp._exporter import GRPC, HTTP_PROTOBUF, otlp_resource
from flowtel.exporters.otlp._genai import OPERATION_NAME, genai_view

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider

    from flowtel.entities import Span, Trace

__all__ = ["OtlpMetricsExporter", "create_otlp_metrics_destination"]

_METRICS_PATH = "v1/metrics"
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/metrics"
_DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
# The GenAI semconv's advised bucket boundaries.
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_MODEL_LABELS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model")


def create_otlp_metrics_destination(**options: Any) -> Destination:
    """The OTLP metrics destination (``options`` as for :class:`OtlpMetricsExporter`)."""
    return Destination(exporter=OtlpMetricsExporter(**options))


class OtlpMetricsExporter(TraceExporter):
    """Records GenAI and delivery metrics from finished traces and sends them over OTLP.

    ``export`` only records into in-memory instruments (it never fails); the OTel SDK's periodic
    reader sends them every ``export_interval_millis`` on its own thread, and ``force_flush`` /
    ``shutdown`` send what is pending. Thread-safe.

    Args:
        endpoint: Where metrics go. Default: ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (as given),
            else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (+ ``/v1/metrics`` over HTTP), else localhost.
        protocol: ``"http/protobuf"`` or ``"grpc"``; default ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL``,
            then ``OTEL_EXPORTER_OTLP_PROTOCOL``, then http/protobuf.
        headers: Extra request headers (added to ``OTEL_EXPORTER_OTLP_[METRICS_]HEADERS``).
        export_interval_millis: Milliseconds between two sends (default
            ``OTEL_METRIC_EXPORT_INTERVAL``, else 60000).
        service_name: ``service.name`` of the resource; wins over ``OTEL_SERVICE_NAME``.

    Raises:
        ConfigError: an unsupported protocol, a malformed endpoint or interval.
    """

    name = "otlp_metrics"
    needs_size_stats = False

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        export_interval_millis: float | None = None,
        service_name: str | None = None,
    ) -> None:
        self.protocol = _protocol(protocol)
        self.endpoint = _endpoint(endpoint, self.protocol)
        self._provider = _meter_provider(
            self.protocol, self.endpoint, _headers(headers), _interval(export_interval_millis), service_name
        )
        self._lock = threading.Lock()
        self._shut_down = False
        meter = self._provider.get_meter("flowtel", __version__)
        self._token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._span_duration = meter.create_histogram(
            "flowtel.span.duration", unit="s", description="Duration of flowtel spans, per span type.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        for name, field, description in (
            ("flowtel.delivery.sent", "sent", "Traces delivered, per destination."),
            ("flowtel.delivery.retried", "retried", "Trace re-sends after a retryable failure."),
            ("flowtel.delivery.spooled", "spooled", "Traces written to the on-disk spool."),
        ):
            meter.create_observable_counter(name, [_stat_callback(field)], unit="{trace}", description=description)
        meter.create_observable_counter(
            "flowtel.delivery.dropped", [_observe_dropped], unit="{trace}",
            description="Traces lost, per destination and reason: alert on any increase.",
        )
        meter.create_observable_gauge(
            "flowtel.delivery.queue.depth", [_stat_callback("queued")], unit="{trace}",
            description="Traces waiting in memory for delivery.",
        )
        meter.create_observable_gauge(
            "flowtel.delivery.spool.pending", [_stat_callback("spool_pending")], unit="{trace}",
            description="Traces waiting in the on-disk spool.",
        )
        meter.create_observable_gauge(
            "flowtel.traces.open", [_observe_open_traces], unit="{trace}", description="Traces in progress.",
        )

    def __repr__(self) -> str:
        return f"OtlpMetricsExporter({_redacted(self.endpoint)!r}, protocol={self.protocol!r})"

    # -- TraceExporter ----------------------------------------------------------------------
    def export(self, traces: Sequence[Trace]) -> ExportResult:
        for trace in traces:
            for span in trace.data.spans:
                try:
                    self._record(span)
                except Exception as exc:  # noqa: BLE001 - one odd span must not cost the others their metrics
                    report_internal_error("otlp metrics recording", exc)
        return ExportResult()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self._provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Send what is pending and stop (idempotent)."""
        with self._lock:
            done, self._shut_down = self._shut_down, True
        if not done:
            self._provider.shutdown()

    # -- recording --------------------------------------------------------------------------
    def _record(self, span: Span) -> None:
        otel = span._span
        if not otel.end_time or not otel.start_time:
            return
        seconds = max(0, otel.end_time - otel.start_time) / 1e9
        raw = span._raw_attributes()
        span_type = span.span_type or "UNKNOWN"
        failed = otel.status.status_code.name == "ERROR"
        self._span_duration.record(seconds, {
            "flowtel.span.type": span_type, "flowtel.span.status": "ERROR" if failed else "OK",
        })
        if SpanAttributeKey.SPAN_TYPE not in raw:
            return
        view = genai_view(otel.name, raw, content=False)
        operation = view.attributes.get(OPERATION_NAME)
        if operation is None or not view.client:
            return  # only model calls are GenAI client operations
        labels = {key: view.attributes[key] for key in _MODEL_LABELS if key in view.attributes}
        duration_labels = dict(labels)
        if failed:
            duration_labels["error.type"] = _error_type(otel)
        self._operation_duration.record(seconds, duration_labels)
        for token_type, key in (("input", "gen_ai.usage.input_tokens"), ("output", "gen_ai.usage.output_tokens")):
            count = view.attributes.get(key)
            if isinstance(count, int):
                self._token_usage.record(count, {**labels, "gen_ai.token.type": token_type})


def _error_type(otel: Any) -> str:
    for event in otel.events:
        if event.name == "exception" and event.attributes:
            kind = event.attributes.get("exception.type")
            if isinstance(kind, str) and kind:
                return kind
    return "_OTHER"


# -- delivery statistics, read at collection time ------------------------------------------------
def _delivery_stats() -> list[Any]:
    from flowtel.tracing import _runtime

    runtime = _runtime.peek_runtime()
    return runtime.delivery_stats() if runtime is not None else []


def _stat_callback(field: str) -> Any:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        return [Observation(getattr(s, field), {"flowtel.destination": s.destination}) for s in _delivery_stats()]

    return observe


def _observe_dropped(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    return [
        Observation(count, {"flowtel.destination": s.destination, "flowtel.drop.reason": reason})
        for s in _delivery_stats() for reason, count in s.dropped.items()
    ]


def _observe_open_traces(options: CallbackOptions) -> Iterable[Observation]:
    from opentelemetry.metrics import Observation

    from flowtel.tracing import _runtime

    runtime = _runtime.peek_runtime()
    return [Observation(runtime.assembler.open_trace_count())] if runtime is not None else []


# -- settings ------------------------------------------------------------------------------------
def _meter_provider(
    protocol: str, endpoint: str, headers: dict[str, str], interval_millis: float, service_name: str | None
) -> MeterProvider:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        parts = urllib.parse.urlsplit(endpoint)
        exporter: Any = GrpcExporter(
            endpoint=parts.netloc or endpoint, insecure=parts.scheme == "http", headers=headers or None,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        exporter = HttpExporter(endpoint=endpoint, headers=headers or None)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_millis)
    return MeterProvider(resource=otlp_resource(service_name), metric_readers=[reader])


def _first_set(*variables: _config.EnvVar[str]) -> tuple[str, str] | None:
    for var in variables:
        if var.is_set():
            return var.get().strip(), var.name
    return None


def _protocol(protocol: str | None) -> str:
    found = _first_set(_config.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, _config.OTEL_EXPORTER_OTLP_PROTOCOL)
    value, source = (protocol, "protocol") if protocol else (found or (HTTP_PROTOBUF, "protocol"))
    value = value.strip().lower()
    if value not in (HTTP_PROTOBUF, GRPC):
        raise ConfigError(f"{source}={value!r} is not supported for metrics: use http/protobuf or grpc.")
    return value


def _endpoint(endpoint: str | None, protocol: str) -> str:
    if endpoint:
        url, source = endpoint.strip(), "endpoint"
        if protocol == HTTP_PROTOBUF and urllib.parse.urlsplit(url).path in ("", "/"):
            url = url.rstrip("/") + "/" + _METRICS_PATH
    elif _config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT.is_set():
        url, source = _config.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT.get().strip(), "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    elif _config.OTEL_EXPORTER_OTLP_ENDPOINT.is_set():
        url, source = _config.OTEL_EXPORTER_OTLP_ENDPOINT.get().strip(), "OTEL_EXPORTER_OTLP_ENDPOINT"
        if protocol == HTTP_PROTOBUF:
            url = url.rstrip("/") + "/" + _METRICS_PATH
    else:
        return _DEFAULT_GRPC_ENDPOINT if protocol == GRPC else _DEFAULT_HTTP_ENDPOINT
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source}={_redacted(url)!r} is not an http(s):// URL (OTLP metrics need one).")
    return url


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    from opentelemetry.util.re import parse_env_headers

    found = _first_set(_config.OTEL_EXPORTER_OTLP_METRICS_HEADERS, _config.OTEL_EXPORTER_OTLP_HEADERS)
    resolved = {k.lower(): v for k, v in parse_env_headers(found[0], liberal=True).items()} if found else {}
    resolved.update({str(k).strip().lower(): str(v) for k, v in (headers or {}).items()})
    return resolved


def _interval(interval: float | None) -> float:
    if interval is None:
        found = _first_set(_config.OTEL_METRIC_EXPORT_INTERVAL)
        if found is None:
            return 60_000.0
        try:
            interval = float(found[0])
        except ValueError:
            interval = -1.0
        source = found[1]
    else:
        source = "export_interval_millis"
    if isinstance(interval, bool) or not interval > 0:
        raise ConfigError(f"{source}={interval!r} is invalid: expected a positive number of milliseconds.")
    return float(interval)


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
