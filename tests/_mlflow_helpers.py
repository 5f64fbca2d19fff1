"""Helpers for the MLflow server tests: routing flowtel to a real server, comparing traces with
what the real ``mlflow`` client reads, and a fault-injecting HTTP proxy in front of a server."""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import flowtel
from flowtel.exporters import InMemoryExporter
from flowtel.exporters.mlflow._exporter import create_mlflow_destination
from flowtel.tracing import _experiments, _runtime


def _mlflow_span_dicts_have_kind() -> bool:
    try:
        from mlflow.entities import Span as MlflowSpan
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext
    except ImportError:
        return True
    context = SpanContext(1, 1, False)
    otel = ReadableSpan(name="s", context=context, attributes={"mlflow.traceRequestId": '"tr-1"'})
    return "kind" in MlflowSpan(otel).to_dict()


MLFLOW_SPAN_DICTS_HAVE_KIND = _mlflow_span_dicts_have_kind()
"""Whether the in-process ``mlflow`` writes a span's ``kind`` (3.18 does, 3.17 does not)."""


def as_in_process_mlflow(data: Any) -> Any:
    """A trace or span dict (or a list of them) as the in-process ``mlflow`` writes it: without
    the span ``kind`` before 3.18. Exact 3.18 round trips are checked in a 3.18 client."""
    data = json.loads(json.dumps(data))
    if MLFLOW_SPAN_DICTS_HAVE_KIND:
        return data
    items = data if isinstance(data, list) else [data]
    for item in items:
        spans = item.get("data", {}).get("spans", []) if "data" in item else [item]
        for span in spans:
            span.pop("kind", None)
    return data


# Keys the server adds to what the client sent.
SERVER_TAGS = {"mlflow.artifactLocation", "mlflow.trace.spansLocation"}
SERVER_METADATA = {"mlflow.trace.infoFinalized", "mlflow.trace.cost"}


def new_experiment(server: Any, prefix: str = "exp") -> str:
    return str(server.create_experiment(f"{prefix}-{uuid.uuid4().hex[:10]}"))


@contextmanager
def flowtel_to(url: str, experiment_id: str | None = None) -> Iterator[InMemoryExporter]:
    """Route flowtel to the MLflow server at ``url`` (plus an in-memory copy of every trace,
    which is what flowtel produced) and make ``experiment_id`` the active experiment."""
    memory = InMemoryExporter()
    _runtime.set_destinations([create_mlflow_destination(url), _runtime.Destination(exporter=memory)])
    try:
        if experiment_id is not None:
            flowtel.set_experiment(experiment_id=experiment_id)
        yield memory
    finally:
        flowtel.flush()
        _experiments.reset()
        _runtime.set_destinations(None)


# Span attributes the server computes (cost from model + usage) when the client did not set them.
SERVER_SPAN_ATTRIBUTES = {"mlflow.llm.cost"}


def span_dicts(trace: Any, server_side: bool = False) -> list[dict[str, Any]]:
    """Span dicts of a flowtel or mlflow trace, JSON-normalised (tuples -> lists), by start;
    ``server_side`` drops the attributes the server adds."""
    dicts = [as_in_process_mlflow(s.to_dict()) for s in trace.data.spans]
    if server_side:
        for d in dicts:
            d["attributes"] = {k: v for k, v in d["attributes"].items() if k not in SERVER_SPAN_ATTRIBUTES}
    return sorted(dicts, key=lambda d: (d["start_time_unix_nano"], d["span_id"]))


def info_without_server_keys(info_dict: dict[str, Any], assessment_times: bool = True) -> dict[str, Any]:
    """A TraceInfo dict minus what the server adds, and with assessments reduced to what the
    client chose (the server assigns ids and validity)."""
    d = json.loads(json.dumps(info_dict))
    d["tags"] = {k: v for k, v in d.get("tags", {}).items() if k not in SERVER_TAGS}
    d["trace_metadata"] = {k: v for k, v in d.get("trace_metadata", {}).items() if k not in SERVER_METADATA}
    dropped = {"assessment_id", "valid"} | (set() if assessment_times else {"create_time", "last_update_time"})
    d["assessments"] = sorted(
        ({k: v for k, v in a.items() if k not in dropped} for a in d.get("assessments", [])),
        key=lambda a: json.dumps(a, sort_keys=True),
    )
    return d


def assert_same_trace(ours: Any, theirs: Any, *, assessment_times: bool = True) -> None:
    """``ours`` (as flowtel produced it) and ``theirs`` (as the real mlflow client read it back)
    agree on every span, attribute, event, status, tag, metadata value and assessment.
    ``assessment_times=False`` for the FileStore backend, which stamps assessments it stores
    with its own clock."""
    mine = span_dicts(ours)
    client_set = {d["span_id"]: set(d["attributes"]) for d in mine}
    stored = span_dicts(theirs)
    for d in stored:  # the server's own values only where the client set none (it keeps flowtel's cost)
        d["attributes"] = {k: v for k, v in d["attributes"].items()
                           if k not in SERVER_SPAN_ATTRIBUTES or k in client_set.get(d["span_id"], ())}
    assert stored == mine
    assert info_without_server_keys(theirs.info.to_dict(), assessment_times) == \
        info_without_server_keys(ours.info.to_dict(), assessment_times)


# -- fault-injecting proxy -----------------------------------------------------------------------
class FaultProxy:
    """An HTTP(S) reverse proxy in front of a real server, whose answers can be replaced.

    ``mode``: ``"forward"`` (default), ``"503"`` (every request gets 503 + ``Retry-After: 7``),
    ``"429"``, ``"overloaded"`` (the 400 of a server whose database pool is exhausted), ``"drop"`` (the connection is closed without an answer), ``"old-server"`` (no
    ``/v1/traces`` and no StartTraceV3, like MLflow <= 3.2), ``"no-otlp"`` (no ``/v1/traces``
    only, like 3.3). ``requests`` records ``(method, path, headers)`` of every request.
    """

    def __init__(self, upstream_port: int, tls: ssl.SSLContext | None = None) -> None:
        self.upstream_port = upstream_port
        self.mode = "forward"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests.append((self.command, self.path, dict(self.headers.items())))
                answer = proxy._injected(self.command, self.path)
                if answer == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if answer is not None:
                    status, headers, payload = answer
                else:
                    status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _injected(self, method: str, path: str) -> Any:
        mode = self.mode
        if mode == "drop":
            return "drop"
        if mode in ("503", "429"):
            return int(mode), {"Retry-After": "7", "Content-Type": "text/plain"}, b"busy"
        if mode == "overloaded":  # what the server says when its SQLAlchemy pool is exhausted
            error = {"error_code": "BAD_REQUEST", "message": "QueuePool limit of size 5 overflow 10 reached, "
                     "connection timed out, timeout 30.00"}
            return 400, {"Content-Type": "application/json"}, json.dumps(error).encode()
        otlp = path.startswith("/v1/traces")
        start_v3 = method == "POST" and path.split("?")[0] == "/api/3.0/mlflow/traces"
        if mode in ("old-server", "no-otlp") and otlp:
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"
        if mode == "old-server" and start_v3:
            error = {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API endpoint found"}
            return 404, {"Content-Type": "application/json"}, json.dumps(error).encode()
        return None

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
            conn.request(method, path, body=body or None, headers=forwarded)
            response = conn.getresponse()
            payload = response.read()
            kept = {k: v for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "connection", "transfer-encoding")}
            return response.status, kept, payload
        finally:
            conn.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def self_signed_tls(directory: Any) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1, and the path of
    that certificate (PEM) for clients to trust."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{directory}/server.pem", f"{directory}/server.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
