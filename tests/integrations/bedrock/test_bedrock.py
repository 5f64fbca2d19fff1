"""flowtel.bedrock.autolog(): real ``boto3`` ``bedrock-runtime`` clients over real HTTP (JSON and the
AWS event-stream framing) to the local scripted endpoint, captured with ``flowtel_traces``."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest

import flowtel
from flowtel.integrations._registry import is_patched
from flowtel.tracing._providers import conventions_for
from tests._servers.llm import BEDROCK_CONVERSE_STREAM, BEDROCK_INVOKE_STREAM, ScriptedLLMServer
from tests.integrations._helpers import assert_no_secret, chunk_values, exception_event, only_span, tree

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402

ACCESS_KEY = "AKIAFLOWTELTEST0001"
SECRET_KEY = "flowtel-test-secret-access-key-0123456789"
SESSION_TOKEN = "flowtel-test-session-token-abcdef"
CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
USER = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
WEATHER = {"toolSpec": {"name": "get_weather", "description": "Get the weather for a city.",
                        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}


def _client(server: ScriptedLLMServer) -> Any:
    return boto3.client(
        "bedrock-runtime", endpoint_url=server.bedrock_endpoint_url, region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, aws_session_token=SESSION_TOKEN,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def early_client(llm_server: ScriptedLLMServer) -> Any:
    """A client created before autolog is switched on."""
    return _client(llm_server)


@pytest.fixture(autouse=True)
def bedrock_autolog(early_client: Any) -> Iterator[None]:
    flowtel.bedrock.autolog()
    try:
        yield
    finally:
        flowtel.bedrock.autolog(disable=True)


def _usage(span: Any) -> dict[str, int]:
    return span.attributes["mlflow.chat.tokenUsage"]


def _secrets(trace: Any) -> None:
    assert_no_secret(trace, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)


# -- converse ---------------------------------------------------------------------------------------
def test_converse_is_one_whole_span(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_bedrock("Paris.", usage={"inputTokens": 14, "outputTokens": 2, "cacheReadInputTokens": 5,
                                                "cacheWriteInputTokens": 3})
    response = _client(llm_server).converse(
        modelId=CLAUDE, messages=USER, system=[{"text": "Be brief."}], inferenceConfig={"temperature": 0.1},
        toolConfig={"tools": [WEATHER]},
    )
    [trace] = flowtel_traces.traces
    span = only_span(trace)
    assert (span.name, span.span_type, span.status.status_code.value) == ("BedrockRuntime.converse", "CHAT_MODEL", "OK")
    assert span.inputs["modelId"] == CLAUDE and span.inputs["messages"] == USER
    assert span.outputs == {k: v for k, v in response.items() if k != "ResponseMetadata"}
    assert span.attributes["mlflow.message.format"] == "bedrock"
    assert span.attributes["mlflow.llm.model"] == CLAUDE
    assert span.attributes["mlflow.llm.provider"] == "bedrock"
    assert span.attributes["mlflow.chat.tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    usage = {"input_tokens": 14, "output_tokens": 2, "total_tokens": 16}
    if "cacheReadInputTokens" in response["usage"]:  # botocore's model has the cache fields since 1.35
        usage.update(cache_read_input_tokens=5, cache_creation_input_tokens=3)
    assert _usage(span) == usage
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"]) == usage
    conventions = conventions_for("bedrock").converter(span.inputs, span.outputs, True)
    assert conventions.inputs(span.inputs) == (
        [{"type": "text", "content": "Be brief."}],
        [{"role": "user", "parts": [{"type": "text", "content": "What is the capital of France?"}]}])
    assert conventions.outputs(span.outputs) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Paris."}], "finish_reason": "end_turn"}]
    assert "authorization" in llm_server.last_request().headers  # the call was signed
    _secrets(trace)


def test_clients_created_before_autolog_are_traced_and_nest(
    llm_server: ScriptedLLMServer, early_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_bedrock(tool_uses=[{"name": "get_weather", "input": {"city": "Paris"}, "id": "t1"}])

    @flowtel.trace(span_type="AGENT")
    def agent() -> Any:
        return early_client.converse(modelId=CLAUDE, messages=USER, toolConfig={"tools": [WEATHER]})

    response = agent()
    [trace] = flowtel_traces.traces
    assert tree(trace) == [(0, "agent", "AGENT"), (1, "BedrockRuntime.converse", "CHAT_MODEL")]
    assert response["stopReason"] == "tool_use"
    child = [s for s in trace.data.spans if s.parent_id][0]
    assert child.outputs["output"]["message"]["content"] == [
        {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}]


def test_error_is_recorded_and_reraised_unchanged(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_error(400, message="Malformed input request")
    client = _client(llm_server)
    with pytest.raises(ClientError) as raised:
        client.converse(modelId=CLAUDE, messages=USER)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "ERROR"
    assert exception_event(span)["exception.type"].endswith("ValidationException")
    _secrets(flowtel_traces.last)


def test_other_services_and_operations_are_not_traced(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    other = boto3.client("sts", endpoint_url=llm_server.bedrock_endpoint_url, region_name="us-east-1",
                         aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                         config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(Exception):  # not scripted: the fake answers 404 in JSON, STS expects XML
        other.get_caller_identity()
    client = _client(llm_server)
    if hasattr(client, "get_async_invoke"):  # another bedrock-runtime operation (botocore>=1.35.70)
        with pytest.raises(ClientError):
            client.get_async_invoke(invocationArn="arn:aws:bedrock:us-east-1:123:async-invoke/x")
    assert flowtel_traces.traces == []


# -- converse_stream --------------------------------------------------------------------------------
def test_converse_stream_is_rebuilt(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_bedrock(["The ", "capital ", "is ", "Paris."], reasoning="Easy one.",
                               tool_uses=[{"name": "get_weather", "input": {"city": "Paris"}, "id": "t1"}],
                               usage={"inputTokens": 10, "outputTokens": 7}, route=BEDROCK_CONVERSE_STREAM)
    response = _client(llm_server).converse_stream(modelId=CLAUDE, messages=USER)
    events = []
    for event in response["stream"]:
        assert flowtel_traces.traces == []  # open while the user reads
        events.append(event)
    span = only_span(flowtel_traces.last)
    assert span.name == "BedrockRuntime.converse_stream"
    reasoning = [{"reasoningContent": {"reasoningText": {"text": "Easy one."}}}] if any(
        "reasoningContent" in e.get("contentBlockDelta", {}).get("delta", {}) for e in events) else []  # botocore>=1.36
    assert span.outputs["output"]["message"]["content"] == [
        *reasoning, {"text": "The capital is Paris."},
        {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}}]
    assert span.outputs["stopReason"] == "tool_use"
    assert _usage(span) == {"input_tokens": 10, "output_tokens": 7, "total_tokens": 17}
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"
    assert span.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert chunk_values(span) == events
    _secrets(flowtel_traces.last)


def test_converse_stream_closed_dropped_and_broken(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    client = _client(llm_server)
    llm_server.enqueue_bedrock(["one ", "two ", "three"], route=BEDROCK_CONVERSE_STREAM)
    stream = client.converse_stream(modelId=CLAUDE, messages=USER)["stream"]
    next(iter(stream))
    stream.close()
    llm_server.enqueue_bedrock(["one ", "two ", "three"], route=BEDROCK_CONVERSE_STREAM)
    dropped = client.converse_stream(modelId=CLAUDE, messages=USER)
    next(iter(dropped["stream"]))
    del dropped
    gc.collect()
    llm_server.enqueue_bedrock(["one ", "two ", "three"], error_after=2, route=BEDROCK_CONVERSE_STREAM)
    with pytest.raises(EventStreamError):
        list(client.converse_stream(modelId=CLAUDE, messages=USER)["stream"])

    closed, collected, broken = (only_span(t) for t in flowtel_traces.traces)
    assert closed.attributes["flowtel.stream.end_reason"] == "closed"
    assert collected.attributes["flowtel.stream.end_reason"] == "garbage_collected"
    assert broken.attributes["flowtel.stream.end_reason"] == "error"
    assert broken.status.status_code.value == "ERROR"
    assert broken.outputs["output"]["message"]["content"] == [{"text": "one "}]


# -- invoke_model -----------------------------------------------------------------------------------
FAMILIES = [
    (CLAUDE, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
              "messages": [{"role": "user", "content": "Capital of France?"}]}, "CHAT_MODEL"),
    ("amazon.titan-text-express-v1", {"inputText": "Capital of France?"}, "LLM"),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "Capital of France?", "max_gen_len": 50}, "LLM"),
    ("cohere.command-r-v1:0", {"message": "Capital of France?"}, "LLM"),
]


@pytest.mark.parametrize(("model_id", "body", "span_type"), FAMILIES)
def test_invoke_model_records_the_body_and_leaves_it_readable(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, model_id: str, body: dict[str, Any], span_type: str
) -> None:
    llm_server.enqueue_bedrock("Paris is the capital.", usage={"inputTokens": 6, "outputTokens": 5})
    response = _client(llm_server).invoke_model(modelId=model_id, body=json.dumps(body))
    answer = json.loads(response["body"].read())  # the caller still reads the whole body
    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("BedrockRuntime.invoke_model", span_type)
    assert span.inputs["body"] == body and span.outputs == answer
    assert _usage(span) == {"input_tokens": 6, "output_tokens": 5, "total_tokens": 11}
    assert span.attributes["mlflow.llm.model"] == model_id
    _secrets(flowtel_traces.last)


def test_invoke_model_embedding(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    response = _client(llm_server).invoke_model(modelId="amazon.titan-embed-text-v2:0",
                                                body=json.dumps({"inputText": "hello"}))
    assert len(json.loads(response["body"].read())["embedding"]) == 8
    span = only_span(flowtel_traces.last)
    assert span.span_type == "EMBEDDING" and len(span.outputs["embedding"]) == 8


@pytest.mark.parametrize(("model_id", "body", "span_type"), FAMILIES)
def test_invoke_model_with_response_stream_is_rebuilt(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, model_id: str, body: dict[str, Any], span_type: str
) -> None:
    llm_server.enqueue_bedrock(["Paris ", "is ", "the ", "capital."], usage={"inputTokens": 6, "outputTokens": 4},
                               route=BEDROCK_INVOKE_STREAM)
    response = _client(llm_server).invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("BedrockRuntime.invoke_model_with_response_stream", span_type)
    outputs = span.outputs
    text = {CLAUDE: lambda: outputs["content"][0]["text"],
            "amazon.titan-text-express-v1": lambda: outputs["results"][0]["outputText"],
            "meta.llama3-8b-instruct-v1:0": lambda: outputs["generation"],
            "cohere.command-r-v1:0": lambda: outputs["text"]}[model_id]()
    assert text == "Paris is the capital."
    assert _usage(span) == {"input_tokens": 6, "output_tokens": 4, "total_tokens": 10}
    assert len(chunk_values(span)) == len(chunks)
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"


# -- switches ---------------------------------------------------------------------------------------
def test_disable_restores_the_original(llm_server: ScriptedLLMServer, early_client: Any, flowtel_traces: Any) -> None:
    import botocore.client
    import wrapt

    assert is_patched("bedrock")
    flowtel.bedrock.autolog(disable=True)
    assert not isinstance(botocore.client.BaseClient.__dict__["_make_api_call"], wrapt.ObjectProxy)
    early_client.converse(modelId=CLAUDE, messages=USER)
    flowtel.bedrock.autolog()
    flowtel.bedrock.autolog()
    early_client.converse(modelId=CLAUDE, messages=USER)
    assert [tree(t) for t in flowtel_traces.traces] == [[(0, "BedrockRuntime.converse", "CHAT_MODEL")]]
    with flowtel.tracing.context(enabled=False):
        early_client.converse(modelId=CLAUDE, messages=USER)
        list(early_client.converse_stream(modelId=CLAUDE, messages=USER)["stream"])
    assert len(flowtel_traces.traces) == 1
