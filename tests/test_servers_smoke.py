"""Smoke tests for the real test servers in ``tests/_servers``.

They prove that the real MLflow server ingests OTLP from the real OpenTelemetry exporter and
survives a crash/restart with its data, and that the OTLP receivers record what the real
OpenTelemetry SDK exporters (gRPC and HTTP) send and honour every fault-injection knob.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests._servers.mlflow_server import MlflowServer, MlflowServerError
from tests._servers.otlp_receivers import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    OtlpReceiver,
    decode_any_value,
    decode_attributes,
    grpc_status_for_http,
)

# Register the fixtures unless the suite's conftest already star-imported them (registering
# an already imported module again would only add a PytestAssertRewriteWarning).
if "tests._servers.fixtures" not in sys.modules:
    pytest_plugins = ["tests._servers.fixtures"]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _record_spans(build: Callable[[TracerProvider], None]) -> Sequence[ReadableSpan]:
    """Run ``build`` with a real SDK tracer provider and return the finished spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "flowtel-smoke"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        build(provider)
        return memory.get_finished_spans()
    finally:
        provider.shutdown()


def _one_trace(provider: TracerProvider, root_name: str = "root") -> None:
    tracer = provider.get_tracer("smoke-scope", "1.2.3")
    with tracer.start_as_current_span(
        root_name,
        kind=SpanKind.SERVER,
        attributes={
            "mlflow.spanType": json.dumps("CHAIN"),
            "mlflow.spanInputs": json.dumps({"question": "hi"}),
            "mlflow.spanOutputs": json.dumps("hello"),
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "tags": ["a", "b"],
        },
    ) as root:
        root.add_event("checkpoint", {"step": 1})
        with tracer.start_as_current_span("child", attributes={"mlflow.spanType": json.dumps("LLM")}) as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))


def _make_exporter(receiver: OtlpReceiver, timeout: float = 10.0) -> SpanExporter:
    if isinstance(receiver, OtlpGrpcReceiver):
        return GrpcSpanExporter(endpoint=receiver.endpoint, insecure=True, timeout=timeout, headers={"x-test": "1"})
    return HttpSpanExporter(
        endpoint=receiver.endpoint, timeout=timeout, compression=Compression.Gzip, headers={"x-test": "1"}
    )


def _tiny_otlp_request(name: str = "raw-root") -> tuple[ExportTraceServiceRequest, str]:
    trace_id = os.urandom(16)
    now = time.time_ns()
    span = Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name=name,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 1_000_000,
        attributes=[KeyValue(key="mlflow.spanType", value=AnyValue(string_value=json.dumps("CHAIN")))],
    )
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    return request, trace_id.hex()


def _connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


@pytest.fixture(params=["grpc", "http"])
def receiver(request: pytest.FixtureRequest) -> Iterator[OtlpReceiver]:
    """Each OTLP receiver in turn (through its public fixture)."""
    yield request.getfixturevalue(f"otlp_{request.param}_receiver")


# --------------------------------------------------------------------------------------
# MLflow server
# --------------------------------------------------------------------------------------


def _at_least(version: str | None, minimum: tuple[int, int]) -> bool:
    return version is not None and tuple(int(part) for part in version.split(".")[:2]) >= minimum


def test_mlflow_server_answers_health_and_version(mlflow_server: MlflowServer) -> None:
    assert mlflow_server.url == f"http://127.0.0.1:{mlflow_server.port}"
    assert mlflow_server.request("GET", "/health").body == b"OK"
    version = mlflow_server.request("GET", "/version")
    assert version.status == 200
    assert version.body.decode() == mlflow_server.version  # the interpreter the fixture chose


def test_mlflow_server_ingests_real_otlp_http_exporter(mlflow_server: MlflowServer) -> None:
    experiment_id = mlflow_server.create_experiment(f"smoke-{uuid.uuid4().hex}")
    spans = _record_spans(_one_trace)
    exporter = HttpSpanExporter(
        endpoint=mlflow_server.otlp_traces_url, headers={"x-mlflow-experiment-id": experiment_id}, timeout=30
    )
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    client = mlflow_server.client()
    (found,) = client.search_traces(locations=[experiment_id])
    trace_id = f"tr-{spans[0].context.trace_id:032x}"
    assert found.info.trace_id == trace_id
    trace = client.get_trace(trace_id)
    by_name = {span.name: span for span in trace.data.spans}
    assert set(by_name) == {"root", "child"}
    assert by_name["root"].span_type == "CHAIN"
    assert by_name["root"].inputs == {"question": "hi"}
    assert by_name["root"].outputs == "hello"
    assert by_name["child"].span_type == "LLM"
    assert by_name["child"].parent_id == by_name["root"].span_id


def test_mlflow_server_raw_otlp_status_codes(mlflow_server: MlflowServer) -> None:
    experiment_id = mlflow_server.create_experiment(f"smoke-raw-{uuid.uuid4().hex}")
    request, trace_id = _tiny_otlp_request()
    body = request.SerializeToString()

    accepted = mlflow_server.post_otlp(body, experiment_id)
    assert accepted.status == 200
    assert accepted.headers["content-type"] == "application/x-protobuf"
    assert accepted.body == b""  # an empty ExportTraceServiceResponse
    assert mlflow_server.post_otlp(body, experiment_id).status == 200  # a re-sent span is accepted
    gzipped = gzip.compress(_tiny_otlp_request()[0].SerializeToString())
    assert mlflow_server.post_otlp(gzipped, experiment_id, headers={"Content-Encoding": "gzip"}).status == 200

    missing_header = mlflow_server.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
    assert missing_header.status == 422
    assert "x-mlflow-experiment-id" in missing_header.body.decode()
    unknown_experiment = mlflow_server.post_otlp(_tiny_otlp_request()[0].SerializeToString(), "987654321")
    assert unknown_experiment.status == 404
    assert unknown_experiment.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    # Surprise (3.17): spans of an already stored trace are accepted whatever the experiment
    # header says (even an unknown one) and join the trace in its original experiment. 3.18
    # refuses them: 400 INVALID_PARAMETER_VALUE "... already exists in another experiment".
    moved = mlflow_server.post_otlp(body, "987654321")
    if _at_least(mlflow_server.version, (3, 18)):
        assert moved.status == 400 and moved.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    else:
        assert moved.status == 200
    assert mlflow_server.post_otlp(b"\xff\xff", experiment_id).status == 400
    assert mlflow_server.post_otlp(body, experiment_id, content_type="text/plain").status == 400

    client = mlflow_server.client()
    assert len(client.search_traces(locations=[experiment_id])) == 2  # re-sent spans did not duplicate
    trace = client.get_trace(f"tr-{trace_id}")
    assert trace.info.experiment_id == experiment_id
    assert [span.name for span in trace.data.spans] == ["raw-root"]


def test_mlflow_file_store_answers_501(mlflow_file_server: MlflowServer) -> None:
    request, _ = _tiny_otlp_request()
    response = mlflow_file_server.post_otlp(request.SerializeToString(), "0")
    assert response.status == 501
    assert "FileStore" in response.json()["detail"]

    exporter = HttpSpanExporter(
        endpoint=mlflow_file_server.otlp_traces_url, headers={"x-mlflow-experiment-id": "0"}, timeout=30
    )
    try:  # 501 is not retryable: the real exporter gives up at once
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()


def test_mlflow_server_kill_and_restart_keep_data(mlflow_server: MlflowServer) -> None:
    url, port = mlflow_server.url, mlflow_server.port
    experiment_id = mlflow_server.create_experiment(f"smoke-restart-{uuid.uuid4().hex}")
    before, before_id = _tiny_otlp_request("before-crash")
    assert mlflow_server.post_otlp(before.SerializeToString(), experiment_id).status == 200

    mlflow_server.kill()
    try:
        assert not mlflow_server.is_running
        assert _connection_refused(port)
    finally:
        mlflow_server.restart()

    assert mlflow_server.url == url
    assert mlflow_server.client().get_trace(f"tr-{before_id}").data.spans[0].name == "before-crash"
    after, after_id = _tiny_otlp_request("after-restart")
    assert mlflow_server.post_otlp(after.SerializeToString(), experiment_id).status == 200
    assert mlflow_server.client().get_trace(f"tr-{after_id}").data.spans[0].name == "after-restart"


def test_mlflow_server_startup_failure_reports_log_tail(tmp_path: Path) -> None:
    server = MlflowServer("sqlite", tmp_path, extra_args=["--no-such-option"])
    with pytest.raises(MlflowServerError, match="no-such-option") as excinfo:
        server.start(timeout=60)
    assert "exited with code" in str(excinfo.value)
    assert not server.is_running


# --------------------------------------------------------------------------------------
# OTLP receivers
# --------------------------------------------------------------------------------------


def test_decode_any_value_covers_every_kind() -> None:
    value = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                KeyValue(key="s", value=AnyValue(string_value="x")),
                KeyValue(key="b", value=AnyValue(bool_value=True)),
                KeyValue(key="i", value=AnyValue(int_value=7)),
                KeyValue(key="d", value=AnyValue(double_value=1.5)),
                KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00")),
                KeyValue(key="arr", value=AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
                KeyValue(key="none", value=AnyValue()),
            ]
        )
    )
    assert decode_any_value(value) == {"s": "x", "b": True, "i": 7, "d": 1.5, "raw": b"\x00", "arr": [1], "none": None}
    assert decode_attributes([KeyValue(key="k", value=AnyValue(string_value="v"))]) == {"k": "v"}
    assert grpc_status_for_http(503) is grpc.StatusCode.UNAVAILABLE
    assert grpc_status_for_http(429) is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_receiver_records_real_sdk_export(receiver: OtlpReceiver) -> None:
    exporter = _make_exporter(receiver)
    try:
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    spans = {span.name: span for span in receiver.wait_for_spans(2)}
    root, child = spans["root"], spans["child"]
    assert root.parent_span_id is None
    assert child.parent_span_id == root.span_id
    assert child.trace_id == root.trace_id and len(root.trace_id) == 32
    assert root.kind == "SPAN_KIND_SERVER"
    assert root.attributes == {
        "mlflow.spanType": '"CHAIN"',
        "mlflow.spanInputs": '{"question": "hi"}',
        "mlflow.spanOutputs": '"hello"',
        "count": 3,
        "ratio": 0.5,
        "flag": True,
        "tags": ["a", "b"],
    }
    assert root.json_attributes["mlflow.spanInputs"] == {"question": "hi"}
    assert [(e["name"], e["attributes"]) for e in root.events] == [("checkpoint", {"step": 1})]
    assert (child.status_code, child.status_message) == ("STATUS_CODE_ERROR", "boom")
    assert root.resource_attributes["service.name"] == "flowtel-smoke"
    assert (root.scope_name, root.scope_version) == ("smoke-scope", "1.2.3")
    (request,) = receiver.requests
    assert request.accepted and request.headers["x-test"] == "1"
    if isinstance(receiver, OtlpHttpReceiver):
        assert (request.content_type, request.content_encoding) == ("application/x-protobuf", "gzip")
        assert request.status == 200
    else:
        assert request.status is grpc.StatusCode.OK
    assert set(receiver.traces()) == {root.trace_id}


@pytest.mark.parametrize("status", [503, 429])
def test_fail_next_with_retry_after_is_retried_by_real_exporter(receiver: OtlpReceiver, status: int) -> None:
    receiver.fail_next(1, status, retry_after=0)
    exporter = _make_exporter(receiver)
    try:
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    first, second = receiver.attempts
    expected = grpc_status_for_http(status) if isinstance(receiver, OtlpGrpcReceiver) else status
    assert (first.status, first.accepted) == (expected, False)
    assert second.accepted
    assert len(first.spans()) == len(second.spans()) == 2  # the retry re-sent the same batch
    assert len(receiver.spans()) == 2


def test_fail_next_non_retryable_fails_export(receiver: OtlpReceiver) -> None:
    receiver.fail_next(1, 500)
    exporter = _make_exporter(receiver)
    try:
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.FAILURE
        (attempt,) = receiver.attempts
        assert not attempt.accepted and attempt.error == "injected failure (500)"
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS  # queue drained
    finally:
        exporter.shutdown()


def test_reject_if_poisons_only_matching_requests(receiver: OtlpReceiver) -> None:
    receiver.reject_if(lambda span: span.name == "poison")
    exporter = _make_exporter(receiver)
    try:
        assert exporter.export(_record_spans(lambda p: _one_trace(p, "poison"))) is SpanExportResult.FAILURE
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()

    rejected, accepted = receiver.attempts
    expected = grpc.StatusCode.INVALID_ARGUMENT if isinstance(receiver, OtlpGrpcReceiver) else 400
    assert rejected.status == expected and not rejected.accepted
    assert accepted.accepted
    assert {span.name for span in receiver.spans()} == {"root", "child"}


def test_pause_holds_requests_until_resume(receiver: OtlpReceiver) -> None:
    spans = _record_spans(_one_trace)
    exporter = _make_exporter(receiver)
    results: list[SpanExportResult] = []
    receiver.pause()
    worker = threading.Thread(target=lambda: results.append(exporter.export(spans)))
    worker.start()
    try:
        receiver.wait_for(lambda r: r.in_flight == 1, what="one held request")
        assert receiver.attempts == [] and results == []
    finally:
        receiver.resume()
        worker.join(timeout=10)
        exporter.shutdown()
    assert results == [SpanExportResult.SUCCESS]
    assert len(receiver.wait_for_spans(2)) == 2


def test_delay_longer_than_client_timeout_fails_export(receiver: OtlpReceiver) -> None:
    receiver.set_delay(30)
    exporter = _make_exporter(receiver, timeout=0.5)
    try:
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    receiver.wait_for(lambda r: r.in_flight >= 1, what="the delayed request")
    receiver.stop()  # releases the delayed handler at once (bounded stop)
    assert receiver.in_flight == 0
    (attempt,) = receiver.attempts
    assert not attempt.accepted and attempt.error == "receiver is stopping"
    assert receiver.spans() == []


def test_stop_and_start_reuse_the_port(receiver: OtlpReceiver) -> None:
    port = receiver.port
    exporter = _make_exporter(receiver)
    try:
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS
        receiver.stop()
        assert not receiver.is_running and _connection_refused(port)
        receiver.start()
        assert receiver.port == port
        assert exporter.export(_record_spans(_one_trace)) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert len(receiver.wait_for_spans(4)) == 4  # data survives the restart


def test_wait_for_spans_times_out_with_a_useful_message(otlp_http_receiver: OtlpHttpReceiver) -> None:
    with pytest.raises(TimeoutError, match="1 accepted span"):
        otlp_http_receiver.wait_for_spans(1, timeout=0.05)


def test_http_receiver_accepts_otlp_json_and_rejects_garbage(otlp_http_receiver: OtlpHttpReceiver) -> None:
    import http.client

    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "json-scope"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "json-span",
                                "kind": 2,
                                "startTimeUnixNano": "1",
                                "endTimeUnixNano": "2",
                                "attributes": [{"key": "n", "value": {"intValue": "5"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }

    def post(body: bytes, headers: dict[str, str], path: str = "/v1/traces") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", otlp_http_receiver.port, timeout=10)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    assert post(json.dumps(payload).encode(), {"Content-Type": "application/json"}) == (200, b"{}")
    (span,) = otlp_http_receiver.spans()
    assert (span.trace_id, span.span_id, span.name) == (trace_id, span_id, "json-span")
    assert span.attributes == {"n": 5} and span.kind == "SPAN_KIND_SERVER"
    assert span.resource_attributes == {"service.name": "json-svc"}

    assert post(b"x", {"Content-Type": "text/plain"})[0] == 415
    assert post(b"\xff\xff", {"Content-Type": "application/x-protobuf"})[0] == 400
    assert post(b"x", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"})[0] == 415
    assert post(b"", {"Content-Type": "application/x-protobuf"}, path="/v1/logs")[0] == 404
    assert [a.status for a in otlp_http_receiver.attempts] == [200, 415, 400, 415]
