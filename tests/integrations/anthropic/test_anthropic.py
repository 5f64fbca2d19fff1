"""flowtel.anthropic.autolog(): the real ``anthropic`` SDK over real HTTP (JSON and SSE) to the local
scripted endpoint, captured with the deterministic in-memory ``flowtel_traces`` fixture."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import pytest

import flowtel
from tests._servers.llm import ScriptedLLMServer
from tests._servers.llm_fixtures import CLIENT_TIMEOUT_S, TEST_ANTHROPIC_API_KEY
from tests.integrations._helpers import (
    assert_no_secret,
    chunk_values,
    exception_event,
    only_span,
    tree,
    without_cost,
)

anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.usefixtures("anthropic_autolog")

CLAUDE = "claude-haiku-4-5"
USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
MLFLOW_WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Get the weather for a city.",
                 "parameters": WEATHER_TOOL["input_schema"]},
}
TOOL_ANSWER = [
    {"type": "text", "text": "Let me check."},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
]
CACHED_USAGE = {"input_tokens": 10, "output_tokens": 20, "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 50}
#: Anthropic's input_tokens exclude the cache; the recorded input includes it (as MLflow records it).
RECORDED_USAGE = {"input_tokens": 160, "output_tokens": 20, "total_tokens": 180,
                  "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50}


def _async_client(server: ScriptedLLMServer) -> Any:
    return anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key=TEST_ANTHROPIC_API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


def test_messages_create_is_one_whole_span(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_message(TOOL_ANSWER, usage=CACHED_USAGE, model="claude-haiku-4-5-20251001")
    message = anthropic_client.messages.create(
        model=CLAUDE, max_tokens=64, messages=USER, tools=[WEATHER_TOOL], system="Be terse."
    )

    [trace] = flowtel_traces.traces
    span = only_span(trace)
    assert (span.name, span.parent_id, span.status.status_code.value) == ("Messages.create", None, "OK")
    attributes = without_cost(span.attributes)  # priced in tests/test_cost.py
    assert attributes == {
        "mlflow.traceRequestId": trace.info.trace_id,
        "mlflow.spanType": "CHAT_MODEL",
        "mlflow.spanInputs": {"model": CLAUDE, "max_tokens": 64, "messages": USER, "tools": [WEATHER_TOOL],
                              "system": "Be terse."},
        "mlflow.spanOutputs": json.loads(message.model_dump_json()),
        "mlflow.message.format": "anthropic",
        "mlflow.chat.tools": [MLFLOW_WEATHER_TOOL],
        "mlflow.llm.model": "claude-haiku-4-5-20251001",
        "mlflow.llm.provider": "anthropic",
        "mlflow.chat.tokenUsage": RECORDED_USAGE,
        "mlflow.spanLogLevel": 20,
    }
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"]) == RECORDED_USAGE
    assert trace.info.request_preview == "What is the capital of France?"
    assert_no_secret(trace, TEST_ANTHROPIC_API_KEY)


def test_calls_nest_inside_trace(llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any) -> None:
    @flowtel.trace
    def ask() -> str:
        return anthropic_client.messages.create(model=CLAUDE, max_tokens=16, messages=USER).content[0].text

    ask()
    assert tree(flowtel_traces.last) == [(0, "ask", "UNKNOWN"), (1, "Messages.create", "CHAT_MODEL")]


def test_create_stream_true_rebuilds_the_message(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_stream(
        [{"type": "thinking", "thinking": "Hmm.", "signature": "sig-1"},
         {"type": "text", "chunks": ["Let me ", "check."]},
         {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "chunks": ['{"city": ', '"Paris"}']}],
        usage=CACHED_USAGE,
    )
    stream = anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True)
    assert stream.__class__ is anthropic.Stream  # (old SDKs override isinstance() for Stream)
    events = list(stream)

    span = only_span(flowtel_traces.last)
    assert chunk_values(span) == [json.loads(e.model_dump_json(warnings=False)) for e in events]
    outputs = span.outputs
    thinking, text, tool_use = outputs["content"]
    assert (thinking["type"], thinking["thinking"], thinking["signature"]) == ("thinking", "Hmm.", "sig-1")
    assert (text["type"], text["text"]) == ("text", "Let me check.")
    assert {k: tool_use[k] for k in ("type", "id", "name", "input")} == {
        "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"},
    }
    assert (outputs["role"], outputs["stop_reason"], outputs["type"]) == ("assistant", "tool_use", "message")
    assert span.attributes["mlflow.chat.tokenUsage"] == RECORDED_USAGE
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_messages_stream_manager_matches_the_sdk_final_message(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_stream(
        [{"type": "text", "chunks": ["Chec", "king"]},
         {"type": "tool_use", "name": "get_weather", "chunks": ['{"city": ', '"Paris"}']}],
        usage={"input_tokens": 11, "output_tokens": 22, "cache_read_input_tokens": 3},
    )
    with anthropic_client.messages.stream(model=CLAUDE, max_tokens=64, messages=USER, tools=[WEATHER_TOOL]) as stream:
        assert flowtel_traces.traces == []  # the span is open while the user reads
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Checking"
    span = only_span(flowtel_traces.last)
    assert span.name == "Messages.stream"
    assert span.outputs == json.loads(final.model_dump_json())
    assert span.attributes["mlflow.chat.tools"] == [MLFLOW_WEATHER_TOOL]
    assert span.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 14, "output_tokens": 22, "total_tokens": 36, "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 0,
    }
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"


def test_messages_stream_left_early_closes_the_span(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_stream("one two three four")
    with anthropic_client.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
        first = next(iter(stream.text_stream))

    span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] == "closed"
    assert span.status.status_code.value == "OK"
    [block] = span.outputs["content"]
    assert (block["type"], block["text"]) == ("text", first)


def test_stream_broken_mid_way_and_dropped_unread(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_anthropic_stream("one two three", error_after=4)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK surfaces its HTTP library's error here
        list(anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True))
    llm_server.enqueue_anthropic_stream("never read")
    stream = anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True)
    del stream
    gc.collect()

    broken, dropped = (only_span(t) for t in flowtel_traces.traces)
    assert broken.status.status_code.value == "ERROR"
    assert exception_event(broken)["exception.type"] == type(raised.value).__name__
    assert broken.outputs["content"][0]["text"] == "one"
    assert dropped.attributes["flowtel.stream.end_reason"] == "garbage_collected"


def test_api_error_is_recorded_and_reraised(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_error(529, message="overloaded")
    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_client.messages.create(model=CLAUDE, max_tokens=16, messages=USER)

    assert raised.value.status_code == 529
    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "ERROR"
    assert exception_event(span)["exception.type"] == type(raised.value).__name__


def test_async_create_stream_true_and_stream_manager(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    async def scenario() -> tuple[Any, str, Any]:
        async with _async_client(llm_server) as client:
            llm_server.enqueue_anthropic_message("async claude", usage={"input_tokens": 3, "output_tokens": 2})
            message = await client.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
            llm_server.enqueue_anthropic_stream("raw async")
            raw = await client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True)
            assert raw.__class__ is anthropic.AsyncStream
            _ = [event async for event in raw]
            llm_server.enqueue_anthropic_stream("streamed claude")
            async with client.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
                text = "".join([piece async for piece in stream.text_stream])
                final = await stream.get_final_message()
            return message, text, final

    message, text, final = asyncio.run(scenario())
    created, raw, managed = (only_span(t) for t in flowtel_traces.traces)
    assert created.name == "AsyncMessages.create"
    assert created.outputs == json.loads(message.model_dump_json())
    assert created.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 5
    assert raw.outputs["content"][0]["text"] == "raw async"
    assert managed.name == "AsyncMessages.stream"
    assert text == "streamed claude"
    assert managed.outputs == json.loads(final.model_dump_json())


def test_beta_messages_and_raw_response(
    llm_server: ScriptedLLMServer, anthropic_client: Any, flowtel_traces: Any
) -> None:
    anthropic_client.beta.messages.create(model=CLAUDE, max_tokens=16, messages=USER)
    raw = anthropic_client.messages.with_raw_response.create(model=CLAUDE, max_tokens=16, messages=USER)
    parsed = raw.parse()

    beta, raw_span = (only_span(t) for t in flowtel_traces.traces)
    assert (beta.name, beta.span_type) == ("Messages.create", "CHAT_MODEL")
    assert raw_span.outputs == json.loads(parsed.model_dump_json())
