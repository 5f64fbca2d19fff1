"""OTLP export of flowtel traces, over gRPC or HTTP/protobuf, to any OpenTelemetry backend.

Configuration follows the OTel specification's "OTLP Exporter Configuration": the
``OTEL_EXPORTER_OTLP_*`` variables (a traces-specific variable wins over the general one), with
the spec's endpoint rules, overridden by constructor arguments (:func:`resolve_otlp_settings`).

Encoding: :mod:`flowtel.exporters.otlp._encode` builds the ``ExportTraceServiceRequest`` straight
from flowtel's spans. Transport: the official OTLP ``TraceService`` gRPC stub of
``opentelemetry-proto``, or a protobuf ``POST`` on flowtel's one HTTP client (``requests``) -- what
the OTel SDK's ``OTLPSpanExporter`` classes do. Those classes are not used as such because they
only take ``ReadableSpan`` objects and encode them with the SDK's generic encoder, which costs
about 2.5 times as much as encoding the same spans directly (see ``benchmarks/bench_otlp.py``),
and because ``export`` returns only success/failure, after retries of its own.

Retries: the SDK's exporters retry inside ``export`` with their own backoff, for up to their
timeout. Here every export is exactly **one** request, and its real outcome (HTTP status, gRPC
code, ``Retry-After`` / ``RetryInfo``) is reported per trace: flowtel's delivery pipeline owns
retrying (backoff with jitter, ``Retry-After``, spooling while the collector is down, isolating
a trace the collector refuses), so nothing is retried twice over and ``timeout`` bounds one
request.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import threading
import urllib.parse
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource

from flowtel import _config
from flowtel._config import ConfigError
from flowtel._errors import report_internal_error
from flowtel._version import __version__
from flowtel.delivery import Destination
from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.delivery._http import HttpClient, HttpSettings, TransportError
from flowtel.delivery._retry import is_retryable_status, parse_retry_after
from flowtel.exporters.otlp._encode import AUTO, CONVENTIONS, Conventions, SpanEncoder

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from flowtel.entities import Trace

__all__ = ["OtlpExporter", "OtlpSettings", "create_otlp_destination", "resolve_otlp_settings"]

_logger = logging.getLogger("flowtel")

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
_PROTOCOLS = (HTTP_PROTOBUF, GRPC)
_COMPRESSIONS = ("none", "gzip", "deflate")
_TRACES_PATH = "v1/traces"
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318/v1/traces"
_DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_DEFAULT_TIMEOUT_S = 10.0
_SUSPICIOUS_TIMEOUT_MS = 100.0
# Same set as the MLflow exporter: worth another try later.
_RETRYABLE_GRPC_NAMES = frozenset({
    "CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
    "UNAVAILABLE", "DATA_LOSS",
})
_USER_AGENT = f"flowtel/{__version__}"
_MLFLOW_EXPERIMENT_HEADER = "x-mlflow-experiment-id"


# -- public API ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OtlpSettings:
    """Where and how to send spans, after the spec's rules are applied.

    Args:
        protocol: ``"http/protobuf"`` or ``"grpc"``.
        endpoint: HTTP: the full URL requests go to. gRPC: the collector's address, as a URL
            (``http(s)://host:port``) or ``host:port``.
        insecure: gRPC only: plain-text connection (no TLS).
        headers: Request headers / gRPC metadata (lower-case names). Not in ``repr``.
        timeout: Seconds one export request may take.
        compression: ``"none"``, ``"gzip"`` or ``"deflate"``.
        certificate_file: CA bundle (PEM) that verifies the collector.
        client_key_file: Client private key (PEM) for mutual TLS.
        client_certificate_file: Client certificate (PEM) for mutual TLS.
    """

    protocol: str
    endpoint: str
    insecure: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    timeout: float = _DEFAULT_TIMEOUT_S
    compression: str = "none"
    certificate_file: str | None = None
    client_key_file: str | None = None
    client_certificate_file: str | None = None


def resolve_otlp_settings(
    endpoint: str | None = None,
    *,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    compression: str | None = None,
    certificate_file: str | None = None,
    insecure: bool | None = None,
) -> OtlpSettings:
    """Apply the OTel spec's configuration rules: arguments, then the traces-specific variable,
    then the general one, then the spec's default. Reads the environment; does no other I/O.

    Endpoint rules: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is used exactly as given;
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL to which HTTP appends ``v1/traces`` (gRPC uses
    it as given). An ``endpoint`` argument is used as given, except that an HTTP URL without a
    path (``http://collector:4318``) gets ``/v1/traces``. For gRPC, an ``https`` scheme means
    TLS, ``http`` plain text, and an endpoint without scheme follows ``insecure`` /
    ``OTEL_EXPORTER_OTLP_[TRACES_]INSECURE`` (default: TLS). Timeouts in the environment are in
    milliseconds, as the spec says; the ``timeout`` argument is in seconds.

    Raises:
        ConfigError: an unsupported protocol or compression, a malformed endpoint or timeout,
            or a certificate file that does not exist.
    """
    chosen = _protocol(protocol)
    url = _endpoint(endpoint, chosen)
    return OtlpSettings(
        protocol=chosen,
        endpoint=url,
        insecure=_insecure(url, insecure) if chosen == GRPC else url.startswith("http://"),
        headers=_headers(headers),
        timeout=_timeout(timeout),
        compression=_compression(compression),
        certificate_file=_file(certificate_file, "certificate_file")
        or _env_file(_config.OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, _config.OTEL_EXPORTER_OTLP_CERTIFICATE),
        client_key_file=_env_file(_config.OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY, _config.OTEL_EXPORTER_OTLP_CLIENT_KEY),
        client_certificate_file=_env_file(
            _config.OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE, _config.OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
        ),
    )


class OtlpExporter(TraceExporter):
    """Sends finished traces to an OTLP endpoint (a collector, or any OTLP backend).

    Every span of a trace is sent as an OTel span with its original ids; a trace that continues
    a span outside flowtel (an application's OTel span, or a caller in another process) gets
    that parent back, so the backend shows one tree. Trace tags, metadata, user, session and
    client request id travel as attributes of the root span (``mlflow.traceTag.<key>``,
    ``mlflow.traceMetadata.<key>``, ``user.id``, ``session.id``, ``mlflow.clientRequestId``),
    which MLflow's server reads back when it is the backend. The resource carries the service
    identity from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (or ``service_name``).

    Each export is one request; retries belong to flowtel's delivery pipeline (see the module
    docstring). Export runs on a delivery worker, never on the user's thread. Thread-safe.

    Args:
        endpoint: See :func:`resolve_otlp_settings`; default from ``OTEL_EXPORTER_OTLP_*``, else
            ``http://localhost:4318/v1/traces`` (HTTP) / ``http://localhost:4317`` (gRPC).
        protocol: ``"http/protobuf"`` (the spec's default) or ``"grpc"``.
        headers: Extra request headers, e.g. an API key; added to those of the environment.
        timeout: Seconds one request may take (default 10).
        compression: ``"none"``, ``"gzip"`` or ``"deflate"``.
        certificate_file: CA bundle (PEM) for a collector with a private CA.
        insecure: gRPC without URL scheme only: ``True`` for a plain-text connection.
        conventions: ``"auto"`` (the default: ``"mlflow"`` when the headers carry
            ``x-mlflow-experiment-id``, i.e. the receiver is an MLflow server, else ``"genai"``),
            ``"mlflow"`` (span attributes as MLflow records them), ``"genai"`` (the OTel GenAI
            semantic conventions plus the OpenInference attributes Phoenix/Arize read: ``gen_ai.*``
            attributes, ``chat {model}`` span names, messages in ``gen_ai.input.messages`` /
            ``gen_ai.output.messages``, tool calls, retrieval documents, other inputs/outputs as
            ``input.value`` / ``output.value``, evaluation events; MLflow attributes only where
            neither has an equivalent), or ``"both"`` (every MLflow attribute plus the content-free
            ``gen_ai.*`` / OpenInference ones: content is sent once). Default
            ``FLOWTEL_OTLP_CONVENTIONS``.
        service_name: ``service.name`` of the resource; wins over ``OTEL_SERVICE_NAME``.

    Raises:
        ConfigError: invalid settings (see :func:`resolve_otlp_settings`) or conventions.
    """

    name = "otlp"
    needs_size_stats = False  # MLflow's size statistics mean nothing to an OTLP backend

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: str | None = None,
        certificate_file: str | None = None,
        insecure: bool | None = None,
        conventions: Conventions | None = None,
        service_name: str | None = None,
    ) -> None:
        self.settings = resolve_otlp_settings(
            endpoint, protocol=protocol, headers=headers, timeout=timeout, compression=compression,
            certificate_file=certificate_file, insecure=insecure,
        )
        chosen = (conventions or _config.FLOWTEL_OTLP_CONVENTIONS.get()).strip().lower()
        if chosen == AUTO:
            chosen = default_conventions(self.settings)
        if chosen not in CONVENTIONS:
            raise ConfigError(
                f"OTLP conventions must be one of auto, {', '.join(CONVENTIONS)}, got {chosen!r} "
                "(the conventions argument or FLOWTEL_OTLP_CONVENTIONS)."
            )
        self.conventions: Conventions = chosen  # type: ignore[assignment]
        self.destination_key = _destination_key(self.settings)
        self._encoder = SpanEncoder(self.conventions, otlp_resource(service_name), "flowtel", __version__)
        self._lock = threading.Lock()
        self._transport: _Transport | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"OtlpExporter({self.settings.endpoint!r}, protocol={self.settings.protocol!r}, "
            f"conventions={self.conventions!r})"
        )

    # -- TraceExporter ----------------------------------------------------------------------
    def export(self, traces: Sequence[Trace]) -> ExportResult:
        request, encoded, failed = self._encoder.encode(traces)
        failures = {
            trace_id: ExportFailure("encoding_error", False, message=repr(exc)) for trace_id, exc in failed.items()
        }
        if encoded:
            failure = self._send(request)
            if failure is not None:
                failures.update({t.info.trace_id: failure for t in encoded})
        return ExportResult(failures)

    def shutdown(self) -> None:
        with self._lock:
            transport, self._transport, self._closed = self._transport, None, True
        if transport is not None:
            transport.close()

    def after_fork_in_child(self) -> None:
        """A forked child must not share the parent's pooled connection (interleaved writes
        corrupt requests): forget it, without closing what the parent still uses."""
        self._lock = threading.Lock()
        self._transport = None

    # -- sending ----------------------------------------------------------------------------
    def _send(self, request: ExportTraceServiceRequest) -> ExportFailure | None:
        try:
            transport = self._get_transport()
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable certificate: reported, not raised
            report_internal_error("otlp exporter setup", exc)
            return ExportFailure("exporter_error", False, message=repr(exc))
        if transport is None:
            return ExportFailure("shutdown", False, message="the OTLP exporter was shut down")
        return transport.send(request)

    def _get_transport(self) -> _Transport | None:
        # Built on first use, on the delivery worker: importing grpc or requests is not free.
        with self._lock:
            if self._transport is None and not self._closed:
                self._transport = _build_transport(self.settings)
            return self._transport


def create_otlp_destination(**options: Any) -> Destination:
    """The OTLP destination configured by ``OTEL_EXPORTER_OTLP_*`` (``options`` override them).

    Raises:
        ConfigError: invalid OTLP configuration.
    """
    return Destination(exporter=OtlpExporter(**options))


def default_conventions(settings: OtlpSettings) -> Conventions:
    """``mlflow`` for an MLflow server (its OTLP route needs the ``x-mlflow-experiment-id``
    header, and reads MLflow's own attributes), ``genai`` for any other backend."""
    return "mlflow" if _MLFLOW_EXPERIMENT_HEADER in settings.headers else "genai"


def otlp_resource(service_name: str | None = None) -> Resource:
    """Resource with flowtel's SDK identity and the service identity of the environment."""
    attributes: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "flowtel",
        "telemetry.sdk.version": __version__,
    }
    if service_name:
        attributes["service.name"] = service_name
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which wins over it).
    return Resource.create(attributes)


# -- settings --------------------------------------------------------------------------------------
def _traces_or_general(traces: _config.EnvVar[str], general: _config.EnvVar[str]) -> tuple[str, str] | None:
    """(value, variable name) of the traces-specific variable if set, else of the general one."""
    for var in (traces, general):
        if var.is_set():
            return var.get(), var.name
    return None


def _protocol(protocol: str | None) -> str:
    found = _traces_or_general(_config.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, _config.OTEL_EXPORTER_OTLP_PROTOCOL)
    value, source = (protocol, "protocol") if protocol else (found or (HTTP_PROTOBUF, ""))
    value = value.strip().lower()
    if value not in _PROTOCOLS:
        hint = " flowtel sends OTLP as protobuf; use http/protobuf." if value == "http/json" else ""
        raise ConfigError(f"{source or 'protocol'}={value!r} is not supported: use http/protobuf or grpc.{hint}")
    return value


def _endpoint(endpoint: str | None, protocol: str) -> str:
    if endpoint:
        url = endpoint.strip()
        if protocol == HTTP_PROTOBUF and urllib.parse.urlsplit(url).path in ("", "/"):
            url = _with_traces_path(url)
        return _checked(url, protocol, "endpoint")
    traces = _config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    if traces.is_set():
        return _checked(traces.get().strip(), protocol, traces.name)
    base = _config.OTEL_EXPORTER_OTLP_ENDPOINT
    if base.is_set():
        url = base.get().strip()
        return _checked(url if protocol == GRPC else _with_traces_path(url), protocol, base.name)
    return _DEFAULT_GRPC_ENDPOINT if protocol == GRPC else _DEFAULT_HTTP_ENDPOINT


def _with_traces_path(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + _TRACES_PATH, parts.query, parts.fragment))


def _checked(url: str, protocol: str, source: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if protocol == HTTP_PROTOBUF:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{source}={_redacted(url)!r} is not an http(s):// URL (OTLP over HTTP needs one).")
        return url
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigError(f"{source}={_redacted(url)!r} has no host.")
    elif not url or url.startswith("/"):
        raise ConfigError(f"{source}={url!r} is not a gRPC endpoint: use http(s)://host:port or host:port.")
    return url


def _insecure(url: str, insecure: bool | None) -> bool:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https"):
        return scheme == "http"  # the spec: the scheme decides when there is one
    if insecure is not None:
        return insecure
    found = _traces_or_general(_config.OTEL_EXPORTER_OTLP_TRACES_INSECURE, _config.OTEL_EXPORTER_OTLP_INSECURE)
    if found is None:
        return False
    value, name = found
    if value.strip().lower() not in ("true", "false"):
        raise ConfigError(f"{name}={value!r} is invalid: expected true or false.")
    return value.strip().lower() == "true"


def _headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    from opentelemetry.util.re import parse_env_headers

    found = _traces_or_general(_config.OTEL_EXPORTER_OTLP_TRACES_HEADERS, _config.OTEL_EXPORTER_OTLP_HEADERS)
    resolved = {k.lower(): v for k, v in parse_env_headers(found[0], liberal=True).items()} if found else {}
    for key, value in (headers or {}).items():
        resolved[str(key).strip().lower()] = str(value)
    return resolved


def _timeout(timeout: float | None) -> float:
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        return float(timeout)
    found = _traces_or_general(_config.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, _config.OTEL_EXPORTER_OTLP_TIMEOUT)
    if found is None:
        return _DEFAULT_TIMEOUT_S
    value, name = found
    try:
        millis = float(value)
    except ValueError:
        millis = -1.0
    if not millis > 0:
        raise ConfigError(f"{name}={value!r} is invalid: expected a positive number of milliseconds.")
    if millis < _SUSPICIOUS_TIMEOUT_MS:
        _warn_short_timeout(name, value)
    return millis / 1000.0


@functools.lru_cache(maxsize=8)
def _warn_short_timeout(name: str, value: str) -> None:
    _logger.warning(
        "%s=%s is read as milliseconds, as the OpenTelemetry specification says: OTLP requests "
        "time out after %s ms. (OpenTelemetry Python's own exporters read it as seconds.)",
        name, value, value,
    )


def _compression(compression: str | None) -> str:
    if compression:
        value, source = compression, "compression"
    else:
        found = _traces_or_general(
            _config.OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, _config.OTEL_EXPORTER_OTLP_COMPRESSION
        )
        value, source = found or ("none", "")
    value = value.strip().lower()
    if value not in _COMPRESSIONS:
        raise ConfigError(f"{source}={value!r} is not supported: use none, gzip or deflate.")
    return value


def _file(path: str | None, source: str) -> str | None:
    if path and not os.path.isfile(path):
        raise ConfigError(f"{source}={path!r}: no such file.")
    return path or None


def _env_file(traces: _config.EnvVar[str], general: _config.EnvVar[str]) -> str | None:
    found = _traces_or_general(traces, general)
    return _file(found[0].strip(), found[1]) if found else None


def _redacted(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _destination_key(settings: OtlpSettings) -> str:
    """Identity of the destination for the spool; headers (credentials) only as a short digest."""
    key = f"otlp:{settings.protocol}:{_redacted(settings.endpoint)}"
    if settings.headers:
        digest = hashlib.sha256(repr(sorted(settings.headers.items())).encode("utf-8")).hexdigest()[:12]
        key += f"#{digest}"
    return key


# -- transports: one request per export -----------------------------------------------------------
class _Transport:
    def send(self, request: ExportTraceServiceRequest) -> ExportFailure | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _build_transport(settings: OtlpSettings) -> _Transport:
    return _GrpcTransport(settings) if settings.protocol == GRPC else _HttpTransport(settings)


class _HttpTransport(_Transport):
    """OTLP/HTTP with protobuf bodies, on flowtel's one HTTP client (keep-alive, ``requests``)."""

    def __init__(self, settings: OtlpSettings) -> None:
        self._compression = settings.compression
        self._http = HttpClient(HttpSettings(
            settings.endpoint, server_cert_path=settings.certificate_file,
            client_cert_path=settings.client_certificate_file, client_key_path=settings.client_key_file,
            timeout=settings.timeout,
        ))
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": _USER_AGENT}
        if settings.compression != "none":
            self._headers["Content-Encoding"] = settings.compression
        self._headers.update(settings.headers)

    def send(self, request: ExportTraceServiceRequest) -> ExportFailure | None:
        body = _compress(request.SerializeToString(), self._compression)
        try:
            response = self._http.request("POST", "", body=body, headers=self._headers)
        except TransportError as exc:
            return ExportFailure(exc.kind, exc.kind in ("connection", "timeout"), message=exc.message[:300])
        if response.ok:
            _check_partial_success(response.body)
            return None
        return _failure_from_http(response.status, response.headers, response.body)

    def close(self) -> None:
        self._http.close()


class _GrpcTransport(_Transport):
    """OTLP/gRPC: the official ``TraceService`` stub (opentelemetry-proto) on one channel."""

    def __init__(self, settings: OtlpSettings) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
            TraceServiceStub,
        )

        self._grpc = grpc
        parts = urllib.parse.urlsplit(settings.endpoint)
        target = parts.netloc if parts.scheme in ("http", "https") else settings.endpoint
        options = [("grpc.primary_user_agent", _USER_AGENT)]
        compression = {"gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate}.get(
            settings.compression, grpc.Compression.NoCompression
        )
        if settings.insecure:
            self._channel = grpc.insecure_channel(target, options=options, compression=compression)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(settings.certificate_file),
                private_key=_read(settings.client_key_file),
                certificate_chain=_read(settings.client_certificate_file),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options, compression=compression)
        self._stub = TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = tuple(settings.headers.items())
        self._timeout = settings.timeout

    def send(self, request: ExportTraceServiceRequest) -> ExportFailure | None:
        try:
            response = self._stub.Export(request, metadata=self._metadata, timeout=self._timeout)
        except self._grpc.RpcError as exc:
            return _failure_from_grpc(exc.code(), exc.details(), exc.trailing_metadata())
        _log_partial_success(response)
        return None

    def close(self) -> None:
        self._channel.close()


def _compress(body: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(body, compresslevel=6)
    if compression == "deflate":
        return zlib.compress(body)
    return body


def _check_partial_success(body: bytes) -> None:
    if not body:
        return
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(body)
    except Exception:  # noqa: BLE001 - a 2xx with an odd body still means delivered
        return
    _log_partial_success(response)


def _log_partial_success(response: Any) -> None:
    partial = response.partial_success
    if partial.rejected_spans or partial.error_message:
        # OTLP does not say which spans: the count is all that can be reported.
        _logger.warning(
            "The OTLP endpoint accepted the request but rejected %d span(s): %s",
            partial.rejected_spans, partial.error_message or "no reason given",
        )


def _failure_from_http(status: int, headers: Mapping[str, str], body: bytes) -> ExportFailure:
    return ExportFailure(
        f"http_{status}",
        is_retryable_status(status),
        retry_after=parse_retry_after(headers.get("retry-after")),
        message=_status_message(body) or f"HTTP {status}",
    )


def _status_message(body: bytes) -> str:
    """The message of a ``google.rpc.Status`` error body (OTLP/HTTP errors), else the text."""
    if not body:
        return ""
    text = body[:300].decode("utf-8", errors="replace")
    try:
        from google.rpc import status_pb2

        status = status_pb2.Status()
        status.ParseFromString(body)
    except Exception:  # noqa: BLE001 - not a Status message: the raw text says more
        return text
    return str(status.message)[:300] or text


def _failure_from_grpc(code: Any, details: str | None, trailing: Any) -> ExportFailure:
    name = getattr(code, "name", str(code))
    return ExportFailure(
        f"grpc_{name.lower()}",
        name in _RETRYABLE_GRPC_NAMES,
        retry_after=_grpc_retry_after(trailing),
        message=(details or name)[:300],
    )


def _grpc_retry_after(trailing: Any) -> float | None:
    for key, value in trailing or ():
        if key == "google.rpc.retryinfo-bin":
            try:
                from google.rpc.error_details_pb2 import RetryInfo

                info = RetryInfo()
                info.ParseFromString(value)
                return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
            except Exception:  # noqa: BLE001 - a malformed hint is ignored, the pipeline backs off
                return None
    return None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()
