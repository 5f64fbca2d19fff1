"""Several destinations at once, each with its own delivery: one that is slow or dead never
holds back the others, and catches up on its own once it is back."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import flowtel
from flowtel import SpanType
from flowtel.delivery._pipeline import DeliveryPipeline
from flowtel.exporters import LocalStoreExporter, OtlpExporter
from flowtel.tracing import _runtime
from tests._servers.mlflow_server import MlflowServer
from tests._servers.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver


@flowtel.trace(span_type=SpanType.AGENT)
def agent(question: str) -> str:
    flowtel.update_current_trace(tags={"app": "dual"})
    with flowtel.start_span("retrieve", span_type=SpanType.RETRIEVER) as span:
        span.set_outputs([{"page_content": "Paris is sunny", "metadata": {}}])
    return "Sunny"


def pipeline_of(kind: type) -> DeliveryPipeline:
    (pipeline,) = [d.pipeline for d in _runtime.get_runtime().destinations if isinstance(d.exporter, kind)]
    assert pipeline is not None
    return pipeline


def destination_stats(name: str) -> dict[str, object]:
    (stats,) = [d for d in flowtel.get_delivery_stats()["destinations"] if d["destination"] == name]
    return stats


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_store_is_not_held_back_by_a_stalled_collector(otlp_grpc_receiver: OtlpGrpcReceiver, tmp_path: Path) -> None:
    local = LocalStoreExporter(tmp_path / "traces.db")
    flowtel.tracing.set_destination(local, OtlpExporter(otlp_grpc_receiver.endpoint, protocol="grpc", conventions="mlflow"))
    otlp_grpc_receiver.pause()  # the collector takes the request and does not answer

    agent("Weather?")
    trace_id = flowtel.get_last_active_trace_id()
    assert trace_id is not None

    assert pipeline_of(LocalStoreExporter).flush(10)  # the local store is done...
    assert local.store.get_trace(trace_id).info.tags["app"] == "dual"
    otlp_grpc_receiver.wait_for(lambda r: r.in_flight == 1)  # ...while the OTLP request hangs
    assert otlp_grpc_receiver.span_count == 0

    otlp_grpc_receiver.resume()
    assert flowtel.flush(10)
    spans = otlp_grpc_receiver.wait_for_spans(2)
    assert sorted(s.name for s in spans) == ["agent", "retrieve"]  # each once
    assert destination_stats("otlp")["sent"] == destination_stats("local")["sent"] == 1


@pytest.fixture
def mlflow_experiment(mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    experiment_id = mlflow_server.create_experiment(f"dual-{tmp_path.name}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    return experiment_id


def test_mlflow_server_is_not_held_back_by_a_dead_collector(
    mlflow_server: MlflowServer, mlflow_experiment: str, otlp_http_receiver: OtlpHttpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both destinations from the environment, as a user would configure them.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.base_url)
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "mlflow")  # span names as recorded
    _runtime.reset()
    otlp_http_receiver.stop()  # connection refused

    agent("Weather?")
    trace_id = flowtel.get_last_active_trace_id()
    assert flowtel.flush(30)  # the dead collector's traces wait in the spool: flush is not held up

    trace = mlflow_server.client().get_trace(trace_id)
    assert sorted(s.name for s in trace.data.spans) == ["agent", "retrieve"]
    assert destination_stats("mlflow")["sent"] == 1
    otlp = destination_stats("otlp")
    assert (otlp["sent"], otlp["spooled"]) == (0, 1)

    otlp_http_receiver.start()  # the collector comes back on the same port: the spool drains
    spans = otlp_http_receiver.wait_for_spans(2, timeout=30)
    assert sorted(s.name for s in spans) == ["agent", "retrieve"]
    assert spans[0].trace_id == trace_id.removeprefix("tr-")


def test_collector_is_not_held_back_by_a_dead_mlflow_server(
    mlflow_experiment: str, otlp_http_receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_http_receiver.endpoint)
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "mlflow")  # span names as recorded
    _runtime.reset()

    agent("Weather?")
    spans = otlp_http_receiver.wait_for_spans(2)
    assert sorted(s.name for s in spans) == ["agent", "retrieve"]
    assert flowtel.flush(30)
    assert destination_stats("otlp")["sent"] == 1
    assert destination_stats("mlflow")["sent"] == 0
