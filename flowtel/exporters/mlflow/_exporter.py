"""An MLflow tracking server as a destination: the exporter (write path), over MLflow's REST
and OTLP endpoints. The REST client is ``_client.py``, the read side ``_store.py``.

Write path, per batch: the spans of all traces of one experiment go in one ``POST /v1/traces``
(OTLP protobuf, header ``x-mlflow-experiment-id``), then each trace's info goes through
StartTraceV3 (``POST /api/3.0/mlflow/traces``) on a few keep-alive connections in parallel. The
server then has the trace whole, so the ``traces.json`` upload MLflow's client makes is only
done where the server could not store the spans (FileStore backend: ``/v1/traces`` answers 501;
servers older than 3.4 have no ``/v1/traces``). Servers without StartTraceV3 (<= 3.2) get the
v2 StartTrace/EndTrace calls. A capability found missing is re-checked after
:data:`CAPABILITY_RECHECK_SECONDS`; transient failures never change what is believed about the
server.

The exporter never raises: each trace that was not delivered is reported in
:class:`~flowtel.delivery._exporter.ExportResult` with a retryable flag (connection errors,
timeouts, 408, 429, 5xx and the 400 an overloaded server gives for a busy database are
retryable; ``Retry-After`` is passed on; other 4xx, e.g. an unknown experiment or refused
credentials, are not). A batch the server refuses as a whole is split to isolate the trace that
caused it; that trace's spans then go to ``traces.json``.

Measured against a real server (``benchmarks/bench_mlflow_export.py``): StartTraceV3 is one
SQLite write transaction per trace on the server, so it, not this client, bounds throughput.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flowtel import _config
from flowtel._attachments import attachments_of
from flowtel._config import ConfigError
from flowtel._errors import report_internal_error
from flowtel._exceptions import FlowtelException
from flowtel._suppress import suppress_instrumentation
from flowtel.delivery import Destination
from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.delivery._http import HttpClient, HttpResponse, HttpSettings, TransportError
from flowtel.delivery._retry import is_retryable_status
from flowtel.entities import Trace, TraceLocation
from flowtel.entities._constants import SpanAttributeKey, TraceTagKey
from flowtel.exporters.mlflow._client import (
    ARTIFACTS,
    JSON_HEADERS,
    OTLP_PATH,
    TRACE_DATA_FILE,
    V2_TRACES,
    V3_TRACES,
    MlflowRestClient,
    error_details,
    is_mlflow_error,
    local_artifact_path,
    proxied_artifact_path,
    quote,
    quote_path,
    start_trace_body,
)
from flowtel.exporters.mlflow._encode import build_request, distributed_parent
from flowtel.exporters.mlflow._store import MlflowTraceStore
from flowtel.tracing._experiments import UNRESOLVED_EXPERIMENT_PREFIX, resolve_experiment_name

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "MlflowExporter",
    "MlflowRestClient",
    "MlflowTraceStore",
    "create_mlflow_destination",
    "failure_from_response",
    "failure_from_transport",
]

_logger = logging.getLogger("flowtel")
T = TypeVar("T")

CAPABILITY_RECHECK_SECONDS = 300.0
MAX_OTLP_BODY_BYTES = 8 * 1024 * 1024
# The MLflow server answers 400 BAD_REQUEST for any unexpected database error, overload included.
_OVERLOAD = re.compile(r"QueuePool limit|database is locked|deadlock|could not serialize|timed out", re.IGNORECASE)


def create_mlflow_destination(tracking_uri: str) -> Destination:
    """The destination for an ``http(s)://`` tracking URI. Does no I/O.

    Raises:
        ConfigError: an MLflow environment variable has an invalid value.
    """
    client = MlflowRestClient(HttpClient(HttpSettings.from_env(tracking_uri)))
    store = MlflowTraceStore(client)
    exporter = MlflowExporter(
        client, store, connections=_config.FLOWTEL_MLFLOW_EXPORT_CONNECTIONS.get(),
        info_first=_config.FLOWTEL_MLFLOW_EXPORT_ORDER.get() == "info_first",
    )
    return Destination(exporter=exporter, store=store)


# -- capabilities --------------------------------------------------------------------------------
class _Capability:
    """A server feature; when found missing it is assumed missing for a while, then re-checked."""

    def __init__(self, recheck_seconds: float = CAPABILITY_RECHECK_SECONDS) -> None:
        self._recheck = recheck_seconds
        self._off_until = 0.0

    def available(self) -> bool:
        return time.monotonic() >= self._off_until

    def mark_missing(self) -> None:
        self._off_until = time.monotonic() + self._recheck


# -- failure classification ----------------------------------------------------------------------
def failure_from_response(response: HttpResponse, what: str) -> ExportFailure:
    """An export failure for an HTTP error answer; retryable for 408/425/429/5xx, and for the
    400s an overloaded MLflow server gives when its database is busy."""
    code, message = error_details(response)
    retryable = is_retryable_status(response.status) or response.status >= 500 or (
        response.status == 400 and code == "BAD_REQUEST" and _OVERLOAD.search(message) is not None
    )
    detail = f"{what}: HTTP {response.status} {code}: {message}"
    if response.status in (401, 403):
        detail += " (check MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD)"
    return ExportFailure(f"http_{response.status}", retryable, response.retry_after, detail)


def failure_from_transport(error: TransportError, what: str) -> ExportFailure:
    """A retryable failure for a request that got no answer (TLS errors are not retryable)."""
    return ExportFailure(error.kind, error.kind != "tls", None, f"{what}: {error.message}")


# -- exporter ------------------------------------------------------------------------------------
@dataclass
class _InfoResult:
    """What the server answered to a trace's info: its artifact location and id."""

    artifact_location: str | None
    request_id: str


@dataclass
class _Outcome:
    """Per-batch bookkeeping: traces whose spans the server stored, infos, failures."""

    spans_stored: set[str] = field(default_factory=set)
    infos: dict[str, _InfoResult] = field(default_factory=dict)
    failures: dict[str, ExportFailure] = field(default_factory=dict)

    def pending(self, traces: Iterable[Trace]) -> list[Trace]:
        return [t for t in traces if t.info.trace_id not in self.failures]


class MlflowExporter(TraceExporter):
    """Ships finished traces to an MLflow tracking server. See the module docstring.

    Called from a delivery worker; never raises. Thread-safe.

    Args:
        client: REST client of the server.
        store: The server's trace store (experiment lookups for ``MLFLOW_EXPERIMENT_NAME``).
        connections: Parallel connections for the per-trace calls (trace info, uploads).
        info_first: Send StartTraceV3 before the spans (see ``_export``); off by default.
    """

    name = "mlflow"

    def __init__(self, client: MlflowRestClient, store: MlflowTraceStore, *, connections: int = 4,
                 info_first: bool = False) -> None:
        self.client = client
        self.store = store
        self.destination_key = f"mlflow:{client.url}"
        self.info_first = info_first
        self._connections = max(1, connections)
        self._otlp = _Capability()
        self._start_v3 = _Capability()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._lock = threading.Lock()

    @classmethod
    def for_tracking_uri(cls, tracking_uri: str) -> MlflowExporter:
        """The exporter (with its read side, ``.store``) for an ``http(s)://`` MLflow server,
        configured by the ``MLFLOW_TRACKING_*`` environment variables. Does no I/O.

        Raises:
            ConfigError: the URI is not an http(s) URI, or a setting is invalid.
        """
        from flowtel.tracing._tracking import validate_tracking_uri

        uri = validate_tracking_uri(tracking_uri)
        if uri is None:
            raise ConfigError("MlflowExporter.for_tracking_uri() needs an http(s):// MLflow server URI.")
        exporter = create_mlflow_destination(uri).exporter
        assert isinstance(exporter, cls)
        return exporter

    # -- TraceExporter ----------------------------------------------------------------------
    def export(self, traces: Sequence[Trace]) -> ExportResult:
        try:
            return ExportResult(self._export(traces).failures)
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill delivery; reported
            report_internal_error("mlflow exporter", exc)
            return ExportResult.all_failed(
                traces, ExportFailure("exporter_error", False, message=repr(exc))
            )

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self.client.close()

    # -- steps ------------------------------------------------------------------------------
    def _export(self, traces: Sequence[Trace]) -> _Outcome:
        """Spans, then trace infos, then ``traces.json`` for traces whose spans the server did
        not store (known from the ``/v1/traces`` answer itself, so never a redundant upload).

        Spans first is the default: StartTraceV3 then has the last word on the trace's timing,
        state and previews. ``info_first`` costs the server about half as much per trace (the
        SQL store takes a slower insert-conflict-merge path when the spans created the trace
        first), but the span upload that follows may then re-derive the duration from the spans
        (off by a millisecond of rounding, or longer when spans outlive the root).
        """
        outcome = _Outcome()
        ready = self._resolve_experiments(traces, outcome)
        # A trace continued from another process ships only its spans (under the caller's
        # span); the caller's process sends the trace info, as in MLflow's distributed tracing.
        local = [t for t in ready if distributed_parent(t) is None]
        if self.info_first:
            self._send_infos(local, outcome)
            self._send_all_spans(outcome.pending(ready), outcome)
        else:
            self._send_all_spans(ready, outcome)
            self._send_infos(outcome.pending(local), outcome)
        self._fail_unstored_continuations(ready, outcome)
        self._upload_missing_spans(outcome.pending(local), outcome)
        self._upload_attachments(outcome.pending(local), outcome)
        return outcome

    def _fail_unstored_continuations(self, traces: list[Trace], outcome: _Outcome) -> None:
        for trace in outcome.pending(traces):
            if distributed_parent(trace) is not None and trace.info.trace_id not in outcome.spans_stored:
                outcome.failures[trace.info.trace_id] = ExportFailure(
                    "spans_not_stored", False, None,
                    "The server did not store the spans of a trace continued from another process "
                    "(that needs POST /v1/traces: MLflow >= 3.4 with a SQL backend).",
                )

    def _resolve_experiments(self, traces: Sequence[Trace], outcome: _Outcome) -> list[Trace]:
        """Traces whose experiment is known; a name not yet resolvable fails retryably."""
        ready: list[Trace] = []
        for trace in traces:
            experiment_id = trace.info.experiment_id or "0"
            if experiment_id.startswith(UNRESOLVED_EXPERIMENT_PREFIX):
                name = experiment_id[len(UNRESOLVED_EXPERIMENT_PREFIX):]
                try:
                    resolved = resolve_experiment_name(self.store, name)
                except FlowtelException as exc:
                    outcome.failures[trace.info.trace_id] = ExportFailure(
                        "experiment_unresolved", True, None,
                        f"Experiment {name!r} (MLFLOW_EXPERIMENT_NAME) could not be resolved: {exc.message}",
                    )
                    continue
                trace.info.trace_location = TraceLocation.from_experiment_id(resolved)
            ready.append(trace)
        return ready

    # spans ---------------------------------------------------------------------------------
    def _send_all_spans(self, traces: list[Trace], outcome: _Outcome) -> None:
        if not self._otlp.available():
            return
        for experiment_id, group in _group_by_experiment(traces).items():
            self._send_spans(experiment_id, group, outcome)

    def _send_spans(self, experiment_id: str, traces: list[Trace], outcome: _Outcome) -> None:
        """``POST /v1/traces`` for these traces; split on size and to isolate a bad trace."""
        body = build_request(traces).SerializeToString()
        if len(body) > MAX_OTLP_BODY_BYTES and len(traces) > 1:
            self._send_halves(experiment_id, traces, outcome)
            return
        try:
            response = self.client.send(
                "POST", OTLP_PATH, body=body,
                headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id},
            )
        except TransportError as exc:
            _fail_all(outcome, traces, failure_from_transport(exc, "sending spans"))
            return
        self._handle_spans_response(experiment_id, traces, response, outcome)

    def _handle_spans_response(self, experiment_id: str, traces: list[Trace],
                               response: HttpResponse, outcome: _Outcome) -> None:
        if response.ok:
            outcome.spans_stored.update(t.info.trace_id for t in traces)
        elif response.status == 501 or (response.status == 404 and not is_mlflow_error(response)):
            # No span storage (FileStore) or no OTLP endpoint (< 3.4): traces.json instead.
            self._otlp.mark_missing()
        elif _is_isolatable(response) and len(traces) > 1:
            self._send_halves(experiment_id, traces, outcome)
        elif not _is_isolatable(response):
            _fail_all(outcome, traces, failure_from_response(response, "sending spans"))
        # else: the server refused this one trace's spans (too large, unconvertible): its
        # spans go to traces.json, which the server stores as they are.

    def _send_halves(self, experiment_id: str, traces: list[Trace], outcome: _Outcome) -> None:
        middle = len(traces) // 2
        for half in (traces[:middle], traces[middle:]):
            self._send_spans(experiment_id, half, outcome)

    # trace infos ---------------------------------------------------------------------------
    def _send_infos(self, traces: list[Trace], outcome: _Outcome) -> None:
        """StartTraceV3 (or v2 StartTrace/EndTrace) for each trace, in parallel."""
        for trace, result in zip(traces, self._map(self._deliver_info, traces)):
            if isinstance(result, ExportFailure):
                outcome.failures[trace.info.trace_id] = result
            else:
                outcome.infos[trace.info.trace_id] = result

    def _deliver_info(self, trace: Trace) -> _InfoResult | ExportFailure:
        try:
            if self._start_v3.available():
                result = self._start_trace_v3(trace)
                if result is not None:
                    return result
            return self._start_trace_v2(trace)
        except TransportError as exc:
            return failure_from_transport(exc, "sending trace info")

    def _start_trace_v3(self, trace: Trace) -> _InfoResult | ExportFailure | None:
        """The server's answer; None when the server has no StartTraceV3 (<= 3.2)."""
        body = json.dumps(start_trace_body(trace.info), ensure_ascii=False).encode("utf-8")
        response = self.client.send("POST", V3_TRACES, body=body, headers=JSON_HEADERS)
        if response.ok:
            tags = _response_tags(response)
            return _InfoResult(tags.get(TraceTagKey.ARTIFACT_LOCATION), trace.info.trace_id)
        if response.status in (404, 405) and _error_code(response) == "ENDPOINT_NOT_FOUND":
            self._start_v3.mark_missing()
            return None
        return failure_from_response(response, "StartTraceV3")

    def _start_trace_v2(self, trace: Trace) -> _InfoResult | ExportFailure:
        """StartTrace + EndTrace for servers <= 3.2, which assign their own trace id."""
        info = trace.info
        start = {
            "experiment_id": info.experiment_id or "0",
            "timestamp_ms": info.request_time,
            "request_metadata": _key_value_list(info.trace_metadata),
            "tags": _key_value_list(info.tags),
        }
        response = self.client.send("POST", V2_TRACES, body=json.dumps(start).encode(), headers=JSON_HEADERS)
        if not response.ok:
            return failure_from_response(response, "StartTrace (v2)")
        started = response.json().get("trace_info") or {}
        request_id = str(started.get("request_id") or info.trace_id)
        end = {
            "request_id": request_id,
            "timestamp_ms": info.request_time + (info.execution_duration or 0),
            "status": "ERROR" if info.state.value == "ERROR" else "OK",
            "request_metadata": _key_value_list(info.trace_metadata),
            "tags": _key_value_list(info.tags),
        }
        path = f"{V2_TRACES}/{quote(request_id)}"
        response = self.client.send("PATCH", path, body=json.dumps(end).encode(), headers=JSON_HEADERS)
        if not response.ok:
            return failure_from_response(response, "EndTrace (v2)")
        tags = {t["key"]: t["value"] for t in started.get("tags") or [] if "key" in t}
        return _InfoResult(tags.get(TraceTagKey.ARTIFACT_LOCATION), request_id)

    # traces.json ---------------------------------------------------------------------------
    def _upload_missing_spans(self, traces: list[Trace], outcome: _Outcome) -> None:
        """``traces.json`` for traces whose spans the server did not store (or stored under
        another id: v2 servers assign their own)."""
        todo = [
            t for t in traces
            if t.info.trace_id not in outcome.spans_stored
            or outcome.infos[t.info.trace_id].request_id != t.info.trace_id
        ]
        for trace, failure in zip(todo, self._map(lambda t: self._upload(t, outcome.infos[t.info.trace_id]), todo)):
            if failure is not None:
                outcome.failures[trace.info.trace_id] = failure

    def _upload(self, trace: Trace, info: _InfoResult) -> ExportFailure | None:
        if not info.artifact_location:
            return ExportFailure(
                "no_artifact_location", False, None,
                "The server did not store the spans and gave no mlflow.artifactLocation to upload them to.",
            )
        data = json.dumps(_trace_data_dict(trace, info.request_id), ensure_ascii=False).encode("utf-8")
        try:
            write_artifact(self.client, info.artifact_location, TRACE_DATA_FILE, data)
        except TransportError as exc:
            return failure_from_transport(exc, "uploading traces.json")
        except _ArtifactError as exc:
            return exc.failure
        return None

    # attachments ---------------------------------------------------------------------------
    def _upload_attachments(self, traces: list[Trace], outcome: _Outcome) -> None:
        """Media taken out of inputs/outputs, to ``<artifactLocation>/attachments/<id>`` (where
        MLflow's client puts them and its UI reads them)."""
        todo = [t for t in traces if attachments_of(t)]
        uploads = self._map(lambda t: self._upload_attachments_of(t, outcome.infos[t.info.trace_id]), todo)
        for trace, failure in zip(todo, uploads):
            if failure is not None:
                outcome.failures[trace.info.trace_id] = failure

    def _upload_attachments_of(self, trace: Trace, info: _InfoResult) -> ExportFailure | None:
        if not info.artifact_location:
            return ExportFailure("no_artifact_location", False, None,
                                 "The server gave no mlflow.artifactLocation to upload the trace's attachments to.")
        try:
            for attachment in attachments_of(trace).values():
                write_artifact(self.client, info.artifact_location, f"attachments/{attachment.attachment_id}",
                               attachment.data, content_type=attachment.content_type)
        except TransportError as exc:
            return failure_from_transport(exc, "uploading attachments")
        except _ArtifactError as exc:
            return exc.failure
        return None

    # concurrency ---------------------------------------------------------------------------
    def _map(self, fn: Callable[[Trace], T], items: list[Trace]) -> list[T]:
        if len(items) <= 1 or self._connections == 1:
            return [fn(item) for item in items]
        pool = self._executor()
        futures: list[Future[T]] = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            # A pool inherited through fork() has no threads in the child: make a new one.
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(
                    self._connections, thread_name_prefix="flowtel-mlflow-export",
                    initializer=suppress_instrumentation,  # its HTTP calls are never traced
                )
                self._pool_pid = os.getpid()
            return self._pool




def _is_isolatable(response: HttpResponse) -> bool:
    """A 4xx that may be caused by one trace of the batch (not auth, not a missing experiment)."""
    return response.status in (400, 413, 422)


def _error_code(response: HttpResponse) -> str:
    return error_details(response)[0]


def _response_tags(response: HttpResponse) -> dict[str, str]:
    try:
        info = (response.json().get("trace") or {}).get("trace_info") or {}
    except (ValueError, AttributeError):
        return {}
    tags = info.get("tags") or {}
    return tags if isinstance(tags, dict) else {}


def _fail_all(outcome: _Outcome, traces: Iterable[Trace], failure: ExportFailure) -> None:
    for trace in traces:
        outcome.failures[trace.info.trace_id] = failure


def _group_by_experiment(traces: Iterable[Trace]) -> dict[str, list[Trace]]:
    groups: dict[str, list[Trace]] = {}
    for trace in traces:
        groups.setdefault(trace.info.experiment_id or "0", []).append(trace)
    return groups


def _key_value_list(d: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in d.items()]


def _trace_data_dict(trace: Trace, request_id: str) -> dict[str, Any]:
    data = trace.data.to_dict()
    if request_id != trace.info.trace_id:  # v2 servers assign their own id
        encoded = json.dumps(request_id)
        for span in data["spans"]:
            span["attributes"][SpanAttributeKey.REQUEST_ID] = encoded
    return data


# -- artifacts (traces.json) ---------------------------------------------------------------------
class _ArtifactError(Exception):
    def __init__(self, failure: ExportFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def write_artifact(client: MlflowRestClient, location: str, name: str, data: bytes,
                   content_type: str = "application/json") -> None:
    """Store ``data`` as ``<location>/<name>``: through the server's artifact proxy for
    ``mlflow-artifacts:`` locations, directly for local paths.

    Raises:
        TransportError: the server did not answer.
        _ArtifactError: the upload was refused, or the location is not writable from here.
    """
    proxied = proxied_artifact_path(location)
    if proxied is not None:
        response = client.send(
            "PUT", f"{ARTIFACTS}/{quote_path(proxied)}/{name}", body=data,
            headers={"Content-Type": content_type},
        )
        if not response.ok:
            raise _ArtifactError(failure_from_response(response, f"uploading {name}"))
        return
    local = local_artifact_path(location)
    if local is None:
        raise _ArtifactError(ExportFailure(
            "artifact_location_unsupported", False, None,
            f"The server stores this trace's spans at {location!r}, which flowtel cannot write "
            "to. Run the server with --serve-artifacts (the default) or a SQL backend.",
        ))
    try:
        target = os.path.join(local, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise _ArtifactError(ExportFailure("artifact_write_error", True, None, str(exc))) from None
