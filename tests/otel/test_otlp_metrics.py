"""GenAI and delivery metrics at a real OTLP metrics receiver (the official MetricsService over
gRPC, and OTLP/HTTP protobuf): token usage and operation duration per model, span duration per
type, and the delivery counters a dashboard alerts on."""

from __future__ import annotations

from typing import Any

import pytest

import flowtel
from flowtel import SpanType
from flowtel.exporters import InMemoryExporter, OtlpMetricsExporter
from flowtel.tracing import _runtime
from tests._servers.otlp_receivers import OtlpReceiver

USAGE = {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}


@pytest.fixture(params=["grpc", "http/protobuf"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def receiver(protocol: str, request: pytest.FixtureRequest) -> OtlpReceiver:
    name = "otlp_grpc_receiver" if protocol == "grpc" else "otlp_http_receiver"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@flowtel.trace(span_type=SpanType.AGENT)
def agent(question: str) -> str:
    chat_messages = [{"role": "user", "content": question}]
    with flowtel.start_span("chat", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"model": "gpt-4o-mini", "messages": chat_messages})
        span.set_attribute("mlflow.chat.tokenUsage", USAGE)
        span.set_attribute("mlflow.llm.provider", "openai")
        span.set_outputs({"model": "gpt-4o-mini-2024-07-18", "choices": []})
    return "Paris"


@flowtel.trace(span_type=SpanType.TOOL)
def broken_tool() -> None:
    raise ValueError("no weather today")


def by_labels(points: list[dict[str, Any]], **labels: Any) -> dict[str, Any]:
    [point] = [p for p in points if all(p["attributes"].get(k) == v for k, v in labels.items())]
    return point


def test_genai_histograms_and_delivery_counters_arrive(receiver: OtlpReceiver, protocol: str) -> None:
    endpoint = receiver.endpoint if protocol == "grpc" else receiver.base_url  # type: ignore[attr-defined]
    metrics = OtlpMetricsExporter(endpoint, protocol=protocol, export_interval_millis=3_600_000)
    flowtel.tracing.set_destination(InMemoryExporter(), metrics)
    agent("Capital of France?")
    agent("Capital of Italy?")
    with pytest.raises(ValueError, match="no weather today"):
        broken_tool()
    assert flowtel.flush(10)
    assert metrics.force_flush(10_000)

    tokens = receiver.wait_for_metric("gen_ai.client.token.usage")
    labels = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
              "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18"}
    assert (by_labels(tokens, **{"gen_ai.token.type": "input"})["sum"], by_labels(tokens, **{"gen_ai.token.type": "input"})["count"]) == (24, 2)
    assert by_labels(tokens, **{"gen_ai.token.type": "output"})["sum"] == 8
    assert all({k: p["attributes"][k] for k in labels} == labels for p in tokens)
    duration = receiver.metric_points("gen_ai.client.operation.duration")
    assert [(p["attributes"], p["count"]) for p in duration] == [(labels, 2)]

    span_duration = receiver.metric_points("flowtel.span.duration")
    counts = {(p["attributes"]["flowtel.span.type"], p["attributes"]["flowtel.span.status"]): p["count"] for p in span_duration}
    assert counts == {("AGENT", "OK"): 2, ("CHAT_MODEL", "OK"): 2, ("TOOL", "ERROR"): 1}

    sent = receiver.metric_points("flowtel.delivery.sent")
    assert by_labels(sent, **{"flowtel.destination": "memory"})["value"] == 3
    depth = receiver.metric_points("flowtel.delivery.queue.depth")
    assert by_labels(depth, **{"flowtel.destination": "memory"})["kind"] == "gauge"
    # Bounded labels: no trace ids, span names or free-form values anywhere.
    for request in receiver.metric_requests:
        text = str(request)
        assert "Capital of" not in text and "tr-" not in text and "broken_tool" not in text
    metrics.shutdown()  # while the receiver still runs: its last export is not retried at a closed port


def test_drops_are_counted_by_reason(otlp_http_receiver: OtlpReceiver) -> None:
    from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter

    class Refusing(TraceExporter):
        name = "refusing"

        def export(self, traces: Any) -> ExportResult:
            return ExportResult({t.info.trace_id: ExportFailure("http_400", False, message="bad") for t in traces})

    metrics = OtlpMetricsExporter(otlp_http_receiver.base_url, export_interval_millis=3_600_000)  # + /v1/metrics
    flowtel.tracing.set_destination(Refusing(), metrics)
    agent("Capital of Spain?")
    assert flowtel.flush(10)
    assert metrics.force_flush(10_000)

    dropped = otlp_http_receiver.wait_for_metric("flowtel.delivery.dropped")
    point = by_labels(dropped, **{"flowtel.destination": "refusing"})
    assert point["value"] == 1 and point["kind"] == "sum" and set(point["attributes"]) == {
        "flowtel.destination", "flowtel.drop.reason"}
    metrics.shutdown()


def test_metrics_are_off_unless_a_metrics_endpoint_is_set(otlp_http_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.base_url)
    _runtime.reset()
    assert [d.exporter.name for d in _runtime.get_runtime().destinations] == ["local", "otlp"]

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", otlp_http_receiver.base_url + "/v1/metrics")
    _runtime.reset()
    destinations = _runtime.get_runtime().destinations
    assert [d.exporter.name for d in destinations] == ["local", "otlp", "otlp_metrics"]
    assert destinations[-1].exporter.endpoint == otlp_http_receiver.base_url + "/v1/metrics"  # type: ignore[attr-defined]

    agent("Capital of Peru?")
    assert flowtel.flush(10)
    assert destinations[-1].exporter.force_flush(10_000)
    assert otlp_http_receiver.wait_for_metric("gen_ai.client.token.usage")
    destinations[-1].exporter.shutdown()

    monkeypatch.setenv("FLOWTEL_OTLP_METRICS", "false")
    _runtime.reset()
    assert "otlp_metrics" not in [d.exporter.name for d in _runtime.get_runtime().destinations]


def test_metrics_on_with_the_general_endpoint_when_asked(otlp_http_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.base_url)
    monkeypatch.setenv("FLOWTEL_OTLP_METRICS", "true")
    assert OtlpMetricsExporter().endpoint == otlp_http_receiver.base_url + "/v1/metrics"


@pytest.mark.parametrize(("name", "value", "message"), [
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json", "not supported for metrics"),
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:4318", "not an http"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "positive number of milliseconds"),
])
def test_bad_metrics_configuration_is_a_clear_error(name: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(flowtel.FlowtelException, match=message):
        OtlpMetricsExporter()
