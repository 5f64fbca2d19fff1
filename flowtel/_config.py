"""Every environment variable flowtel reads, with its default. Standard names first."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

# The one exception tree has it; importable from here too (explicit re-export).
from flowtel._exceptions import ConfigError as ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    name: str
    default: T
    parse: Callable[[str], T]
    doc: str

    def get(self) -> T:
        raw = os.environ.get(self.name)
        if raw is None or raw.strip() == "":
            return self.default
        try:
            return self.parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}={raw!r} is invalid: {exc}. {self.doc}") from None

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, "").strip())

    def get_or_default(self) -> T:
        """The value, or the default when it is invalid: for paths that must not fail (the exit
        drain). The invalid value was reported when tracing started (:func:`validate_all`)."""
        try:
            return self.get()
        except ConfigError:
            return self.default


def all_settings() -> list[EnvVar[object]]:
    """Every setting this module declares."""
    module = sys.modules[__name__]
    return [value for value in vars(module).values() if isinstance(value, EnvVar)]


def validate_all() -> None:
    """Parse every setting now. Raises one ConfigError naming every invalid one.

    Called when tracing starts, so a bad value is reported once, clearly, at configure time,
    never later on a path that must not fail (the exit drain, a span's capture policy).
    """
    problems = []
    for setting in all_settings():
        try:
            setting.get()
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(" ".join(problems))


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _ratio(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise ValueError("expected a number between 0.0 and 1.0")
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return raw.lower()

    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:  # nan passes no comparison; inf waits forever
        raise ValueError("expected a positive, finite number")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value


MLFLOW_TRACKING_URI = EnvVar(
    "MLFLOW_TRACKING_URI", "", str,
    "Where traces go: an http(s):// MLflow server; unset keeps the embedded local store.",
)
MLFLOW_EXPERIMENT_NAME = EnvVar("MLFLOW_EXPERIMENT_NAME", "", str, "Experiment for new traces, by name.")
MLFLOW_EXPERIMENT_ID = EnvVar("MLFLOW_EXPERIMENT_ID", "", str, "Experiment for new traces, by id.")
MLFLOW_TRACKING_TOKEN = EnvVar(
    "MLFLOW_TRACKING_TOKEN", "", str, "Bearer token sent to the MLflow server (never logged)."
)
MLFLOW_TRACKING_USERNAME = EnvVar("MLFLOW_TRACKING_USERNAME", "", str, "Basic auth user for the MLflow server.")
MLFLOW_TRACKING_PASSWORD = EnvVar(
    "MLFLOW_TRACKING_PASSWORD", "", str, "Basic auth password for the MLflow server (never logged)."
)
MLFLOW_TRACKING_INSECURE_TLS = EnvVar(
    "MLFLOW_TRACKING_INSECURE_TLS", False, _bool, "true skips TLS certificate verification (unsafe)."
)
MLFLOW_TRACKING_SERVER_CERT_PATH = EnvVar(
    "MLFLOW_TRACKING_SERVER_CERT_PATH", "", str, "CA bundle used to verify the MLflow server's certificate."
)
MLFLOW_TRACKING_CLIENT_CERT_PATH = EnvVar(
    "MLFLOW_TRACKING_CLIENT_CERT_PATH", "", str, "Client certificate (PEM with key) for mutual TLS."
)
MLFLOW_HTTP_REQUEST_TIMEOUT = EnvVar(
    "MLFLOW_HTTP_REQUEST_TIMEOUT", 30.0, _positive_float,
    "Seconds per HTTP request to the MLflow server (flowtel retries; MLflow's own default is 120).",
)
FLOWTEL_MLFLOW_EXPORT_CONNECTIONS = EnvVar(
    "FLOWTEL_MLFLOW_EXPORT_CONNECTIONS", 4, _positive_int,
    "Concurrent connections the exporter uses per batch to write trace info to an MLflow server.",
)
FLOWTEL_MLFLOW_EXPORT_ORDER = EnvVar(
    "FLOWTEL_MLFLOW_EXPORT_ORDER", "spans_first", _one_of("spans_first", "info_first"),
    "spans_first: trace info last, exact; info_first: about 2x cheaper for a SQL-backed server, "
    "but it may re-derive a trace's duration from its spans (rounding, spans outliving the root).",
)
MLFLOW_TRACE_SAMPLING_RATIO = EnvVar(
    "MLFLOW_TRACE_SAMPLING_RATIO", 1.0, _ratio, "Fraction of traces recorded, 0.0 to 1.0."
)
MLFLOW_TRACE_TIMEOUT_SECONDS = EnvVar(
    "MLFLOW_TRACE_TIMEOUT_SECONDS", 0.0, _positive_float,
    "MLflow's name for FLOWTEL_TRACE_TIMEOUT_SECONDS; used when only this one is set.",
)
OTEL_EXPORTER_OTLP_ENDPOINT = EnvVar(
    "OTEL_EXPORTER_OTLP_ENDPOINT", "", str, "OTLP collector base URL; /v1/traces is appended for HTTP."
)
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", str, "OTLP traces endpoint, used exactly as given."
)
# The rest of the OTLP exporter settings (OTel spec "OTLP Exporter Configuration"): each has a
# general and a traces-specific name; the traces-specific one wins. Parsed in exporters/_otlp.py.
OTEL_EXPORTER_OTLP_PROTOCOL = EnvVar(
    "OTEL_EXPORTER_OTLP_PROTOCOL", "", str, "OTLP transport: http/protobuf (default) or grpc."
)
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "", str, "OTLP transport for traces: http/protobuf or grpc."
)
OTEL_EXPORTER_OTLP_HEADERS = EnvVar(
    "OTEL_EXPORTER_OTLP_HEADERS", "", str, "OTLP request headers, 'k1=v1,k2=v2' (values URL-encoded)."
)
OTEL_EXPORTER_OTLP_TRACES_HEADERS = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "", str, "OTLP request headers for traces; replaces the general ones."
)
OTEL_EXPORTER_OTLP_TIMEOUT = EnvVar(
    "OTEL_EXPORTER_OTLP_TIMEOUT", "", str, "OTLP request timeout in milliseconds (spec unit), default 10000."
)
OTEL_EXPORTER_OTLP_TRACES_TIMEOUT = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "", str, "OTLP request timeout for traces, in milliseconds."
)
OTEL_EXPORTER_OTLP_COMPRESSION = EnvVar(
    "OTEL_EXPORTER_OTLP_COMPRESSION", "", str, "OTLP compression: none (default), gzip or deflate."
)
OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "", str, "OTLP compression for traces: none, gzip or deflate."
)
OTEL_EXPORTER_OTLP_CERTIFICATE = EnvVar(
    "OTEL_EXPORTER_OTLP_CERTIFICATE", "", str, "CA bundle (PEM) that verifies the collector's certificate."
)
OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "", str, "CA bundle (PEM) for the traces endpoint."
)
OTEL_EXPORTER_OTLP_CLIENT_KEY = EnvVar(
    "OTEL_EXPORTER_OTLP_CLIENT_KEY", "", str, "Client private key (PEM) for mutual TLS with the collector."
)
OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "", str, "Client private key (PEM) for the traces endpoint."
)
OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE = EnvVar(
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "", str, "Client certificate (PEM) for mutual TLS with the collector."
)
OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "", str, "Client certificate (PEM) for the traces endpoint."
)
OTEL_EXPORTER_OTLP_INSECURE = EnvVar(
    "OTEL_EXPORTER_OTLP_INSECURE", "", str,
    "gRPC only, for an endpoint without http(s) scheme: true disables TLS (default false).",
)
OTEL_EXPORTER_OTLP_TRACES_INSECURE = EnvVar(
    "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "", str, "Like OTEL_EXPORTER_OTLP_INSECURE, for the traces endpoint."
)
OTEL_SERVICE_NAME = EnvVar(
    "OTEL_SERVICE_NAME", "", str, "service.name of the OTLP resource; wins over OTEL_RESOURCE_ATTRIBUTES."
)
OTEL_RESOURCE_ATTRIBUTES = EnvVar(
    "OTEL_RESOURCE_ATTRIBUTES", "", str, "Extra OTLP resource attributes, 'k1=v1,k2=v2'."
)
FLOWTEL_OTLP_CONVENTIONS = EnvVar(
    "FLOWTEL_OTLP_CONVENTIONS", "auto", str,
    "OTLP attribute conventions: auto (mlflow for an MLflow server, else genai), mlflow, genai or both.",
)


def _optional_bool(raw: str) -> bool | None:
    return None if raw.lower() == "auto" else _bool(raw)


FLOWTEL_OTLP_EXPORT = EnvVar(
    "FLOWTEL_OTLP_EXPORT", None, _optional_bool,
    "Also export to the OTLP endpoint of OTEL_EXPORTER_OTLP_*: true, false, or auto (when one is set).",
)
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT = EnvVar(
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "", str, "OTLP metrics endpoint, used exactly as given; turns metrics on."
)
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL = EnvVar(
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "", str, "OTLP transport for metrics: http/protobuf or grpc."
)
OTEL_EXPORTER_OTLP_METRICS_HEADERS = EnvVar(
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "", str, "OTLP request headers for metrics; replaces the general ones."
)
OTEL_METRIC_EXPORT_INTERVAL = EnvVar(
    "OTEL_METRIC_EXPORT_INTERVAL", "", str, "Milliseconds between two metric exports (default 60000)."
)
FLOWTEL_OTLP_METRICS = EnvVar(
    "FLOWTEL_OTLP_METRICS", None, _optional_bool,
    "GenAI and delivery metrics over OTLP: true (also to OTEL_EXPORTER_OTLP_ENDPOINT), false, or auto "
    "(only when OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set).",
)
FLOWTEL_CAPTURE_CONTENT = EnvVar(
    "FLOWTEL_CAPTURE_CONTENT", True, _bool,
    "false records no inputs, outputs, messages or event payloads (structure, timing, tokens stay).",
)
FLOWTEL_REDACT = EnvVar(
    "FLOWTEL_REDACT", True, _bool, "Replace values under credential-like keys (api_key, token, ...) by a marker."
)
FLOWTEL_CAPTURE_BINARY = EnvVar(
    "FLOWTEL_CAPTURE_BINARY", False, _bool, "Keep bytes and base64 media inline instead of a size marker."
)
MLFLOW_RUN_ID = EnvVar("MLFLOW_RUN_ID", "", str, "MLflow run new traces are linked to (mlflow.sourceRun).")
MLFLOW_ACTIVE_MODEL_ID = EnvVar(
    "MLFLOW_ACTIVE_MODEL_ID", "", str, "MLflow LoggedModel new traces are linked to (mlflow.modelId)."
)
_MLFLOW_ACTIVE_MODEL_ID = EnvVar(
    "_MLFLOW_ACTIVE_MODEL_ID", "", str, "Legacy name of MLFLOW_ACTIVE_MODEL_ID (read when that is unset)."
)
MLFLOW_TRACE_EXTRACT_ATTACHMENTS = EnvVar(
    "MLFLOW_TRACE_EXTRACT_ATTACHMENTS", True, _bool,
    "Take media out of span inputs/outputs as trace attachments (mlflow-attachment:// references).",
)
MLFLOW_TRACE_MAX_ATTACHMENT_SIZE = EnvVar(
    "MLFLOW_TRACE_MAX_ATTACHMENT_SIZE", 0, _non_negative_int,
    "Largest attachment kept, in bytes (0: no cap); larger media become a marker.",
)
FLOWTEL_MAX_ATTRIBUTE_BYTES = EnvVar(
    "FLOWTEL_MAX_ATTRIBUTE_BYTES", 1_000_000, _positive_int,
    "Largest recorded value (UTF-8 JSON bytes); larger ones are truncated, structure kept and marked.",
)
FLOWTEL_MAX_DEPTH = EnvVar("FLOWTEL_MAX_DEPTH", 32, _positive_int, "Deepest nesting recorded; deeper is marked.")
FLOWTEL_MAX_ITEMS = EnvVar("FLOWTEL_MAX_ITEMS", 10_000, _positive_int, "Items recorded per list or dict.")
FLOWTEL_MAX_STRING_CHARS = EnvVar(
    "FLOWTEL_MAX_STRING_CHARS", 100_000, _positive_int, "Characters recorded per string."
)
FLOWTEL_SAMPLING_KEEP_ERRORS = EnvVar(
    "FLOWTEL_SAMPLING_KEEP_ERRORS", False, _bool,
    "With a sampling ratio below 1, still keep every trace that ends in ERROR.",
)
FLOWTEL_STORE_PATH = EnvVar(
    "FLOWTEL_STORE_PATH", "flowtel-traces.db", str,
    "Path of the embedded local store (SQLite file), relative to the working directory.",
)
FLOWTEL_TRACE_TIMEOUT_SECONDS = EnvVar(
    "FLOWTEL_TRACE_TIMEOUT_SECONDS", 3600.0, _positive_float,
    "A trace still open after this many seconds is closed as ERROR and delivered.",
)
FLOWTEL_MAX_QUEUED_TRACES = EnvVar(
    "FLOWTEL_MAX_QUEUED_TRACES", 10_000, _positive_int,
    "Finished traces waiting for delivery, per destination, before the overflow policy applies.",
)
FLOWTEL_EXPORT_BATCH_SIZE = EnvVar(
    "FLOWTEL_EXPORT_BATCH_SIZE", 100, _positive_int, "Traces per export request at most."
)
FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS = EnvVar(
    "FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS", 10.0, _positive_float,
    "How long the exit-time drain may take before it reports what it could not send.",
)
FLOWTEL_MAX_OPEN_TRACES = EnvVar(
    "FLOWTEL_MAX_OPEN_TRACES", 100_000, _positive_int,
    "Traces in progress held in memory at most; new traces past it are dropped and counted.",
)

# -- delivery (issue 5). No standard names exist for these: OTEL_BSP_* count spans of the
# user's own OTel pipeline, not flowtel's traces, so reusing them would change two things at once.
FLOWTEL_MAX_QUEUED_BYTES = EnvVar(
    "FLOWTEL_MAX_QUEUED_BYTES", 64 * 1024 * 1024, _positive_int,
    "Estimated bytes of finished traces held in memory per destination; past half of it traces spill to the spool.",
)
FLOWTEL_EXPORT_MAX_ATTEMPTS = EnvVar(
    "FLOWTEL_EXPORT_MAX_ATTEMPTS", 5, _positive_int,
    "Export attempts per batch on retryable failures before it is spooled (or dropped without a spool).",
)
FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS = EnvVar(
    "FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS", 0.5, _positive_float,
    "First retry backoff; doubles per attempt, with jitter, up to FLOWTEL_EXPORT_RETRY_MAX_SECONDS.",
)
FLOWTEL_EXPORT_RETRY_MAX_SECONDS = EnvVar(
    "FLOWTEL_EXPORT_RETRY_MAX_SECONDS", 30.0, _positive_float,
    "Longest backoff between attempts, also between probes of an unreachable destination.",
)
FLOWTEL_SPOOL_ENABLED = EnvVar(
    "FLOWTEL_SPOOL_ENABLED", True, _bool,
    "Keep traces on local disk while a remote destination is unreachable or memory is full.",
)
FLOWTEL_SPOOL_DIR = EnvVar(
    "FLOWTEL_SPOOL_DIR", "", str,
    "Spool root; default is the user's private cache dir ($XDG_CACHE_HOME or ~/.cache)/flowtel/spool.",
)
FLOWTEL_SPOOL_MAX_BYTES = EnvVar(
    "FLOWTEL_SPOOL_MAX_BYTES", 512 * 1024 * 1024, _positive_int,
    "Disk used by the spool per destination at most; the oldest batches are dropped (counted) past it.",
)
FLOWTEL_PRICES_FILE = EnvVar(
    "FLOWTEL_PRICES_FILE", "", str,
    "JSON file of model prices, {model: {input, output, cache_read?, cache_write?}} in USD per million "
    "tokens; they win over the genai-prices catalogue.",
)
