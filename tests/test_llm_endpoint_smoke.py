"""Smoke tests: every scripted answer of the local LLM endpoint parses in the real SDKs over real HTTP.

No SDK internals are patched; clients talk to ``ScriptedLLMServer`` on loopback with ``max_retries=0``.
Async cases run their coroutine with ``asyncio.run`` so they do not depend on an asyncio pytest plugin.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests._servers.llm import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
    ScriptedLLMServer,
)
from tests._servers.llm_fixtures import (  # noqa: F401 - fixtures used by name
    CLIENT_TIMEOUT_S,
    TEST_ANTHROPIC_API_KEY,
    TEST_OPENAI_API_KEY,
    anthropic_client,
    llm_server,
    openai_client,
)

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pydantic = pytest.importorskip("pydantic")

CLAUDE = "claude-haiku-4-5"  # not in the anthropic SDK's DEPRECATED_MODELS (those warn)
USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class CityInfo(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    """Structured-output target used by the parse tests."""

    city: str
    population: int
    tags: list[str]


# ------------------------------------------------------------------------------------------------
# OpenAI chat completions
# ------------------------------------------------------------------------------------------------


def test_openai_chat_default_echo_records_request(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, temperature=0.2)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Echo: What is the capital of France?"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    request = llm_server.last_request(OPENAI_CHAT_COMPLETIONS)
    assert request.method == "POST"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {TEST_OPENAI_API_KEY}"
    assert request.json["messages"] == USER
    assert request.json["temperature"] == 0.2
    assert request.scripted is False
    assert request.stream is False


def test_openai_chat_scripted_content_usage_and_model(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat(
        content="Paris",
        model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 12, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}},
        headers={"x-ratelimit-remaining-requests": "99"},
    )
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    completion = raw.parse()

    assert completion.choices[0].message.content == "Paris"
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.completion_tokens == 1
    assert completion.usage.total_tokens == 13
    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    assert raw.headers["x-ratelimit-remaining-requests"] == "99"
    assert llm_server.last_request().scripted is True
    llm_server.assert_script_consumed()


def test_openai_chat_tool_calls(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat(
        tool_calls=[
            {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc"},
            {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
        ]
    )
    completion = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL])

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert [c.id for c in calls][0] == "call_abc"
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Lyon"}]
    assert llm_server.last_request().json["tools"] == [WEATHER_TOOL]


def test_openai_chat_stream_with_usage_and_split_tool_call_deltas(
    llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(
        ["Let me ", "check."],
        tool_calls=[{"name": "get_weather", "arguments_chunks": ['{"ci', 'ty": "Pa', 'ris"}'], "id": "call_1"}],
        usage={"prompt_tokens": 20, "completion_tokens": 7},
    )
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    arg_deltas = [
        tc.function.arguments
        for c in chunks
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function and tc.function.arguments
    ]
    assert arg_deltas == ['{"ci', 'ty": "Pa', 'ris"}']
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == 27
    assert all(c.usage is None for c in chunks[:-1])
    assert llm_server.last_request().json["stream_options"] == {"include_usage": True}


def test_openai_chat_stream_helper_accumulates(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat_stream(
        "Checking the weather", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]
    )
    with openai_client.chat.completions.stream(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL]) as stream:
        event_types = [event.type for event in stream]
        final = stream.get_final_completion()

    assert "content.delta" in event_types
    assert "tool_calls.function.arguments.delta" in event_types
    message = final.choices[0].message
    assert message.content == "Checking the weather"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert final.usage is None  # include_usage was not requested


def test_openai_chat_stream_without_usage_and_adaptive_enqueue(
    llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    llm_server.enqueue_openai_chat(content="adaptive answer")  # non-stream enqueue, streamed on demand
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "adaptive answer"
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_chat_parse_pydantic(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat(content='{"city": "Paris", "population": 2100000, "tags": ["capital"]}')
    parsed = openai_client.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=CityInfo)
    assert parsed.choices[0].message.parsed == CityInfo(city="Paris", population=2100000, tags=["capital"])
    assert llm_server.last_request().json["response_format"]["type"] == "json_schema"

    # unscripted: the default answer is an instance of the requested JSON schema
    default = openai_client.chat.completions.parse(model="gpt-4o-mini", messages=USER, response_format=CityInfo)
    assert isinstance(default.choices[0].message.parsed, CityInfo)


def test_openai_async_chat_and_stream(llm_server: ScriptedLLMServer) -> None:
    async def scenario() -> tuple[str, str, int]:
        async with openai.AsyncOpenAI(
            base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
        ) as client:
            llm_server.enqueue_openai_chat(content="async hello")
            completion = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            llm_server.enqueue_openai_chat_stream("streamed async hello")
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            pieces: list[str] = []
            total = 0
            async for chunk in stream:
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")
                if chunk.usage is not None:
                    total = chunk.usage.total_tokens
            return completion.choices[0].message.content, "".join(pieces), total

    content, streamed, total = asyncio.run(scenario())
    assert content == "async hello"
    assert streamed == "streamed async hello"
    assert total > 0
    assert llm_server.requests[0].headers["x-stainless-async"].startswith("async")


def test_openai_stream_disconnect_raises_connection_error(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["one", " two", " three"], error_after=2)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert received == ["", "one"]  # role chunk + first content chunk, then the connection dropped
    # the client recovers on a fresh connection
    assert openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER).choices[0].message.content


def test_openai_stream_error_event_raises_api_error(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat_stream("partial answer", error_after=2, error_mode="event")
    with pytest.raises(openai.APIError) as info:
        list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))
    assert "server had an error" in info.value.message


@pytest.mark.parametrize(
    ("status", "exc_name"),
    [
        (400, "BadRequestError"),
        (401, "AuthenticationError"),
        (403, "PermissionDeniedError"),
        (404, "NotFoundError"),
        (429, "RateLimitError"),
        (500, "InternalServerError"),
        (503, "InternalServerError"),
    ],
)
def test_openai_errors_raise_typed_exceptions(
    llm_server: ScriptedLLMServer, openai_client: Any, status: int, exc_name: str
) -> None:
    llm_server.enqueue_error(status, headers={"retry-after": "3"})
    with pytest.raises(getattr(openai, exc_name)) as info:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    error = info.value
    assert error.status_code == status
    assert isinstance(error.body, dict) and set(error.body) >= {"message", "type", "param", "code"}
    assert error.response.headers["retry-after"] == "3"
    assert error.request_id is not None
    assert len(llm_server.requests) == 1  # max_retries=0: no retry


def test_openai_error_with_explicit_body(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    body = {"error": {"message": "context too long", "type": "invalid_request_error", "param": "messages",
                      "code": "context_length_exceeded"}}
    llm_server.enqueue_error(400, body=body)
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert info.value.code == "context_length_exceeded"
    assert info.value.param == "messages"


# ------------------------------------------------------------------------------------------------
# OpenAI Responses API
# ------------------------------------------------------------------------------------------------


def test_openai_responses_create_text_and_function_call(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    response = openai_client.responses.create(model="gpt-4.1", input="Say hi", instructions="Be brief.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Echo: Say hi"
    assert response.instructions == "Be brief."
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens

    llm_server.enqueue_openai_responses(
        function_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}, "call_id": "call_9"}],
        usage={"input_tokens": 30, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}},
    )
    tools = [{"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}]
    response = openai_client.responses.create(model="gpt-4.1", input="Weather in Paris?", tools=tools)
    (item,) = response.output
    assert item.type == "function_call"
    assert item.call_id == "call_9"
    assert json.loads(item.arguments) == {"city": "Paris"}
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert response.usage.total_tokens == 39
    assert response.tools[0].name == "get_weather"


def test_openai_responses_stream_events(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_responses_stream(
        ["Hel", "lo"],
        function_calls=[{"name": "get_weather", "arguments_chunks": ['{"city"', ': "Paris"}']}],
        usage={"input_tokens": 5, "output_tokens": 6},
    )
    events = list(openai_client.responses.create(model="gpt-4.1", input="hi", stream=True))
    types = [e.type for e in events]

    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["Hel", "lo"]
    assert [e.delta for e in events if e.type == "response.function_call_arguments.delta"] == ['{"city"', ': "Paris"}']
    final = events[-1].response
    assert final.output_text == "Hello"
    assert final.usage.input_tokens == 5 and final.usage.output_tokens == 6
    assert events[0].response.id == final.id


def test_openai_responses_stream_helper_and_parse(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_responses_stream("streamed via helper")
    with openai_client.responses.stream(model="gpt-4.1", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "streamed via helper"

    llm_server.enqueue_openai_responses('{"city": "Paris", "population": 3, "tags": []}')
    parsed = openai_client.responses.parse(model="gpt-4.1", input="hi", text_format=CityInfo)
    assert parsed.output_parsed == CityInfo(city="Paris", population=3, tags=[])


def test_openai_responses_async_stream(llm_server: ScriptedLLMServer) -> None:
    async def scenario() -> str:
        async with openai.AsyncOpenAI(
            base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
        ) as client:
            llm_server.enqueue_openai_responses_stream("async responses")
            stream = await client.responses.create(model="gpt-4.1", input="hi", stream=True)
            async for event in stream:
                if event.type == "response.completed":
                    return str(event.response.output_text)
        return ""

    assert asyncio.run(scenario()) == "async responses"


def test_openai_responses_stream_error_event_and_disconnect(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_responses_stream("x y", error_after=3, error_mode="event")
    events = list(openai_client.responses.create(model="gpt-4.1", input="hi", stream=True))
    assert [e.type for e in events][-1] == "error"  # the SDK yields the error event rather than raising

    llm_server.enqueue_openai_responses_stream("x y", error_after=3)
    with pytest.raises(openai.APIConnectionError):
        list(openai_client.responses.create(model="gpt-4.1", input="hi", stream=True))


# ------------------------------------------------------------------------------------------------
# OpenAI embeddings and legacy completions
# ------------------------------------------------------------------------------------------------


def test_openai_embeddings_base64_default_and_float(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    result = openai_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert llm_server.last_request().json["encoding_format"] == "base64"  # the SDK's default
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    assert math.isclose(sum(v * v for v in result.data[0].embedding), 1.0, rel_tol=1e-5)
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0

    as_float = openai_client.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="float", dimensions=4
    )
    assert len(as_float.data[0].embedding) == 4

    llm_server.enqueue_openai_embeddings([[0.5, -0.25, 1.0]], usage={"prompt_tokens": 7, "total_tokens": 7})
    scripted = openai_client.embeddings.create(model="text-embedding-3-large", input="x")
    assert scripted.data[0].embedding == [0.5, -0.25, 1.0]
    assert scripted.usage.total_tokens == 7
    assert scripted.model == "text-embedding-3-large"


def test_openai_embeddings_wire_is_base64_float32(llm_server: ScriptedLLMServer) -> None:
    llm_server.enqueue_openai_embeddings([[1.5, 2.0]])
    request = urllib.request.Request(
        llm_server.openai_base_url + "/embeddings",
        data=json.dumps({"model": "m", "input": "x", "encoding_format": "base64"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
        payload = json.loads(response.read())
    encoded = payload["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.5, 2.0)
    assert payload["object"] == "list" and payload["data"][0]["object"] == "embedding"


def test_openai_legacy_completions(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_completion("Hello world", usage={"prompt_tokens": 2, "completion_tokens": 2})
    completion = openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello world"
    assert completion.usage.total_tokens == 4

    llm_server.enqueue_openai_completion(["Hel", "lo"])
    chunks = list(
        openai_client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt="Say hello", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello"
    assert chunks[-1].usage is not None and chunks[-1].choices == []


# ------------------------------------------------------------------------------------------------
# Anthropic messages
# ------------------------------------------------------------------------------------------------


def test_anthropic_default_echo_records_headers(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    message = anthropic_client.messages.create(model=CLAUDE, max_tokens=64, system="Be terse.", messages=USER)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: What is the capital of France?"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    request = llm_server.last_request(ANTHROPIC_MESSAGES)
    # anthropic 0.x sends ``x-api-key: <key>``; anthropic 2.x sends ``Authorization: Bearer <key>``
    sent = {request.header("x-api-key"), request.header("authorization")}
    assert sent & {TEST_ANTHROPIC_API_KEY, f"Bearer {TEST_ANTHROPIC_API_KEY}"}
    assert "anthropic-version" in request.headers
    assert request.json["system"] == "Be terse."


def test_anthropic_tool_use_and_cache_usage(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    llm_server.enqueue_anthropic_message(
        [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        usage={
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 50,
        },
        model="claude-haiku-4-5-20251001",
    )
    message = anthropic_client.messages.create(
        model=CLAUDE, max_tokens=64, messages=USER, tools=[ANTHROPIC_WEATHER_TOOL]
    )
    assert message.stop_reason == "tool_use"
    assert message.model == "claude-haiku-4-5-20251001"
    text, tool = message.content
    assert text.text == "Let me check."
    assert (tool.type, tool.id, tool.name, tool.input) == ("tool_use", "toolu_1", "get_weather", {"city": "Paris"})
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens) == (10, 20)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 50)
    assert usage.cache_creation.ephemeral_5m_input_tokens == 50


def test_anthropic_stream_context_manager(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    llm_server.enqueue_anthropic_stream(
        [
            {"type": "text", "chunks": ["Chec", "king"]},
            {"type": "tool_use", "name": "get_weather", "chunks": ['{"city": ', '"Paris"}']},
        ],
        usage={"input_tokens": 11, "output_tokens": 22, "cache_read_input_tokens": 3},
    )
    with anthropic_client.messages.stream(
        model=CLAUDE, max_tokens=64, messages=USER, tools=[ANTHROPIC_WEATHER_TOOL]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Checking"
    assert final.content[1].input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.cache_read_input_tokens) == (11, 22, 3)
    assert llm_server.last_request().stream is True


def test_anthropic_create_stream_true_raw_events(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    llm_server.enqueue_anthropic_stream(
        [{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}], usage={"output_tokens": 9}
    )
    events = list(anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True))
    types = [e.type for e in events]  # ping is filtered out by the SDK
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == 1
    deltas = [e.delta.partial_json for e in events if e.type == "content_block_delta"]
    assert deltas[0] == "" and json.loads("".join(deltas)) == {"city": "Paris"}
    message_delta = next(e for e in events if e.type == "message_delta")
    assert message_delta.delta.stop_reason == "tool_use"
    assert message_delta.usage.output_tokens == 9


def test_anthropic_thinking_blocks_stream(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    llm_server.enqueue_anthropic_message(
        [{"type": "thinking", "thinking": "Let me think."}, {"type": "text", "text": "Paris."}]
    )
    with anthropic_client.messages.stream(model=CLAUDE, max_tokens=2048, messages=USER) as stream:
        final = stream.get_final_message()
    thinking, text = final.content
    assert (thinking.type, thinking.thinking) == ("thinking", "Let me think.")
    assert thinking.signature
    assert text.text == "Paris."


def test_anthropic_async_create_and_stream(llm_server: ScriptedLLMServer) -> None:
    async def scenario() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(
            base_url=llm_server.anthropic_base_url,
            api_key=TEST_ANTHROPIC_API_KEY,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        ) as client:
            llm_server.enqueue_anthropic_message("async claude")
            message = await client.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
            llm_server.enqueue_anthropic_stream("async streamed claude")
            async with client.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
                pieces = [piece async for piece in stream.text_stream]
            return message.content[0].text, "".join(pieces)

    assert asyncio.run(scenario()) == ("async claude", "async streamed claude")


@pytest.mark.parametrize(
    ("status", "exc_name", "error_type"),
    [
        (400, "BadRequestError", "invalid_request_error"),
        (401, "AuthenticationError", "authentication_error"),
        (403, "PermissionDeniedError", "permission_error"),
        (404, "NotFoundError", "not_found_error"),
        (429, "RateLimitError", "rate_limit_error"),
        (500, "InternalServerError", "api_error"),
        (529, "OverloadedError", "overloaded_error"),
    ],
)
def test_anthropic_errors_raise_typed_exceptions(
    llm_server: ScriptedLLMServer, anthropic_client: Any, status: int, exc_name: str, error_type: str
) -> None:
    llm_server.enqueue_error(status, headers={"retry-after": "5"})
    with pytest.raises(getattr(anthropic, exc_name)) as info:
        anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER)
    error = info.value
    assert error.status_code == status
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.body["request_id"] == error.request_id
    assert error.response.headers["retry-after"] == "5"
    assert len(llm_server.requests) == 1


def test_anthropic_stream_disconnect_and_error_event(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    httpx2 = pytest.importorskip("httpx2")
    llm_server.enqueue_anthropic_stream("one two three", error_after=3)
    # anthropic does not wrap transport errors raised while iterating a stream
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        list(anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True))

    llm_server.enqueue_anthropic_stream("one two three", error_after=3, error_mode="event")
    with pytest.raises(anthropic.APIStatusError) as info:
        list(anthropic_client.messages.create(model=CLAUDE, max_tokens=64, messages=USER, stream=True))
    assert info.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_count_tokens(llm_server: ScriptedLLMServer, anthropic_client: Any) -> None:
    result = anthropic_client.messages.count_tokens(model=CLAUDE, messages=USER)
    assert result.input_tokens > 0


# ------------------------------------------------------------------------------------------------
# Server behaviour
# ------------------------------------------------------------------------------------------------


def test_script_is_fifo_per_route_and_errors_match_any_route(
    llm_server: ScriptedLLMServer, openai_client: Any, anthropic_client: Any
) -> None:
    llm_server.enqueue_anthropic_message("from claude")
    llm_server.enqueue_openai_chat(content="from gpt #1")
    llm_server.enqueue_openai_chat(content="from gpt #2")
    assert llm_server.pending() == 3
    assert llm_server.pending(OPENAI_CHAT_COMPLETIONS) == 2

    assert openai_client.chat.completions.create(model="m", messages=USER).choices[0].message.content == "from gpt #1"
    assert anthropic_client.messages.create(model=CLAUDE, max_tokens=8, messages=USER).content[0].text == "from claude"
    assert openai_client.chat.completions.create(model="m", messages=USER).choices[0].message.content == "from gpt #2"

    llm_server.enqueue_error(500)  # route=None: the next request of any route
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client.messages.create(model=CLAUDE, max_tokens=8, messages=USER)
    llm_server.enqueue_error(429, route=OPENAI_EMBEDDINGS)
    assert openai_client.chat.completions.create(model="m", messages=USER).choices[0].message.content
    with pytest.raises(openai.RateLimitError):
        openai_client.embeddings.create(model="e", input="x")
    llm_server.assert_script_consumed()


def test_stream_mismatch_and_strict_mode_are_reported() -> None:
    with ScriptedLLMServer(strict=True) as server, openai.OpenAI(
        base_url=server.openai_base_url, api_key="sk-test", max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as client:
        server.enqueue_openai_chat_stream("streamed only")
        with pytest.raises(openai.InternalServerError, match="expects a streaming request"):
            client.chat.completions.create(model="m", messages=USER)
        with pytest.raises(openai.InternalServerError, match="no scripted answer"):
            client.chat.completions.create(model="m", messages=USER)
        assert len(server.errors) == 2


def test_unknown_path_method_bad_json_and_oversized_body() -> None:
    with ScriptedLLMServer(max_body_bytes=1024) as server:

        def call(path: str, data: bytes | None, method: str = "POST") -> tuple[int, dict[str, Any]]:
            request = urllib.request.Request(
                server.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                with error:
                    return error.code, json.loads(error.read())

        assert call("/v1/nope", b"{}")[0] == 404
        assert call("/v1/chat/completions", None, method="GET")[0] == 405
        status, body = call("/v1/messages", b"not json")
        assert status == 400 and body["type"] == "error"  # anthropic-shaped on an anthropic route
        assert call("/v1/chat/completions", b"{" + b" " * 2048 + b"}")[0] == 413
        assert server.errors == []


def test_wait_for_requests_with_concurrent_clients(llm_server: ScriptedLLMServer) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with openai.OpenAI(
            base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0, timeout=CLIENT_TIMEOUT_S
        ) as client:
            content = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"n{n}"}]
            ).choices[0].message.content
        with lock:
            results.append(content)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    recorded = llm_server.wait_for_requests(8, timeout=CLIENT_TIMEOUT_S, route=OPENAI_CHAT_COMPLETIONS)
    for thread in threads:
        thread.join(CLIENT_TIMEOUT_S)
    assert sorted(results) == sorted(f"Echo: n{n}" for n in range(8))
    assert sorted(r.index for r in recorded) == list(range(8))
    with pytest.raises(TimeoutError):
        llm_server.wait_for_requests(9, timeout=0.01)


def test_raw_sse_enqueue(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    chunk = {
        "id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": "raw"}, "finish_reason": "stop"}],
    }
    llm_server.enqueue_sse([(None, chunk)], route=OPENAI_CHAT_COMPLETIONS, done=True)
    chunks = list(openai_client.chat.completions.create(model="m", messages=USER, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["raw"]


def test_refusal_incomplete_status_and_enqueue_validation(llm_server: ScriptedLLMServer, openai_client: Any) -> None:
    llm_server.enqueue_openai_chat(refusal="I can't help with that.")
    message = openai_client.chat.completions.create(model="m", messages=USER).choices[0].message
    assert (message.content, message.refusal) == (None, "I can't help with that.")

    llm_server.enqueue_openai_responses("cut sh", status="incomplete")
    response = openai_client.responses.create(model="gpt-4.1", input="hi")
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"

    with pytest.raises(ValueError):
        llm_server.enqueue_openai_chat_stream("x", error_after=-1)
    with pytest.raises(ValueError):
        llm_server.enqueue_error(200)
    with pytest.raises(ValueError):
        llm_server.enqueue_raw(200, b"{}", route="/v1/unknown")
    llm_server.enqueue_anthropic_message("left over")
    assert llm_server.pending(ANTHROPIC_MESSAGES) == 1
    with pytest.raises(AssertionError, match="anthropic_message"):
        llm_server.assert_script_consumed()
    llm_server.reset()
    assert llm_server.pending() == 0 and llm_server.requests == []


def test_server_rejects_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ScriptedLLMServer(host="0.0.0.0")


def test_command_line_serves_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests._servers.llm", "--port", "0", "--max-seconds", "60"],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        assert first_line.startswith("OPENAI_BASE_URL=http://127.0.0.1:")
        base_url = first_line.split("=", 1)[1]
        with openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=CLIENT_TIMEOUT_S) as client:
            content = client.chat.completions.create(model="m", messages=USER).choices[0].message.content
        assert content == "Echo: What is the capital of France?"
    finally:
        process.terminate()
        assert process.wait(timeout=CLIENT_TIMEOUT_S) == 0
        if process.stdout is not None:
            process.stdout.close()


# ------------------------------------------------------------------------------------------------
# LangChain / LangGraph against the endpoint (skipped when the integrations are not installed)
# ------------------------------------------------------------------------------------------------


def test_langchain_openai_chat_tools_stream_and_responses(llm_server: ScriptedLLMServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    llm_server.enqueue_openai_chat(content="Paris", usage={"prompt_tokens": 9, "completion_tokens": 1})
    message = llm.invoke("Capital of France?")
    assert message.content == "Paris"
    assert message.usage_metadata["total_tokens"] == 10

    llm_server.enqueue_openai_chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    tool_message = llm.bind_tools([WEATHER_TOOL]).invoke("Weather?")
    assert tool_message.tool_calls[0]["args"] == {"city": "Paris"}

    llm_server.enqueue_openai_chat(content="streamed by langchain")
    assert "".join(str(chunk.content) for chunk in llm.stream("go")) == "streamed by langchain"

    responses_llm = langchain_openai.ChatOpenAI(
        model="gpt-4.1", base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0,
        timeout=CLIENT_TIMEOUT_S, use_responses_api=True,
    )
    llm_server.enqueue_openai_responses("via responses")
    assert responses_llm.invoke("hi").text == "via responses"
    assert llm_server.last_request().route == OPENAI_RESPONSES

    # check_embedding_ctx_length=False: the default tokenizes with tiktoken, which downloads encodings
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="text-embedding-3-small", base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY,
        max_retries=0, timeout=CLIENT_TIMEOUT_S, check_embedding_ctx_length=False,
    )
    vectors = embeddings.embed_documents(["a", "b"])
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors)


def test_langchain_anthropic_chat_tools_and_stream(llm_server: ScriptedLLMServer) -> None:
    langchain_anthropic = pytest.importorskip("langchain_anthropic")
    llm = langchain_anthropic.ChatAnthropic(
        model=CLAUDE, base_url=llm_server.anthropic_base_url, api_key=TEST_ANTHROPIC_API_KEY, max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    llm_server.enqueue_anthropic_message("Paris", usage={"input_tokens": 4, "output_tokens": 1,
                                                         "cache_read_input_tokens": 2})
    message = llm.invoke("Capital of France?")
    assert message.content == "Paris"
    assert message.usage_metadata["input_token_details"]["cache_read"] == 2

    llm_server.enqueue_anthropic_message([{"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}])
    assert llm.bind_tools([ANTHROPIC_WEATHER_TOOL]).invoke("Weather?").tool_calls[0]["args"] == {"city": "Paris"}

    llm_server.enqueue_anthropic_message("streamed claude")
    assert "".join(str(chunk.content) for chunk in llm.stream("go")) == "streamed claude"
    assert TEST_ANTHROPIC_API_KEY in str(dict(llm_server.requests[0].headers))


def test_langgraph_tool_loop(llm_server: ScriptedLLMServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    prebuilt = pytest.importorskip("langgraph.prebuilt")
    graph_module = pytest.importorskip("langgraph.graph")
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return f"sunny in {city}"

    llm = langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    bound = llm.bind_tools([get_weather])

    def call_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = graph_module.StateGraph(graph_module.MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", prebuilt.ToolNode([get_weather]))
    builder.add_edge(graph_module.START, "model")
    builder.add_conditional_edges("model", prebuilt.tools_condition)
    builder.add_edge("tools", "model")
    agent = builder.compile()
    llm_server.enqueue_openai_chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    llm_server.enqueue_openai_chat(content="It is sunny in Paris.")
    result = agent.invoke({"messages": [("user", "Weather in Paris?")]})

    assert result["messages"][-1].content == "It is sunny in Paris."
    second = llm_server.requests_for(OPENAI_CHAT_COMPLETIONS)[1].json["messages"]
    call_id = second[-2]["tool_calls"][0]["id"]
    assert second[-1] == {"content": "sunny in Paris", "role": "tool", "tool_call_id": call_id}
    llm_server.assert_script_consumed()
