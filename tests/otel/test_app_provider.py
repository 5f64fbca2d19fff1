"""flowtel inside an application that runs its own OpenTelemetry pipeline: the application's
provider, processors and sampler stay untouched, spans of both form one tree in both
directions, and the application's non-LLM spans do not go to flowtel's destinations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests._servers.mlflow_server import MlflowServer
from tests._servers.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("_app_with_otel.py")


def run_app(mode: str, endpoint: str, tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWTEL_", "MLFLOW_", "OTEL_"))}
    env.update(PYTHONPATH=str(REPO_ROOT), FLOWTEL_SPOOL_ENABLED="false", FLOWTEL_STORE_PATH=str(tmp_path / "t.db"))
    done = subprocess.run([sys.executable, str(APP), mode, endpoint], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["first", "after"])
def test_application_provider_and_flowtel_share_one_tree(mode: str, otlp_grpc_receiver: OtlpGrpcReceiver, tmp_path: Path) -> None:
    result = run_app(mode, otlp_grpc_receiver.endpoint, tmp_path)

    # The application's set-up is untouched, before and after flowtel's reset.
    assert result["provider_unchanged"] and result["sampler_unchanged"]
    assert result["app_processor_saw"] == ["cache.lookup", "GET /capital", "after flowtel reset"]

    app = {s["name"]: s for s in result["app_exported"]}  # type: ignore[union-attr]
    assert set(app) == {"cache.lookup", "GET /capital", "after flowtel reset"}  # flowtel's spans stay out
    *_, traced = result["mlflow_view"]  # type: ignore[misc]
    [ask] = traced
    # Application span -> flowtel span -> application span: one tree.
    assert ask["parent_id"] is None  # the MLflow view starts at flowtel's root...
    assert app["cache.lookup"]["parent_id"] == ask["span_id"]  # ...the app's instrumentation nests under it

    received = {s.name: s for s in otlp_grpc_receiver.wait_for_spans(len(result["mlflow_view"]))}  # type: ignore[arg-type]
    assert set(received) == {"ask_llm"}  # only flowtel's spans travel through flowtel's exporters
    otlp_ask = next(s for s in otlp_grpc_receiver.spans() if s.span_id == ask["span_id"])
    assert otlp_ask.parent_span_id == app["GET /capital"]["span_id"]  # ...and in OTLP it hangs under the app span
    assert otlp_ask.trace_id == app["GET /capital"]["trace_id"] == app["cache.lookup"]["trace_id"]


def test_capturing_application_spans_into_the_mlflow_trace_is_opt_in(
    mlflow_server: MlflowServer, otlp_http_receiver: OtlpHttpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flowtel
    from flowtel.exporters import ApplicationSpanCapture
    from flowtel.tracing import _runtime

    experiment_id = mlflow_server.create_experiment(f"capture-{tmp_path.name}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_http_receiver.endpoint)
    _runtime.reset()
    app_exported = InMemorySpanExporter()
    provider = TracerProvider()  # the application's own pipeline, with the opt-in capture
    provider.add_span_processor(SimpleSpanProcessor(app_exported))
    provider.add_span_processor(ApplicationSpanCapture())
    app_tracer = provider.get_tracer("shop.db")

    @flowtel.trace(span_type="RETRIEVER")
    def retrieve(query: str) -> list[str]:
        with app_tracer.start_as_current_span("SELECT docs", attributes={"db.system": "sqlite", "db.rows": 3}):
            return ["doc-1"]

    with app_tracer.start_as_current_span("outside any flowtel trace"):
        pass
    retrieve("paris")
    assert flowtel.flush(30)

    trace = mlflow_server.client().get_trace(flowtel.get_last_active_trace_id())
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"retrieve", "SELECT docs"}  # captured into the MLflow trace...
    assert spans["SELECT docs"].parent_id == spans["retrieve"].span_id
    assert (spans["SELECT docs"].attributes["db.system"], spans["SELECT docs"].attributes["db.rows"]) == ("sqlite", 3)
    assert spans["SELECT docs"].span_type == "UNKNOWN"
    # ...while OTLP gets it once, from the application's own pipeline, not again from flowtel.
    assert [s.name for s in otlp_http_receiver.wait_for_spans(1)] == ["retrieve"]
    assert sorted(s.name for s in app_exported.get_finished_spans()) == ["SELECT docs", "outside any flowtel trace"]


def test_trace_under_an_application_span_is_a_whole_trace_in_mlflow(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application span (e.g. a FastAPI request instrumented by OTel) around a flowtel trace
    must not make the trace look like a fragment of someone else's: MLflow gets it whole."""
    import flowtel
    from flowtel.tracing import _runtime

    experiment_id = mlflow_server.create_experiment(f"under-app-span-{tmp_path.name}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    _runtime.reset()
    app_tracer = TracerProvider().get_tracer("shop.http")

    @flowtel.trace(span_type="AGENT")
    def agent(question: str) -> str:
        flowtel.update_current_trace(tags={"route": "/ask"})
        return "Paris"

    with app_tracer.start_as_current_span("POST /ask"):
        agent("Capital of France?")
    assert flowtel.flush(30)

    trace = mlflow_server.client().get_trace(flowtel.get_last_active_trace_id())
    [root] = trace.data.spans
    assert (root.name, root.parent_id) == ("agent", None)
    assert trace.info.tags["route"] == "/ask" and trace.info.tags["mlflow.traceName"] == "agent"
    assert trace.info.request_preview == '{"question": "Capital of France?"}'
