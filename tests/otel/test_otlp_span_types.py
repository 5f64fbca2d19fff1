"""Every span type in every OTLP convention, at a real OTLP receiver: each span gets a backend
kind, its inputs and outputs arrive once (in the conventions' place for them), streams send a
bounded summary, tags/metadata go where backends index them, and feedback and expectations
travel as the semconv's ``gen_ai.evaluation.result`` events."""

from __future__ import annotations

import json
from typing import Any

import pytest

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.entities import Document
from flowtel.exporters import OtlpExporter
from flowtel.exporters.otlp._exporter import default_conventions
from flowtel.tracing import _runtime
from tests._servers.otlp_receivers import OtlpReceiver, ReceivedSpan

QUESTION = "Which city hosts the Louvre?"
ANSWER = "The Louvre is in Paris."
DOC_TEXT = "The Louvre museum is located in Paris, France."
CHUNKS = ["The ", "Louvre ", "is ", "in ", "Paris."]
# span name -> (span type, OpenInference kind, GenAI operation or None)
TYPES = {
    "agent": (SpanType.AGENT, "AGENT", "invoke_agent"),
    "plan": (SpanType.CHAIN, "CHAIN", None),
    "search": (SpanType.RETRIEVER, "RETRIEVER", "retrieval"),
    "rerank": (SpanType.RERANKER, "RERANKER", None),
    "embed": (SpanType.EMBEDDING, "EMBEDDING", "embeddings"),
    "lookup": (SpanType.TOOL, "TOOL", "execute_tool"),
    "llm": (SpanType.CHAT_MODEL, "LLM", "chat"),
    "parse": (SpanType.PARSER, "CHAIN", None),
    "misc": (SpanType.UNKNOWN, "CHAIN", None),
    "remember": (SpanType.MEMORY, "CHAIN", None),
}


def run_agent() -> str:
    """One trace with every span type; feedback and an expectation logged while it runs."""
    with flowtel.start_span("agent", span_type=SpanType.AGENT) as agent:
        agent.set_inputs(QUESTION)
        flowtel.update_current_trace(tags={"team": "search"}, metadata={"app.version": "2.0"},
                                     session_id="sess-7", user="bob", client_request_id="req-7")
        with flowtel.start_span("plan", span_type=SpanType.CHAIN) as span:
            span.set_inputs({"question": QUESTION})
            span.set_outputs({"steps": ["search", "answer"]})
        with flowtel.start_span("search", span_type=SpanType.RETRIEVER) as span:
            span.set_inputs({"query": "louvre location"})
            span.set_outputs([Document(page_content=DOC_TEXT, metadata={"doc_uri": "wiki/louvre"}, id="doc-1")])
        with flowtel.start_span("rerank", span_type=SpanType.RERANKER) as span:
            span.set_inputs({"query": "louvre location", "top_n": 1})
            span.set_outputs([{"index": 0, "relevance": 0.93}])
        with flowtel.start_span("embed", span_type=SpanType.EMBEDDING) as span:
            span.set_inputs({"input": "embed me please"})
            span.set_outputs([[0.125, 0.5]])
        with flowtel.start_span("lookup", span_type=SpanType.TOOL) as span:
            span.set_inputs({"museum": "Louvre"})
            span.set_outputs({"city": "Paris"})
        with flowtel.start_span("llm", span_type=SpanType.CHAT_MODEL) as llm:
            llm.set_inputs({"messages": [{"role": "user", "content": QUESTION}], "model": "local-7b"})
            llm.set_attribute("mlflow.llm.model", "local-7b")
            llm.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18})
            for index, chunk in enumerate(CHUNKS):
                llm.add_event(SpanEvent(f"mlflow.chunk.item.{index}", attributes={"mlflow.chunk.value": chunk}))
            llm.set_outputs(ANSWER)  # a plain string, as in the README's quickstart
            llm_span_id = llm.span_id
        with flowtel.start_span("parse", span_type=SpanType.PARSER) as span:
            span.set_inputs("raw: Paris")
            span.set_outputs({"city": "Paris"})
        with flowtel.start_span("misc", span_type=SpanType.UNKNOWN) as span:
            span.set_inputs({"n": 1})
            span.set_outputs("unknown step output")
        with flowtel.start_span("remember", span_type=SpanType.MEMORY) as span:
            span.set_inputs({"key": "last_city"})
            span.set_outputs(None)
        trace_id = agent.trace_id
        flowtel.log_feedback(trace_id=trace_id, name="helpful", value=True, rationale="Answers the question.")
        flowtel.log_feedback(trace_id=trace_id, name="fluency", value=0.75, span_id=llm_span_id)
        flowtel.log_expectation(trace_id=trace_id, name="expected_answer", value="Paris")
        agent.set_outputs(ANSWER)
    return trace_id


def export_with(receiver: OtlpReceiver, conventions: str) -> dict[str, ReceivedSpan]:
    flowtel.tracing.set_destination(OtlpExporter(receiver.endpoint, conventions=conventions))  # type: ignore[arg-type]
    run_agent()
    assert flowtel.flush(10)
    spans = receiver.wait_for_spans(len(TYPES))
    assert len(spans) == len(TYPES)
    return {_own_name(s): s for s in spans}


def _own_name(span: ReceivedSpan) -> str:
    # genai names model/agent/tool spans as the semconv does ("chat local-7b", "invoke_agent agent", ...)
    semconv_names = {"chat local-7b": "llm", "embeddings": "embed"}
    if span.name in semconv_names:
        return semconv_names[span.name]
    for name in TYPES:
        if span.name == name or span.name.endswith(f" {name}"):
            return name
    raise AssertionError(span.name)


def occurrences(span: ReceivedSpan, text: str) -> int:
    values = [*span.attributes.values()]
    values += [v for event in span.events for v in event["attributes"].values()]
    return sum(str(value).count(text) for value in values)


@pytest.mark.parametrize("conventions", ["genai", "both", "mlflow"])
def test_every_span_type_has_a_kind_and_its_content_once(otlp_http_receiver: OtlpReceiver, conventions: str) -> None:
    spans = export_with(otlp_http_receiver, conventions)
    for name, (span_type, kind, operation) in TYPES.items():
        attributes = spans[name].attributes
        if conventions == "mlflow":
            assert attributes["mlflow.spanType"] == span_type
            assert "openinference.span.kind" not in attributes and "gen_ai.operation.name" not in attributes
        else:
            assert attributes["openinference.span.kind"] == kind, name
            assert attributes.get("gen_ai.operation.name") == operation, name
    # Content travels once per span, whatever the conventions.
    for name, text in [("agent", QUESTION), ("llm", ANSWER), ("search", DOC_TEXT), ("embed", "embed me please"),
                       ("lookup", "Louvre"), ("parse", "raw: Paris"), ("misc", "unknown step output")]:
        assert occurrences(spans[name], text) == 1, (name, text, spans[name].attributes)


def test_genai_puts_each_input_and_output_where_backends_read_it(otlp_http_receiver: OtlpReceiver) -> None:
    spans = export_with(otlp_http_receiver, "genai")
    agent = spans["agent"].attributes  # the trace list's Input/Output columns read the root's
    assert (agent["input.value"], agent["input.mime_type"]) == (QUESTION, "text/plain")
    assert (agent["output.value"], agent["output.mime_type"]) == (ANSWER, "text/plain")
    assert agent["gen_ai.agent.name"] == "agent"
    chain = spans["plan"].attributes
    assert json.loads(chain["input.value"]) == {"question": QUESTION} and chain["input.mime_type"] == "application/json"
    assert json.loads(chain["output.value"]) == {"steps": ["search", "answer"]}
    search = spans["search"].attributes  # no score: OpenInference's document list (semconv needs one)
    assert search["gen_ai.retrieval.query.text"] == "louvre location"
    assert (search["retrieval.documents.0.document.id"], search["retrieval.documents.0.document.content"]) == (
        "doc-1", DOC_TEXT)
    assert json.loads(search["retrieval.documents.0.document.metadata"]) == {"doc_uri": "wiki/louvre"}
    tool = spans["lookup"].attributes
    assert (tool["gen_ai.tool.name"], tool["gen_ai.tool.call.arguments"], tool["gen_ai.tool.call.result"]) == (
        "lookup", '{"museum": "Louvre"}', '{"city": "Paris"}')
    llm = spans["llm"]
    assert json.loads(llm.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]
    assert json.loads(llm.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}]
    assert (llm.attributes["llm.token_count.prompt"], llm.attributes["llm.token_count.completion"]) == (11, 7)
    assert llm.attributes["llm.model_name"] == "local-7b"
    assert json.loads(spans["embed"].attributes["input.value"]) == {"input": "embed me please"}
    for name in TYPES:  # MLflow's copies of the content are not sent again
        assert "mlflow.spanInputs" not in spans[name].attributes and "mlflow.spanOutputs" not in spans[name].attributes


def test_genai_sends_a_stream_summary_not_one_event_per_chunk(otlp_http_receiver: OtlpReceiver) -> None:
    llm = export_with(otlp_http_receiver, "genai")["llm"]
    events = [e for e in llm.events if e["name"] != "gen_ai.evaluation.result"]
    assert [(e["name"], e["attributes"]) for e in events] == [
        ("flowtel.stream.first_chunk", {"flowtel.stream.chunk_events": len(CHUNKS)})
    ]


def test_mlflow_keeps_the_chunk_events(otlp_http_receiver: OtlpReceiver) -> None:
    llm = export_with(otlp_http_receiver, "mlflow")["llm"]
    assert [e["name"] for e in llm.events] == [f"mlflow.chunk.item.{i}" for i in range(len(CHUNKS))]


def test_tags_metadata_session_and_user_where_backends_index_them(otlp_http_receiver: OtlpReceiver) -> None:
    root = export_with(otlp_http_receiver, "genai")["agent"].attributes
    metadata = {k: v for k, v in json.loads(root["metadata"]).items() if not k.startswith("flowtel.")}  # cost notes
    assert metadata == {"team": "search", "app.version": "2.0", "client_request_id": "req-7"}
    assert root["tag.tags"] == ["team=search"]
    assert (root["session.id"], root["user.id"], root["gen_ai.conversation.id"]) == ("sess-7", "bob", "sess-7")
    assert root["mlflow.traceTag.team"] == "search"  # an MLflow server reads tags back whatever the conventions
    assert not any(k.startswith("mlflow.traceMetadata.") for k in root)


@pytest.mark.parametrize("conventions", ["genai", "both"])
def test_feedback_and_expectations_travel_as_evaluation_events(otlp_http_receiver: OtlpReceiver, conventions: str) -> None:
    spans = export_with(otlp_http_receiver, conventions)

    def evaluations(name: str) -> list[dict[str, Any]]:
        return [e["attributes"] for e in spans[name].events if e["name"] == "gen_ai.evaluation.result"]

    helpful, expected = evaluations("agent")  # trace-level ones on the root span
    assert helpful["gen_ai.evaluation.name"] == "helpful"
    assert (helpful["gen_ai.evaluation.score.value"], helpful["gen_ai.evaluation.score.label"]) == (1.0, "true")
    assert helpful["gen_ai.evaluation.explanation"] == "Answers the question."
    assert (helpful["flowtel.assessment.kind"], helpful["flowtel.assessment.source_type"]) == ("feedback", "CODE")
    assert expected["gen_ai.evaluation.name"] == "expected_answer"
    assert (expected["flowtel.assessment.kind"], expected["gen_ai.evaluation.score.label"]) == ("expectation", "Paris")
    [fluency] = evaluations("llm")  # a span's own assessment on that span
    assert (fluency["gen_ai.evaluation.name"], fluency["gen_ai.evaluation.score.value"]) == ("fluency", 0.75)


def test_mlflow_conventions_send_no_evaluation_events(otlp_http_receiver: OtlpReceiver) -> None:
    spans = export_with(otlp_http_receiver, "mlflow")
    assert not [e for s in spans.values() for e in s.events if e["name"] == "gen_ai.evaluation.result"]


def test_default_conventions_follow_the_receiver(otlp_http_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    assert OtlpExporter(otlp_http_receiver.endpoint).conventions == "genai"  # a collector, Phoenix, Langfuse...
    mlflow = OtlpExporter(otlp_http_receiver.endpoint, headers={"x-mlflow-experiment-id": "1"})
    assert mlflow.conventions == "mlflow" == default_conventions(mlflow.settings)  # an MLflow server
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-mlflow-experiment-id=3")
    assert OtlpExporter(otlp_http_receiver.endpoint).conventions == "mlflow"
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "both")
    assert OtlpExporter(otlp_http_receiver.endpoint).conventions == "both"  # an explicit choice wins
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "openinference")
    with pytest.raises(flowtel.FlowtelException, match="auto, mlflow, genai, both"):
        OtlpExporter(otlp_http_receiver.endpoint)


def test_only_the_standard_variables_give_the_genai_export(otlp_http_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.base_url)
    monkeypatch.setenv("FLOWTEL_OTLP_EXPORT", "auto")
    _runtime.reset()
    run_agent()
    assert flowtel.flush(10)
    spans = {_own_name(s): s for s in otlp_http_receiver.wait_for_spans(len(TYPES))}
    assert spans["llm"].name == "chat local-7b" and spans["agent"].attributes["openinference.span.kind"] == "AGENT"
