"""The real MLflow server as an OTLP backend (``POST /v1/traces``): what flowtel's OTLP exporter
sends is read back by the real ``mlflow.MlflowClient`` with trace-level data intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import flowtel
from flowtel import SpanType
from flowtel.exporters import OtlpExporter
from tests._servers.mlflow_server import MlflowServer

QUESTION = "Capital of France?"
USAGE = {"input_tokens": 10, "output_tokens": 3, "total_tokens": 13}


@flowtel.trace(span_type=SpanType.CHAT_MODEL)
def chat(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> dict[str, object]:
    span = flowtel.get_current_active_span()
    span.set_attribute("mlflow.chat.tokenUsage", USAGE)
    span.set_attribute("mlflow.message.format", "openai")
    return {"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}


@flowtel.trace(span_type=SpanType.AGENT)
def agent(question: str) -> str:
    flowtel.update_current_trace(tags={"app": "demo"}, metadata={"app.version": "1.2"}, session_id="sess-1",
                                 user="alice", client_request_id="req-42")
    chat([{"role": "user", "content": question}])
    return '{"looks": "like json"}'  # a string output that is itself JSON text


@pytest.mark.parametrize("conventions", ["mlflow", "genai"])
def test_mlflow_server_reads_back_an_otlp_export(
    mlflow_server: MlflowServer, conventions: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "capital-service")
    experiment_id = mlflow_server.create_experiment(f"otlp-{conventions}-{tmp_path.name}")
    flowtel.tracing.set_destination(OtlpExporter(
        mlflow_server.url + "/v1/traces", headers={"x-mlflow-experiment-id": experiment_id},
        conventions=conventions,  # type: ignore[arg-type]
    ))

    agent(QUESTION)
    assert flowtel.flush(30)
    trace_id = flowtel.get_last_active_trace_id()

    trace = mlflow_server.client().get_trace(trace_id)
    info = trace.info
    assert info.experiment_id == experiment_id
    assert info.tags["mlflow.traceName"] == "agent"  # from mlflow.traceTag.mlflow.traceName
    assert info.tags["app"] == "demo"  # from mlflow.traceTag.app
    assert info.tags["service.name"] == "capital-service"  # resource attributes become tags
    assert info.trace_metadata["mlflow.trace.user"] == "alice"  # from user.id
    assert info.trace_metadata["mlflow.trace.session"] == "sess-1"  # from session.id
    assert info.token_usage == USAGE  # aggregated by the server from the spans
    assert info.state.value == "OK"

    spans = {s.span_type: s for s in trace.data.spans}
    llm = spans["CHAT_MODEL"] if conventions == "mlflow" else spans["LLM"]  # the server's reading of OpenInference's kind
    root = spans["AGENT"]
    assert root.parent_id is None and llm.parent_id == root.span_id
    if conventions == "mlflow":
        assert root.outputs == '{"looks": "like json"}'  # stored as the same string, not turned into an object
    else:  # the server parses OpenInference's output.value as JSON, whatever its output.mime_type says
        assert root.outputs == {"looks": "like json"}
    # MLflow's server reads no trace metadata back over OTLP (README): it stays on the root span.
    assert "app.version" not in info.trace_metadata and info.client_request_id is None
    if conventions == "mlflow":
        assert root.attributes["mlflow.traceMetadata.app.version"] == "1.2"
        assert root.attributes["mlflow.clientRequestId"] == "req-42"
    else:  # OpenInference's metadata object: the server keeps it as a root span attribute
        metadata = root.attributes["metadata"]
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        user_metadata = {k: v for k, v in metadata.items() if not k.startswith("flowtel.")}  # cost notes
        assert user_metadata == {"app": "demo", "app.version": "1.2", "client_request_id": "req-42"}
    if conventions == "mlflow":
        assert root.inputs == {"question": QUESTION}
        assert llm.inputs == {"messages": [{"role": "user", "content": QUESTION}], "model": "gpt-4o-mini"}
        assert llm.outputs["choices"][0]["message"]["content"] == "Paris"
    else:
        assert llm.name == "chat gpt-4o-mini"
        assert llm.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        # The server renders the semconv messages as the span's inputs/outputs.
        assert llm.inputs == [{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]
