"""OTLP export to real receivers (the official OTLP gRPC service, and OTLP/HTTP protobuf):
every span arrives exactly once, attribute by attribute, in each attribute convention."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.exporters import InMemoryExporter, OtlpExporter
from flowtel.tracing import _runtime
from tests._servers.llm import ScriptedLLMServer
from tests._servers.otlp_receivers import OtlpReceiver, ReceivedSpan

QUESTION = "Weather in Paris?"
USAGE = {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
CHOICES = [{"index": 0, "message": {"role": "assistant", "content": "Calling tool"}, "finish_reason": "tool_calls"}]


@pytest.fixture(params=["grpc", "http/protobuf"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def receiver(protocol: str, request: pytest.FixtureRequest) -> OtlpReceiver:
    name = "otlp_grpc_receiver" if protocol == "grpc" else "otlp_http_receiver"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def memory() -> InMemoryExporter:
    return InMemoryExporter()


def send_to(receiver: OtlpReceiver, protocol: str, memory: InMemoryExporter | None = None, **options: Any) -> OtlpExporter:
    """Route traces to the receiver (and to memory, to compare with what flowtel recorded).
    MLflow's conventions unless ``conventions`` says otherwise (a plain collector gets ``genai``
    by default: test_default_conventions_follow_the_receiver)."""
    options.setdefault("conventions", "mlflow")
    exporter = OtlpExporter(receiver.endpoint, protocol=protocol, **options)
    flowtel.tracing.set_destination(exporter, *([memory] if memory is not None else []))
    return exporter


def get_weather(city: str) -> str:
    return f"Sunny in {city}"


@flowtel.trace(span_type=SpanType.AGENT)
def agent(question: str) -> str:
    flowtel.update_current_trace(
        tags={"app": "demo"}, metadata={"app.version": "1.2"}, client_request_id="req-42",
        session_id="sess-1", user="alice",
    )
    with flowtel.start_span("chat", span_type=SpanType.CHAT_MODEL) as span:
        span.set_inputs({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]})
        span.set_attribute("mlflow.chat.tokenUsage", USAGE)
        span.add_event(SpanEvent("retry", attributes={"attempt": 1, "ok": True}))
        span.set_outputs({"choices": CHOICES})
    return flowtel.trace(span_type=SpanType.TOOL)(get_weather)("Paris")


def received_once(receiver: OtlpReceiver, n: int) -> dict[str, ReceivedSpan]:
    """Wait for ``n`` spans; each must have arrived exactly once. Returns them by name."""
    spans = receiver.wait_for_spans(n)
    counts = Counter(s.span_id for s in spans)
    assert len(spans) == n and set(counts.values()) == {1}, f"duplicated or extra spans: {counts}"
    return {s.name: s for s in spans}


# -- MLflow conventions ---------------------------------------------------------------------------
def test_trace_arrives_attribute_by_attribute(
    receiver: OtlpReceiver, protocol: str, memory: InMemoryExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "weather-service")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.name=overridden")
    send_to(receiver, protocol, memory)

    assert agent(QUESTION) == "Sunny in Paris"
    assert flowtel.flush(10)

    spans = received_once(receiver, 3)
    [trace] = memory.traces
    root, chat, tool = spans["agent"], spans["chat"], spans["get_weather"]
    tr = trace.info.trace_id
    assert {s.trace_id for s in spans.values()} == {tr.removeprefix("tr-")}
    assert {s.span_id: s.parent_span_id for s in spans.values()} == {s.span_id: s.parent_id for s in trace.data.spans}
    assert (root.parent_span_id, chat.parent_span_id, tool.parent_span_id) == (None, root.span_id, root.span_id)

    metadata = trace.info.trace_metadata
    # mlflow.traceRequestId is not sent: it is the OTLP trace id (MLflow's server derives it).
    assert root.attributes == {
        "mlflow.spanType": "AGENT",
        "mlflow.spanFunctionName": "agent",
        "mlflow.spanInputs": json.dumps({"question": QUESTION}),  # objects travel as their JSON text
        "mlflow.spanOutputs": "Sunny in Paris",  # strings, numbers and booleans natively
        "mlflow.spanLogLevel": 20,
        # trace-level data, on the root
        "mlflow.traceTag.mlflow.traceName": "agent",
        "mlflow.traceTag.app": "demo",
        "user.id": "alice",
        "session.id": "sess-1",
        "mlflow.clientRequestId": "req-42",
        "mlflow.traceMetadata.app.version": "1.2",
        "mlflow.traceMetadata.flowtel.trace.unpricedSpans": "1",  # the chat span names no model
        # where the code ran: always user/source; git fields only when the source is in a repository
        **{f"mlflow.traceMetadata.{k}": metadata[k] for k in (
            "mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit",
            "mlflow.source.git.branch", "mlflow.source.git.repoURL",
        ) if metadata.get(k)},
    }
    assert chat.attributes == {
        "mlflow.spanType": "CHAT_MODEL",
        "mlflow.spanInputs": json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": QUESTION}]}),
        "mlflow.chat.tokenUsage": json.dumps(USAGE),
        "mlflow.spanOutputs": json.dumps({"choices": CHOICES}),
        "mlflow.spanLogLevel": 20,
        "flowtel.llm.costUnpriced": "no model name on the span (mlflow.llm.model)",
    }
    assert chat.events[0]["name"] == "retry" and chat.events[0]["attributes"] == {"attempt": 1, "ok": True}
    assert tool.attributes["mlflow.spanInputs"] == '{"city": "Paris"}'
    for span in spans.values():
        flowtel_span = next(s for s in trace.data.spans if s.span_id == span.span_id)
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (flowtel_span.start_time_ns, flowtel_span.end_time_ns)
        assert (span.kind, span.status_code) == ("SPAN_KIND_INTERNAL", "STATUS_CODE_OK")
        assert span.resource_attributes["service.name"] == "weather-service"
        assert span.resource_attributes["deployment.environment"] == "test"
        assert span.resource_attributes["telemetry.sdk.name"] == "flowtel"
        assert span.scope_name == "flowtel"
    # Derived metadata is not sent: the backend recomputes it, and num_spans would mislead it.
    assert not any("sizeStats" in k or "traceInputs" in k or "tokenUsage" in k for k in root.attributes if k != "mlflow.chat.tokenUsage")


def test_errors_and_json_looking_strings(receiver: OtlpReceiver, protocol: str) -> None:
    send_to(receiver, protocol)

    @flowtel.trace
    def fails(x: int) -> None:
        raise ValueError(f"bad {x}")

    @flowtel.trace
    def quoted() -> str:
        return '{"looks": "like json"}'

    with pytest.raises(ValueError):
        fails(1)
    quoted()
    assert flowtel.flush(10)

    spans = received_once(receiver, 2)
    failed = spans["fails"]
    assert (failed.status_code, failed.status_message) == ("STATUS_CODE_ERROR", "ValueError: bad 1")
    [event] = failed.events
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "bad 1"
    assert failed.attributes["mlflow.spanLogLevel"] == 40
    # A string whose text is JSON keeps its JSON encoding: MLflow's server strips exactly one layer.
    assert spans["quoted"].attributes["mlflow.spanOutputs"] == json.dumps('{"looks": "like json"}')


def test_a_trace_inside_an_application_span_keeps_its_parent(receiver: OtlpReceiver, protocol: str, memory: InMemoryExporter) -> None:
    send_to(receiver, protocol, memory)
    app_tracer = TracerProvider().get_tracer("app")  # the application's own OTel pipeline

    with app_tracer.start_as_current_span("GET /weather") as app_span:
        agent(QUESTION)
    assert flowtel.flush(10)

    spans = received_once(receiver, 3)
    context = app_span.get_span_context()
    assert spans["agent"].trace_id == f"{context.trace_id:032x}"
    assert spans["agent"].parent_span_id == f"{context.span_id:016x}"  # one tree in the OTLP backend
    [trace] = memory.traces
    assert trace.data.spans[0].parent_id is None  # while the MLflow view starts at flowtel's root


def test_headers_and_compression_reach_the_receiver(receiver: OtlpReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme")
    send_to(receiver, protocol, headers={"Authorization": "Bearer abc"}, compression="gzip")

    agent(QUESTION)
    assert flowtel.flush(10)

    [request] = receiver.wait_for_requests(1)
    assert request.headers["x-tenant"] == "acme"
    assert request.headers["authorization"] == "Bearer abc"
    if protocol == "http/protobuf":
        assert (request.content_type, request.content_encoding) == ("application/x-protobuf", "gzip")


def test_retryable_failure_is_retried_by_the_pipeline_and_arrives_once(receiver: OtlpReceiver, protocol: str) -> None:
    send_to(receiver, protocol)
    receiver.fail_next(1, 503)

    agent(QUESTION)
    assert flowtel.flush(10)

    received_once(receiver, 3)
    assert len(receiver.attempts) == 2  # one refused attempt (no retry inside the SDK), one accepted
    (stats,) = flowtel.get_delivery_stats()["destinations"]
    assert (stats["sent"], stats["retried"], stats["dropped"]) == (1, 1, {})


def test_rejected_trace_is_dropped_with_the_reason(receiver: OtlpReceiver, protocol: str) -> None:
    send_to(receiver, protocol)
    receiver.reject_if(lambda span: span.name == "poison")

    with flowtel.start_span("poison"):
        pass
    agent(QUESTION)
    assert flowtel.flush(10)

    assert set(received_once(receiver, 3)) == {"agent", "chat", "get_weather"}
    (stats,) = flowtel.get_delivery_stats()["destinations"]
    reason = "grpc_invalid_argument" if protocol == "grpc" else "http_400"
    assert (stats["sent"], stats["dropped"]) == (1, {reason: 1})


# -- GenAI conventions ----------------------------------------------------------------------------
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather of a city.",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def _openai_agent(client: Any, llm_server: ScriptedLLMServer) -> None:
    llm_server.enqueue_openai_chat(
        content="Sunny, 21 C", model="gpt-4o-mini-2024-07-18", id="chatcmpl-1", finish_reason="stop",
        usage={"prompt_tokens": 20, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8}},
    )

    @flowtel.trace(span_type=SpanType.AGENT)
    def weather_agent(question: str) -> str:
        flowtel.update_current_trace(session_id="sess-9")
        completion = client.chat.completions.create(
            model="gpt-4o-mini", temperature=0.2, max_tokens=50, tools=[WEATHER_TOOL],
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        )
        return str(completion.choices[0].message.content)

    weather_agent(QUESTION)


@pytest.mark.usefixtures("openai_autolog")
def test_genai_conventions_openai_chat(
    receiver: OtlpReceiver, protocol: str, llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    send_to(receiver, protocol, conventions="genai")
    _openai_agent(openai_client, llm_server)
    assert flowtel.flush(10)

    spans = received_once(receiver, 2)
    chat, root = spans["chat gpt-4o-mini"], spans["invoke_agent weather_agent"]
    assert chat.kind == "SPAN_KIND_CLIENT"
    attributes = chat.attributes
    assert {k: v for k, v in attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": 20,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 8,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "Sunny, 21 C"}], "finish_reason": "stop"}]
        ),
        "gen_ai.tool.definitions": json.dumps([{"type": "function", **WEATHER_TOOL["function"]}]),
    }
    # What the semconv carries is not sent again under MLflow's keys.
    replaced = {"mlflow.spanInputs", "mlflow.spanOutputs", "mlflow.spanType", "mlflow.chat.tokenUsage",
                "mlflow.llm.model", "mlflow.llm.provider", "mlflow.chat.tools", "mlflow.message.format",
                "mlflow.traceRequestId", "mlflow.spanLogLevel", "model", "temperature", "max_tokens", "tools"}
    assert not replaced & set(attributes)
    assert_content_once(chat, [QUESTION, "Be brief.", "Sunny, 21 C", "Weather of a city."])
    assert root.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert root.attributes["gen_ai.agent.name"] == "weather_agent"
    assert (root.attributes["gen_ai.conversation.id"], root.attributes["session.id"]) == ("sess-9", "sess-9")


@pytest.mark.usefixtures("anthropic_autolog")
def test_genai_conventions_anthropic_messages(
    otlp_http_receiver: OtlpReceiver, llm_server: ScriptedLLMServer, anthropic_client: Any
) -> None:
    send_to(otlp_http_receiver, "http/protobuf", conventions="genai")
    llm_server.enqueue_anthropic_message(
        [{"type": "text", "text": "Let me check."},
         {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        model="claude-haiku-4-5-20251001", id="msg_1", stop_reason="tool_use",
        usage={"input_tokens": 30, "output_tokens": 9},
    )
    anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert flowtel.flush(10)

    [span] = received_once(otlp_http_receiver, 1).values()
    assert span.name == "chat claude-haiku-4-5"
    attributes = span.attributes
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.response.model"] == "claude-haiku-4-5-20251001"
    assert attributes["gen_ai.response.finish_reasons"] == ["tool_use"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (30, 9)
    assert json.loads(attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [{
        "role": "assistant", "finish_reason": "tool_use",
        "parts": [{"type": "text", "content": "Let me check."},
                  {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    }]
    assert "mlflow.spanInputs" not in attributes and "mlflow.spanOutputs" not in attributes


@pytest.mark.usefixtures("openai_autolog")
def test_genai_conventions_openai_responses(
    otlp_http_receiver: OtlpReceiver, llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    if not hasattr(openai_client, "responses"):
        pytest.skip("the Responses API needs openai>=1.66")
    send_to(otlp_http_receiver, "http/protobuf", conventions="genai")
    llm_server.enqueue_openai_responses(
        "Checking.", function_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "call_id": "call_1"}],
        model="gpt-4.1-mini-2025-04-14", id="resp_1",
    )
    openai_client.responses.create(model="gpt-4.1-mini", instructions="Be brief.", input=QUESTION)
    assert flowtel.flush(10)

    [span] = received_once(otlp_http_receiver, 1).values()
    attributes = span.attributes
    assert (span.name, attributes["gen_ai.response.id"]) == ("chat gpt-4.1-mini", "resp_1")
    assert attributes["gen_ai.response.finish_reasons"] == ["completed"]
    assert json.loads(attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}
    ]
    assert json.loads(attributes["gen_ai.output.messages"]) == [{
        "role": "assistant", "finish_reason": "completed",
        "parts": [{"type": "text", "content": "Checking."},
                  {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
    }]
    assert_content_once(span, [QUESTION, "Be brief.", "Checking."])


def test_genai_conventions_tool_span_and_content_without_a_semconv_place(otlp_http_receiver: OtlpReceiver) -> None:
    send_to(otlp_http_receiver, "http/protobuf", conventions="genai")

    @flowtel.trace(span_type=SpanType.LLM)
    def local_model(prompt: str) -> str:  # content in no known chat format
        return prompt.upper()

    @flowtel.trace(span_type=SpanType.CHAIN)
    def pipeline(city: str) -> str:
        flowtel.trace(span_type=SpanType.TOOL)(get_weather)(city)
        return local_model(city)

    pipeline("Paris")
    assert flowtel.flush(10)

    spans = received_once(otlp_http_receiver, 3)
    tool = spans["execute_tool get_weather"]
    assert {k: v for k, v in tool.attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": '"Sunny in Paris"',
    }
    assert tool.attributes["openinference.span.kind"] == "TOOL"
    assert "mlflow.spanInputs" not in tool.attributes
    llm = spans["text_completion"]  # a plain-text answer is the assistant's message; the rest OpenInference's
    assert json.loads(llm.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "PARIS"}], "finish_reason": "stop"}
    ]
    assert (llm.attributes["input.value"], llm.attributes["input.mime_type"]) == ('{"prompt": "Paris"}', "application/json")
    assert "mlflow.spanInputs" not in llm.attributes and "output.value" not in llm.attributes
    chain = spans["pipeline"]  # no GenAI operation: OpenInference's kind and generic input/output
    assert chain.attributes["openinference.span.kind"] == "CHAIN" and "gen_ai.operation.name" not in chain.attributes
    assert (chain.attributes["input.value"], chain.attributes["output.value"]) == ('{"city": "Paris"}', "PARIS")
    assert chain.attributes["output.mime_type"] == "text/plain"


@pytest.mark.usefixtures("openai_autolog")
def test_both_conventions_add_no_content(
    otlp_http_receiver: OtlpReceiver, llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    mlflow_receiver = otlp_http_receiver
    from tests._servers.otlp_receivers import OtlpHttpReceiver

    with OtlpHttpReceiver() as both_receiver:
        flowtel.tracing.set_destination(
            OtlpExporter(mlflow_receiver.endpoint, conventions="mlflow"),
            OtlpExporter(both_receiver.endpoint, conventions="both"),
        )
        _openai_agent(openai_client, llm_server)
        assert flowtel.flush(10)
        plain = received_once(mlflow_receiver, 2)["Completions"]
        both = received_once(both_receiver, 2)["chat gpt-4o-mini"]

    # Every MLflow attribute, unchanged, plus the gen_ai.* attributes that carry no content.
    added = ("gen_ai.", "llm.", "openinference.")
    assert {k: v for k, v in both.attributes.items() if not k.startswith(added)} == plain.attributes
    assert {k: v for k, v in both.attributes.items() if k.startswith(("llm.", "openinference."))} == {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
        "llm.token_count.prompt": 20, "llm.token_count.completion": 5, "llm.token_count.total": 25,
        "llm.token_count.prompt_details.cache_read": 8,
    }
    genai = {k for k in both.attributes if k.startswith("gen_ai.")}
    assert genai == {
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.request.temperature",
        "gen_ai.request.max_tokens", "gen_ai.response.model", "gen_ai.response.id", "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
    }
    for text in (QUESTION, "Be brief.", "Sunny, 21 C", "Weather of a city."):
        assert occurrences(both, text) == occurrences(plain, text), text
    assert occurrences(both, QUESTION) == 1


def occurrences(span: ReceivedSpan, text: str) -> int:
    return sum(str(value).count(text) for value in span.attributes.values())


def assert_content_once(span: ReceivedSpan, texts: list[str]) -> None:
    for text in texts:
        assert occurrences(span, text) == 1, f"{text!r} appears {occurrences(span, text)} times"


def test_destinations_are_rebuilt_from_the_environment(otlp_http_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.base_url)  # base URL: /v1/traces added
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("FLOWTEL_OTLP_CONVENTIONS", "both")
    _runtime.reset()

    agent(QUESTION)
    assert flowtel.flush(10)

    spans = received_once(otlp_http_receiver, 3)
    assert spans["chat gpt-4o-mini"].attributes["gen_ai.operation.name"] == "chat"
    assert spans["invoke_agent agent"].resource_attributes["service.name"] == "from-env"
    assert flowtel.get_trace(flowtel.get_last_active_trace_id()) is not None  # the local store got it too
