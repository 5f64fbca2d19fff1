"""flowtel.openai.autolog(): the real ``openai`` SDK over real HTTP (JSON and SSE) to the local
scripted endpoint, captured with the deterministic in-memory ``flowtel_traces`` fixture."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
from typing import Any

import pytest

import flowtel
from flowtel.integrations._shared import _stream, _values
from tests._servers.llm import ScriptedLLMServer
from tests._servers.llm_fixtures import CLIENT_TIMEOUT_S, TEST_OPENAI_API_KEY
from tests.integrations._helpers import (
    assert_no_secret,
    chunk_values,
    exception_event,
    only_span,
    tree,
    without_cost,
)

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")

pytestmark = pytest.mark.usefixtures("openai_autolog")

USER = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
MLFLOW_WEATHER_TOOL = {"type": "function", "function": WEATHER_TOOL["function"]}


class CityInfo(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    city: str
    population: int


def _helpers(client: Any) -> Any:
    """``client.chat.completions`` -- or, on SDKs before 1.92, ``client.beta.chat.completions`` --
    for the ``parse`` / ``stream`` helpers."""
    completions = client.chat.completions
    return completions if hasattr(completions, "parse") else client.beta.chat.completions


def _responses(client: Any) -> Any:
    if not hasattr(client, "responses"):
        pytest.skip("the Responses API needs openai>=1.66")
    return client.responses


def _async_client(server: ScriptedLLMServer) -> Any:
    return openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S
    )


# -- chat completions -------------------------------------------------------------------------------
def test_chat_completion_is_one_whole_span(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(
        content="Paris",
        model="gpt-4o-mini-2024-07-18",
        usage={
            "prompt_tokens": 20, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 8}, "completion_tokens_details": {"reasoning_tokens": 2},
        },
    )
    completion = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, temperature=0.2, tools=[WEATHER_TOOL],
        extra_headers={"Authorization": f"Bearer {TEST_OPENAI_API_KEY}"},
    )

    [trace] = flowtel_traces.traces
    span = only_span(trace)
    redacted_headers = {"Authorization": _values.REDACTED}
    usage = {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25, "cache_read_input_tokens": 8,
             "reasoning_tokens": 2}
    assert (span.name, span.parent_id, span.status.status_code.value) == ("Completions", None, "OK")
    attributes = without_cost(span.attributes)  # priced in tests/test_cost.py
    assert attributes == {
        "mlflow.traceRequestId": trace.info.trace_id,
        "mlflow.spanType": "CHAT_MODEL",
        "mlflow.spanInputs": {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2, "tools": [WEATHER_TOOL],
                              "extra_headers": redacted_headers},
        "mlflow.spanOutputs": json.loads(completion.model_dump_json()),
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "tools": [WEATHER_TOOL],
        "extra_headers": redacted_headers,
        "mlflow.message.format": "openai",
        "mlflow.chat.tools": [MLFLOW_WEATHER_TOOL],
        "mlflow.llm.model": "gpt-4o-mini-2024-07-18",
        "mlflow.llm.provider": "openai",
        "mlflow.chat.tokenUsage": usage,
        "mlflow.spanLogLevel": 20,
    }
    assert span.events == []
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"]) == usage
    assert (trace.info.request_preview, trace.info.response_preview) == ("What is the capital of France?", "Paris")
    assert llm_server.last_request().header("authorization") == f"Bearer {TEST_OPENAI_API_KEY}"
    assert_no_secret(trace, TEST_OPENAI_API_KEY)


def test_calls_nest_inside_trace_and_start_their_own_trace_outside(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    @flowtel.trace(span_type="AGENT")
    def agent(question: str) -> str:
        asked = [{"role": "user", "content": question}]
        first = openai_client.chat.completions.create(model="gpt-4o-mini", messages=asked)
        second = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        return f"{first.choices[0].message.content} / {second.choices[0].message.content}"

    agent("hi")
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    inside, outside = flowtel_traces.traces
    assert tree(inside) == [(0, "agent", "AGENT"), (1, "Completions", "CHAT_MODEL"), (1, "Completions", "CHAT_MODEL")]
    assert tree(outside) == [(0, "Completions", "CHAT_MODEL")]
    assert inside.info.trace_id != outside.info.trace_id
    # two calls, each with usage on a child of a span without usage: both count
    total = json.loads(inside.info.trace_metadata["mlflow.trace.tokenUsage"])["total_tokens"]
    per_call = [s.attributes["mlflow.chat.tokenUsage"]["total_tokens"] for s in inside.data.spans if s.parent_id]
    assert total == sum(per_call)


def test_parse_with_pydantic_response_format(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(content='{"city": "Paris", "population": 2100000}')
    parsed = _helpers(openai_client).parse(model="gpt-4o-mini", messages=USER, response_format=CityInfo)

    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("Completions", "CHAT_MODEL")
    assert span.outputs["choices"][0]["message"]["parsed"] == {"city": "Paris", "population": 2100000}
    assert span.outputs == json.loads(parsed.model_dump_json(warnings=False))
    assert span.inputs["messages"] == USER and "CityInfo" in span.inputs["response_format"]


def test_sdk_error_is_recorded_and_reraised_unchanged(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_error(429, message="slow down")
    with pytest.raises(openai.RateLimitError) as raised:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)

    assert raised.value.status_code == 429
    assert str(raised.traceback[-1].path).endswith("_base_client.py")  # raised by the SDK, not us
    [trace] = flowtel_traces.traces
    span = only_span(trace)
    assert span.status.status_code.value == "ERROR"
    assert span.status.description.startswith("RateLimitError")
    event = exception_event(span)
    assert event["exception.type"] == "RateLimitError" and "slow down" in event["exception.message"]
    assert span.outputs is None
    assert trace.info.state.value == "ERROR"


def test_with_raw_response_records_the_parsed_completion(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat(content="raw Paris")
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=USER)
    completion = raw.parse()

    span = only_span(flowtel_traces.last)
    assert span.outputs == json.loads(completion.model_dump_json())
    assert span.inputs["extra_headers"] == {"X-Stainless-Raw-Response": "true"}


# -- streaming ----------------------------------------------------------------------------------------
def test_stream_span_stays_open_while_reading_and_rebuilds_the_completion(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(
        ["Let me ", "check."],
        tool_calls=[{"name": "get_weather", "arguments_chunks": ['{"ci', 'ty": "Pa', 'ris"}'], "id": "call_1"}],
        usage={"prompt_tokens": 20, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 4}},
    )
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    first = next(stream)
    assert flowtel_traces.traces == []  # the span is still open: no finished trace yet
    chunks = [first, *stream]

    span = only_span(flowtel_traces.last)
    assert chunk_values(span) == [json.loads(c.model_dump_json()) for c in chunks]
    assert span.outputs == {
        "id": chunks[0].id,
        "object": "chat.completion",
        "created": chunks[0].created,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant", "content": "Let me check.", "refusal": None,
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }],
        "system_fingerprint": chunks[0].system_fingerprint,
        "service_tier": chunks[0].service_tier,
        "usage": json.loads(chunks[-1].usage.model_dump_json()),
    }
    attributes = span.attributes
    assert attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 20, "output_tokens": 7, "total_tokens": 27, "cache_read_input_tokens": 4,
        "reasoning_tokens": 0,  # the endpoint, like the API, sends zero details
    }
    assert attributes["flowtel.stream.end_reason"] == "consumed"
    assert attributes["flowtel.stream.chunks"] == len(chunks)
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert flowtel_traces.last.info.response_preview == "Let me check."


def test_stream_closed_early_ends_the_span_once_with_the_partial_response(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(["one", " two", " three"])
    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
    next(stream)
    second = next(stream)
    stream.close()
    stream.close()  # again: still one span end
    del stream
    gc.collect()

    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "OK"
    assert span.attributes["flowtel.stream.end_reason"] == "closed"
    assert span.attributes["flowtel.stream.chunks"] == 2
    assert span.outputs["choices"][0]["message"]["content"] == second.choices[0].delta.content == "one"


def test_stream_break_inside_with_block_closes_the_span(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(["one", " two", " three"])
    with openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True) as stream:
        for _chunk in stream:
            break

    assert only_span(flowtel_traces.last).attributes["flowtel.stream.end_reason"] == "closed"


@pytest.mark.parametrize("mode", ["disconnect", "event"])
def test_stream_broken_mid_way_ends_the_span_with_the_error(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any, mode: str
) -> None:
    llm_server.enqueue_openai_chat_stream(["one", " two", " three"], error_after=2, error_mode=mode)  # type: ignore[arg-type]
    received = []
    # APIError for an error event; a dropped connection surfaces as APIConnectionError (or, in older
    # SDKs, as the HTTP library's own error)
    with pytest.raises(Exception) as raised:  # noqa: PT011
        for chunk in openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True):
            received.append(chunk)

    if mode == "event":
        assert isinstance(raised.value, openai.APIError)
    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "ERROR"
    assert exception_event(span)["exception.type"] == type(raised.value).__name__
    assert span.attributes["flowtel.stream.end_reason"] == "error"
    assert len(chunk_values(span)) == len(received) == 2
    assert span.outputs["choices"][0]["message"]["content"] == "one"


def test_stream_dropped_unread_ends_when_garbage_collected(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["never", " read"])
    with openai.OpenAI(base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        del stream
        gc.collect()
        span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] == "garbage_collected"
    assert span.attributes["flowtel.stream.chunks"] == 0


def test_stream_helper_dropped_unread_ends_after_garbage_collection(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(["never", " read"])
    manager = _helpers(openai_client).stream(model="gpt-4o-mini", messages=USER)
    stream = manager.__enter__()  # entered, never read, never exited: only garbage collection ends it
    assert flowtel_traces.traces == []
    del manager, stream
    gc.collect()
    for thread in threading.enumerate():  # a finaliser run by the cyclic collector ends the span on a thread
        if thread.name == "flowtel-stream-finaliser":
            thread.join(10)

    span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] == "garbage_collected"
    assert span.status.status_code.value == "OK"


def test_stream_chunk_events_are_capped_and_counted(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stream, "MAX_CHUNK_EVENTS", 3)
    pieces = [f"w{i} " for i in range(10)]
    llm_server.enqueue_openai_chat_stream(pieces)
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    span = only_span(flowtel_traces.last)
    assert len(chunk_values(span)) == 3
    assert span.attributes["flowtel.stream.chunks"] == len(chunks) == 12  # role + 10 pieces + finish
    assert span.attributes["flowtel.stream.chunk_events_dropped"] == 9
    assert span.outputs["choices"][0]["message"]["content"] == "".join(pieces)


def test_chat_completions_stream_helper(llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any) -> None:
    weather_call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    llm_server.enqueue_openai_chat_stream("Checking", tool_calls=[weather_call])
    with _helpers(openai_client).stream(model="gpt-4o-mini", messages=USER, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()

    span = only_span(flowtel_traces.last)
    message = span.outputs["choices"][0]["message"]
    assert message["content"] == final.choices[0].message.content == "Checking"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"

    # leaving the helper's ``with`` block before reading closes the stream, and so the span
    llm_server.enqueue_openai_chat_stream("unread")
    with _helpers(openai_client).stream(model="gpt-4o-mini", messages=USER):
        pass
    assert flowtel_traces.last.data.spans[0].attributes["flowtel.stream.end_reason"] == "closed"


# -- async ----------------------------------------------------------------------------------------
def test_async_create_and_stream(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    async def scenario() -> tuple[Any, list[Any]]:
        async with _async_client(llm_server) as client:
            llm_server.enqueue_openai_chat(content="async hello")
            completion = await client.chat.completions.create(model="gpt-4o-mini", messages=USER)
            llm_server.enqueue_openai_chat_stream("streamed async hello")
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            assert isinstance(stream, openai.AsyncStream)
            chunks = [chunk async for chunk in stream]
            return completion, chunks

    completion, chunks = asyncio.run(scenario())
    plain, streamed = flowtel_traces.traces
    assert only_span(plain).name == "AsyncCompletions"
    assert only_span(plain).outputs == json.loads(completion.model_dump_json())
    span = only_span(streamed)
    assert span.outputs["choices"][0]["message"]["content"] == "streamed async hello"
    assert span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == chunks[-1].usage.total_tokens
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"


def test_async_stream_cancelled_while_waiting_for_a_chunk(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_chat_stream(["one", " two", " three"], hold_after=2)

    async def scenario() -> int:
        async with _async_client(llm_server) as client:
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
            got_one = asyncio.Event()
            received: list[Any] = []

            async def reader() -> None:
                async for chunk in stream:  # the only suspension point: waiting for a chunk
                    received.append(chunk)
                    got_one.set()

            task = asyncio.create_task(reader())
            await got_one.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            llm_server.release_held_streams()
            await stream.close()
            return len(received)

    received = asyncio.run(scenario())
    span = only_span(flowtel_traces.last)
    assert span.attributes["flowtel.stream.end_reason"] == "cancelled"
    assert span.status.status_code.value == "ERROR"
    assert exception_event(span)["exception.type"] == "CancelledError"
    assert len(chunk_values(span)) == received >= 1  # how many arrive before the hold depends on the SDK


def test_async_stream_closed_early(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    async def scenario() -> None:
        async with _async_client(llm_server) as client:
            llm_server.enqueue_openai_chat_stream(["one", " two", " three"])
            async with await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True) as stream:
                async for _chunk in stream:
                    break

    asyncio.run(scenario())
    assert only_span(flowtel_traces.last).attributes["flowtel.stream.end_reason"] == "closed"


# -- Responses, embeddings, legacy completions ------------------------------------------------------
def test_responses_create(llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_responses(
        "Let me look.",
        function_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
        usage={"input_tokens": 30, "output_tokens": 9, "input_tokens_details": {"cached_tokens": 10},
               "output_tokens_details": {"reasoning_tokens": 3}},
    )
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}, {"type": "web_search"}]
    response = _responses(openai_client).create(model="gpt-4.1", input="Weather in Paris?", tools=tools)

    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("Responses", "CHAT_MODEL")
    assert span.outputs == json.loads(response.model_dump_json())
    attributes = span.attributes
    assert attributes["mlflow.chat.tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "web_search"}},
    ]
    assert attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 30, "output_tokens": 9, "total_tokens": 39, "cache_read_input_tokens": 10,
        "reasoning_tokens": 3,
    }
    assert "input" not in attributes and attributes["model"] == "gpt-4.1"


def test_responses_stream_records_the_completed_response(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_responses_stream(["Sun", "ny"], usage={"input_tokens": 5, "output_tokens": 2})
    events = list(_responses(openai_client).create(model="gpt-4.1", input="Weather?", stream=True))

    span = only_span(flowtel_traces.last)
    completed = events[-1]
    assert completed.type == "response.completed"
    assert span.outputs == json.loads(completed.response.model_dump_json())
    assert span.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 5, "output_tokens": 2, "total_tokens": 7, "cache_read_input_tokens": 0, "reasoning_tokens": 0,
    }
    assert len(chunk_values(span)) == len(events)

    llm_server.enqueue_openai_responses_stream(["Sun", "ny"])
    with _responses(openai_client).stream(model="gpt-4.1", input="Weather?") as stream:
        final = stream.get_final_response()
    assert only_span(flowtel_traces.last).outputs["output"][0]["content"][0]["text"] == final.output_text == "Sunny"


def test_embeddings_and_legacy_completions(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    embedding = openai_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    llm_server.enqueue_openai_completion("once upon", usage={"prompt_tokens": 3, "completion_tokens": 2})
    openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say")
    llm_server.enqueue_openai_completion(["once", " upon"])
    list(openai_client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say", stream=True))

    embed, legacy, legacy_stream = (only_span(t) for t in flowtel_traces.traces)
    assert (embed.name, embed.span_type) == ("Embeddings", "EMBEDDING")
    assert "mlflow.message.format" not in embed.attributes
    assert embed.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": embedding.usage.prompt_tokens, "total_tokens": embedding.usage.total_tokens,
    }
    assert len(embed.outputs["data"]) == 2
    assert (legacy.name, legacy.span_type) == ("Completions", "LLM")
    assert legacy.attributes["mlflow.chat.tokenUsage"] == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    assert legacy_stream.outputs["choices"][0]["text"] == "once upon"


# -- switches -------------------------------------------------------------------------------------
def test_tracing_disabled_records_nothing(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    with flowtel.tracing.context(enabled=False):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True)
        assert type(stream) is openai.Stream
        list(stream)
    assert flowtel_traces.traces == []


def test_azure_client_is_recorded_with_the_azure_provider(llm_server: ScriptedLLMServer, flowtel_traces: Any) -> None:
    client = openai.AzureOpenAI(
        base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, api_version="2024-10-21", max_retries=0,
    )
    with client, pytest.raises(openai.NotFoundError):  # Azure paths (/deployments/...) are not scripted
        client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    span = only_span(flowtel_traces.last)
    assert span.attributes["mlflow.llm.provider"] == "azure"
    assert_no_secret(flowtel_traces.last, TEST_OPENAI_API_KEY)


# -- OpenAI-compatible services: the provider from the client's base_url ---------------------------
@pytest.mark.parametrize(
    ("base_url", "provider"),
    [
        ("https://api.openai.com/v1", "openai"),
        ("https://api.groq.com/openai/v1", "groq"),
        ("http://localhost:11434/v1", "ollama"),
        ("http://127.0.0.1:11434/v1", "ollama"),
        ("https://api.deepseek.com", "deepseek"),
        ("https://api.mistral.ai/v1", "mistral"),
        ("https://api.together.xyz/v1", "together_ai"),
        ("https://api.fireworks.ai/inference/v1", "fireworks_ai"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.x.ai/v1", "xai"),
        ("https://my-resource.openai.azure.com/openai/v1/", "azure"),
        ("http://localhost:8000/v1", "vllm"),
        ("http://localhost:1234/v1", "lm_studio"),
        ("https://llm.internal.example.com/v1", "openai"),
        ("http://localhost:9999/v1", "openai"),
    ],
)
def test_provider_is_read_from_the_base_url(base_url: str, provider: str) -> None:
    from flowtel.integrations.openai._base_url import provider_for

    with openai.OpenAI(base_url=base_url, api_key=TEST_OPENAI_API_KEY) as client:
        assert provider_for(client) == provider


def test_openai_compatible_service_is_recorded_with_its_provider(
    llm_server: ScriptedLLMServer, flowtel_traces: Any
) -> None:
    # the scripted endpoint stands in for a self-hosted server named by a user rule (which wins)
    flowtel.openai.register_provider(f"http://localhost:{llm_server.port}", "vllm")
    flowtel.openai.register_provider(".example.com", "groq")
    try:
        client = openai.OpenAI(
            base_url=f"http://localhost:{llm_server.port}/v1", api_key=TEST_OPENAI_API_KEY, max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )
        with client:
            client.chat.completions.create(model="llama-3.1-8b", messages=USER)
            list(client.chat.completions.create(model="llama-3.1-8b", messages=USER, stream=True))
        with openai.OpenAI(base_url="https://gw.example.com/v1", api_key="k") as other:
            from flowtel.integrations.openai._base_url import provider_for

            assert provider_for(other) == "groq"
    finally:
        flowtel.openai.reset_providers()
    chat, stream = flowtel_traces.traces
    assert only_span(chat).attributes["mlflow.llm.provider"] == "vllm"
    assert only_span(stream).attributes["mlflow.llm.provider"] == "vllm"
    assert_no_secret(chat, TEST_OPENAI_API_KEY)


def test_register_provider_rejects_bad_rules_at_once() -> None:
    from flowtel._exceptions import InvalidParameterError

    for host, provider, port in (("", "groq", None), ("api.example.com", "", None), ("h", "p", 70000)):
        with pytest.raises(InvalidParameterError):
            flowtel.openai.register_provider(host, provider, port=port)


def test_with_streaming_response_stream_ends_with_the_parsed_stream(
    llm_server: ScriptedLLMServer, openai_client: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_chat_stream(["Par", "is"])
    with openai_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=USER, stream=True
    ) as raw:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "Paris"
    span = only_span(flowtel_traces.last)
    assert span.outputs["choices"][0]["message"]["content"] == "Paris"
    assert span.attributes["flowtel.stream.end_reason"] == "consumed"
