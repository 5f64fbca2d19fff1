"""Issue #12, "one implementation of each concept": each concept has one home, and the places
that used to carry a copy now give the same answers as that home."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from opentelemetry import context as otel_context

import flowtel
import flowtel.tracing
from flowtel import _config, _exceptions
from flowtel._suppress import instrumentation_suppressed, suppress_instrumentation
from flowtel.delivery._http import HttpClient, HttpResponse, HttpSettings, TransportError
from flowtel.delivery._retry import RETRYABLE_HTTP_STATUS, is_retryable_status, parse_retry_after
from flowtel.entities import Expectation, Feedback, _ids
from flowtel.entities._protojson import format_timestamp, parse_timestamp, to_pb_value
from flowtel.exporters.local import _filter
from flowtel.exporters.mlflow._exporter import failure_from_response
from flowtel.exporters.otlp._exporter import _failure_from_http


# -- one exception tree ---------------------------------------------------------------------------
def test_config_error_is_a_flowtel_exception_and_still_a_value_error() -> None:
    assert issubclass(flowtel.ConfigError, flowtel.FlowtelException)
    assert issubclass(flowtel.ConfigError, ValueError)
    assert flowtel.ConfigError is flowtel.tracing.ConfigError is _config.ConfigError is _exceptions.ConfigError
    error = flowtel.ConfigError("FLOWTEL_X must be a number")
    assert str(error) == error.message == "FLOWTEL_X must be a number"
    assert error.error_code == "INVALID_PARAMETER_VALUE"


def test_every_error_flowtel_raises_on_purpose_is_a_flowtel_exception() -> None:
    from flowtel.exporters.local import _store
    from flowtel.integrations._registry import IntegrationNotInstalledError

    for cls in (
        _exceptions.InvalidParameterError, _exceptions.TraceNotFoundError, _filter.InvalidFilterError,
        IntegrationNotInstalledError, _store.StoreError, _store.InvalidTraceError, _store.TraceNotFoundError,
    ):
        assert issubclass(cls, flowtel.FlowtelException), cls
    assert issubclass(_store.TraceNotFoundError, flowtel.TraceNotFoundError)


def test_bad_configuration_still_raises_where_store_errors_are_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowtel.tracing import _experiments

    def broken_registry(store: object) -> Any:
        raise flowtel.ConfigError("FLOWTEL_STORE_PATH is not usable")

    monkeypatch.setattr(_experiments, "registry_for", broken_registry)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "config-error-test")
    with pytest.raises(flowtel.ConfigError):
        _experiments.resolve_default_experiment_id(object())


# -- one protobuf-JSON mapping: Timestamp -----------------------------------------------------------
@pytest.mark.parametrize("millis", [0, 1, 999, 1000, -1, -1001, 1_795_344_974_130, 253402300799999])
def test_every_timestamp_renderer_is_protobufs(millis: int) -> None:
    proto = timestamp_pb2.Timestamp()
    proto.FromMilliseconds(millis)
    expected = proto.ToJsonString()
    assert format_timestamp(millis) == expected
    assert _ids.format_timestamp_ms(millis) == expected
    assert _filter.format_timestamp_ms(millis) == expected
    assert parse_timestamp(expected) == _ids.parse_timestamp_ms(expected) == _filter.parse_timestamp_ms(expected) == millis


@pytest.mark.parametrize("text", ["2026-11-22T10:49:25.3169Z", "2026-11-22T10:49:25-05:30", "1969-12-31T23:59:59.9999Z"])
def test_every_timestamp_parser_reads_like_protobuf(text: str) -> None:
    proto = timestamp_pb2.Timestamp()
    proto.FromJsonString(text)
    assert parse_timestamp(text) == _ids.parse_timestamp_ms(text) == _filter.parse_timestamp_ms(text) == proto.ToMilliseconds()


def test_out_of_range_timestamps_are_refused_like_protobuf() -> None:
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        format_timestamp(253402300800000)
    with pytest.raises(ValueError, match="Timestamp is not valid"):
        _ids.format_timestamp_ms(-62135596800001)


# -- one protobuf-JSON mapping: Value, and its NaN/Infinity policy ---------------------------------
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), {"a": [1, float("nan")]}])
def test_non_finite_numbers_are_refused_like_mlflows_protobuf(value: Any) -> None:
    with pytest.raises(ValueError):
        json_format.MessageToDict(json_format.ParseDict(value, struct_pb2.Value()))
    with pytest.raises(ValueError, match="Fail to serialize"):
        to_pb_value(value)
    with pytest.raises(ValueError, match="Fail to serialize"):
        Feedback(name="f", value=value).to_dictionary()
    if not isinstance(value, dict):  # MLflow sends structured expectations as a JSON string
        with pytest.raises(ValueError, match="Fail to serialize"):
            Expectation(name="e", value=value).to_dictionary()


@pytest.mark.parametrize("value", [1, 2.5, True, None, "x", [1, "a"], {"k": (1, 2)}, {"n": {"m": [0]}}])
def test_finite_values_round_trip_like_protobuf(value: Any) -> None:
    expected = json_format.MessageToDict(json_format.ParseDict(_listify(value), struct_pb2.Value()))
    assert to_pb_value(value) == expected


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    return value


# -- one retry set, one Retry-After parser ----------------------------------------------------------
@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 413, 425, 429, 500, 501, 502, 503, 504])
def test_exporters_agree_on_what_is_retryable(status: int) -> None:
    response = HttpResponse(status, {"retry-after": "7"}, b"{}")
    mlflow_failure = failure_from_response(response, "sending spans")
    otlp_failure = _failure_from_http(status, {"retry-after": "7"}, b"")
    assert otlp_failure.retryable is is_retryable_status(status) is (status in RETRYABLE_HTTP_STATUS)
    # The MLflow server also answers 5xx it has no business retrying (501 from FileStore
    # is handled before this): every 5xx is retryable there, the shared set otherwise.
    assert mlflow_failure.retryable is (is_retryable_status(status) or status >= 500)
    assert mlflow_failure.retry_after == otlp_failure.retry_after == 7.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = parse_retry_after(email.utils.formatdate(time.time() + 3600, usegmt=True))
    assert later is not None and 3000 < later <= 3600
    assert parse_retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0


# -- one instrumentation suppression -----------------------------------------------------------------
def test_instrumentation_is_suppressed_for_both_key_spellings_and_restored() -> None:
    keys = [otel_context._SUPPRESS_INSTRUMENTATION_KEY, "suppress_instrumentation"]
    with instrumentation_suppressed():
        assert all(otel_context.get_value(k) is True for k in keys)
    assert all(otel_context.get_value(k) is None for k in keys)
    token = suppress_instrumentation()
    try:
        assert otel_context.get_value(keys[0]) is True
    finally:
        otel_context.detach(token)


# -- one HTTP stack ----------------------------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 (or 503 with Retry-After for /busy) and records what it was sent."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, int, dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.client_address[1], dict(self.headers)))
        busy = self.path.endswith("/busy")
        body = b'{"ok": true}'
        self.send_response(503 if busy else 200)
        if busy:
            self.send_header("Retry-After", "4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[http.server.ThreadingHTTPServer]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_client_reuses_its_connection_and_reads_retry_after(recorder: http.server.ThreadingHTTPServer) -> None:
    client = HttpClient(HttpSettings(f"http://127.0.0.1:{recorder.server_port}/prefix", timeout=10))
    try:
        assert client.request("GET", "/a").json() == {"ok": True}
        busy = client.request("GET", "/busy")
        assert (busy.status, busy.retry_after) == (503, 4.0)
    finally:
        client.close()
    [(first, port_1, _), (second, port_2, _)] = _Recorder.seen
    assert (first, second) == ("/prefix/a", "/prefix/busy")
    assert port_1 == port_2  # one keep-alive connection


def test_http_client_goes_through_the_environments_proxy_without_showing_its_password(
    recorder: http.server.ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://bob:pr0xy-s3cret@127.0.0.1:{recorder.server_port}")
    client = HttpClient(HttpSettings("http://mlflow.invalid:5000", username="alice", password="pa55word"))
    try:
        client.request("GET", "/api/x", params={"a": "1", "skip": None})
    finally:
        client.close()
    [(target, _, headers)] = _Recorder.seen
    assert target == "http://mlflow.invalid:5000/api/x?a=1"  # absolute form: sent to the proxy
    assert headers["Authorization"] == "Basic YWxpY2U6cGE1NXdvcmQ="
    assert headers["Proxy-Authorization"] == "Basic Ym9iOnByMHh5LXMzY3JldA=="
    monkeypatch.setenv("http_proxy", "http://bob:pr0xy-s3cret@127.0.0.1:9")
    with pytest.raises(TransportError) as raised:
        HttpClient(HttpSettings("http://mlflow.invalid:5000", timeout=5)).request("GET", "/")
    assert raised.value.kind == "connection"
    assert "pr0xy-s3cret" not in raised.value.message


def test_silent_get_trace_never_silences_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowtel
    from flowtel.tracing import _runtime

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlruns.db")  # not servable: a ConfigError
    _runtime.reset()
    with pytest.raises(flowtel.ConfigError):
        flowtel.get_trace("tr-0123", silent=True)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    _runtime.reset()
