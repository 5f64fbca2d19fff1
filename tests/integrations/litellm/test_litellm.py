"""flowtel.litellm.autolog(): the real ``litellm`` over real HTTP to the local scripted endpoint
(OpenAI and Anthropic wire formats), captured with the in-memory ``flowtel_traces`` fixture."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import wrapt

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price table on import

import flowtel
from flowtel.integrations._registry import is_patched
from tests._servers.llm import ScriptedLLMServer
from tests._servers.llm_fixtures import CLIENT_TIMEOUT_S, TEST_ANTHROPIC_API_KEY, TEST_OPENAI_API_KEY
from tests.integrations._helpers import assert_no_secret, chunk_values, exception_event, only_span, tree

pytest.importorskip("litellm.main")  # not just "litellm": this test folder is a namespace package of that name
import litellm  # noqa: E402

USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(autouse=True)
def litellm_autolog() -> Iterator[None]:
    flowtel.litellm.autolog()
    try:
        yield
    finally:
        flowtel.litellm.autolog(disable=True)


def _openai(server: ScriptedLLMServer) -> dict[str, Any]:
    return {"api_base": server.openai_base_url, "api_key": TEST_OPENAI_API_KEY, "timeout": CLIENT_TIMEOUT_S,
            "max_retries": 0}


def _anthropic(server: ScriptedLLMServer) -> dict[str, Any]:
    return {"api_base": server.anthropic_base_url, "api_key": TEST_ANTHROPIC_API_KEY, "timeout": CLIENT_TIMEOUT_S,
            "max_retries": 0}


def _usage(span: Any) -> dict[str, int]:
    return span.attributes["mlflow.chat.tokenUsage"]


# -- completion -------------------------------------------------------------------------------------
def test_completion_is_one_whole_span(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat(
        content="Paris", model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 20, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 8},
               "completion_tokens_details": {"reasoning_tokens": 2}},
    )
    response = litellm.completion("openai/gpt-4o-mini", USER, temperature=0.2, tools=[WEATHER_TOOL],
                                  **_openai(llm_server))

    [trace] = flowtel_traces.traces
    span = only_span(trace)
    assert (span.name, span.span_type, span.status.status_code.value) == ("litellm-completion", "CHAT_MODEL", "OK")
    assert span.inputs["model"] == "openai/gpt-4o-mini" and span.inputs["messages"] == USER
    assert span.inputs["temperature"] == 0.2 and span.inputs["api_key"] == "[REDACTED]"
    assert span.outputs["choices"][0]["message"]["content"] == "Paris"
    assert span.outputs["id"] == response.id
    assert span.attributes["mlflow.message.format"] == "litellm"
    assert span.attributes["mlflow.chat.tools"] == [WEATHER_TOOL]
    assert span.attributes["mlflow.llm.model"] == "gpt-4o-mini-2024-07-18"
    assert span.attributes["mlflow.llm.provider"] == "openai"
    usage = {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25, "cache_read_input_tokens": 8,
             "reasoning_tokens": 2}
    assert _usage(span) == usage
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"]) == usage
    assert (trace.info.request_preview, trace.info.response_preview) == ("What is the capital of France?", "Paris")
    assert llm_server.last_request().header("authorization") == f"Bearer {TEST_OPENAI_API_KEY}"
    assert_no_secret(trace, TEST_OPENAI_API_KEY)


@pytest.mark.usefixtures("openai_autolog", "anthropic_autolog")
def test_one_span_and_tokens_counted_once_with_the_sdk_integrations_on(
    llm_server: ScriptedLLMServer, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(content="Paris", usage={"prompt_tokens": 20, "completion_tokens": 5})
    llm_server.enqueue_anthropic_message(
        "Paris", usage={"input_tokens": 30, "output_tokens": 4, "cache_read_input_tokens": 6,
                        "cache_creation_input_tokens": 2},
    )

    @flowtel.trace(span_type="AGENT")
    def agent() -> None:
        litellm.completion("openai/gpt-4o-mini", USER, **_openai(llm_server))
        litellm.completion("anthropic/claude-3-5-haiku-20241022", USER, **_anthropic(llm_server))
        list(litellm.completion("openai/gpt-4o-mini", USER, stream=True, stream_options={"include_usage": True},
                                **_openai(llm_server)))

    agent()
    [trace] = flowtel_traces.traces
    assert tree(trace) == [(0, "agent", "AGENT"), (1, "litellm-completion", "CHAT_MODEL"),
                           (1, "litellm-completion", "CHAT_MODEL"), (1, "litellm-completion", "CHAT_MODEL")]
    chat, claude, stream = sorted((s for s in trace.data.spans if s.parent_id), key=lambda s: s.start_time_ns)
    assert chat.attributes["mlflow.llm.provider"] == "openai"
    assert claude.attributes["mlflow.llm.provider"] == "anthropic"
    assert {k: _usage(chat)[k] for k in ("input_tokens", "output_tokens", "total_tokens")} == {
        "input_tokens": 20, "output_tokens": 5, "total_tokens": 25}
    assert _usage(claude)["cache_read_input_tokens"] == 6
    assert _usage(claude)["cache_creation_input_tokens"] == 2
    total = json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])["total_tokens"]
    assert total == sum(_usage(s)["total_tokens"] for s in (chat, claude, stream))
    assert_no_secret(trace, TEST_OPENAI_API_KEY, TEST_ANTHROPIC_API_KEY)


def test_tool_call_is_recorded(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "c1"}])
    litellm.completion("openai/gpt-4o-mini", USER, tools=[WEATHER_TOOL], **_openai(llm_server))
    span = only_span(flowtel_traces.last)
    [call] = span.outputs["choices"][0]["message"]["tool_calls"]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        "c1", "get_weather", {"city": "Paris"})
    assert span.outputs["choices"][0]["finish_reason"] == "tool_calls"


def test_error_is_recorded_and_reraised_unchanged(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_error(400, message="bad request from the script")
    with pytest.raises(litellm.BadRequestError) as raised:
        litellm.completion("openai/gpt-4o-mini", USER, **_openai(llm_server))
    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "ERROR"
    event = exception_event(span)
    assert event["exception.type"].endswith("BadRequestError")
    assert "bad request from the script" in str(raised.value)
    assert_no_secret(flowtel_traces.last, TEST_OPENAI_API_KEY)


# -- streams ----------------------------------------------------------------------------------------
def test_stream_is_rebuilt_and_the_span_ends_when_consumed(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["The ", "capital ", "is ", "Paris."], usage={"prompt_tokens": 9})
    stream = litellm.completion("openai/gpt-4o-mini", USER, stream=True, stream_options={"include_usage": True},
                                **_openai(llm_server))
    text = ""
    for chunk in stream:
        assert flowtel_traces.traces == []  # the span stays open while the user reads
        text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "The capital is Paris."

    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "OK"
    assert span.outputs["choices"][0]["message"]["content"] == "The capital is Paris."
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"
    assert span.attributes["gen_ai.response.time_to_first_chunk"] >= 0
    assert _usage(span)["input_tokens"] == 9
    assert len(chunk_values(span)) == span.attributes["flowtel.stream.chunks"]


def test_stream_left_early_ends_the_span_once(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["one ", "two ", "three ", "four"])
    stream = litellm.completion("openai/gpt-4o-mini", USER, stream=True, **_openai(llm_server))
    next(iter(stream))
    del stream
    gc.collect()
    span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] in ("garbage_collected", "closed")
    assert span.status.status_code.value == "OK"


def test_stream_broken_mid_way_ends_the_span_with_the_error(
    llm_server: ScriptedLLMServer, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(["one ", "two ", "three ", "four"], error_after=2)
    with pytest.raises(Exception) as raised:
        list(litellm.completion("openai/gpt-4o-mini", USER, stream=True, **_openai(llm_server)))
    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "ERROR"
    assert span.attributes["flowtel.stream.end_reason"] == "error"
    assert exception_event(span)["exception.type"].endswith(type(raised.value).__name__)


# -- async ------------------------------------------------------------------------------------------
async def test_acompletion_and_async_stream(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat(content="Paris")
    llm_server.enqueue_openai_chat_stream(["Par", "is"])
    response = await litellm.acompletion("openai/gpt-4o-mini", USER, **_openai(llm_server))
    stream = await litellm.acompletion("openai/gpt-4o-mini", USER, stream=True, **_openai(llm_server))
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    plain, streamed = flowtel_traces.traces
    assert response.choices[0].message.content == "Paris" and text == "Paris"
    assert only_span(plain).name == "litellm-acompletion"
    assert only_span(plain).outputs["choices"][0]["message"]["content"] == "Paris"
    assert only_span(streamed).outputs["choices"][0]["message"]["content"] == "Paris"
    assert only_span(streamed).attributes["flowtel.stream.end_reason"] == "consumed"


async def test_async_stream_cancelled(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["one ", "two ", "three"], hold_after=2)
    stream = await litellm.acompletion("openai/gpt-4o-mini", USER, stream=True, **_openai(llm_server))
    first = asyncio.Event()

    async def read() -> None:
        async for _ in stream:
            first.set()

    task = asyncio.ensure_future(read())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    llm_server.release_held_streams()
    span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] == "cancelled"
    assert span.status.status_code.value == "ERROR"


# -- embeddings -------------------------------------------------------------------------------------
async def test_embedding_and_aembedding(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    litellm.embedding("openai/text-embedding-3-small", ["hello"], **_openai(llm_server))
    await litellm.aembedding("openai/text-embedding-3-small", ["hello"], **_openai(llm_server))
    sync, async_ = (only_span(t) for t in flowtel_traces.traces)
    assert (sync.name, sync.span_type) == ("litellm-embedding", "EMBEDDING")
    assert (async_.name, async_.span_type) == ("litellm-aembedding", "EMBEDDING")
    assert sync.inputs["input"] == ["hello"] and "mlflow.message.format" not in sync.attributes
    assert _usage(sync)["input_tokens"] >= 1
    assert_no_secret(flowtel_traces.last, TEST_OPENAI_API_KEY)


# -- switches ---------------------------------------------------------------------------------------
def test_disable_restores_the_originals_and_records_nothing(
    llm_server: ScriptedLLMServer, flowtel_traces: Any
) -> None:
    assert is_patched("litellm")
    flowtel.litellm.autolog(disable=True)
    assert not is_patched("litellm")
    assert not isinstance(litellm.completion, wrapt.ObjectProxy)
    assert not isinstance(litellm.acompletion, wrapt.ObjectProxy)
    litellm.completion("openai/gpt-4o-mini", USER, **_openai(llm_server))
    flowtel.litellm.autolog()
    flowtel.litellm.autolog()  # idempotent: still one span per call
    litellm.completion("openai/gpt-4o-mini", USER, **_openai(llm_server))
    assert [tree(t) for t in flowtel_traces.traces] == [[(0, "litellm-completion", "CHAT_MODEL")]]


def test_tracing_disabled_records_nothing(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    with flowtel.tracing.context(enabled=False):
        litellm.completion("openai/gpt-4o-mini", USER, **_openai(llm_server))
        list(litellm.completion("openai/gpt-4o-mini", USER, stream=True, **_openai(llm_server)))
    assert flowtel_traces.traces == []
