"""The OpenAI Agents SDK under flowtel.openai.autolog(): the real ``openai-agents`` runner over the
Responses API to the local scripted endpoint, captured with ``flowtel_traces``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import flowtel
from tests._servers.llm import ScriptedLLMServer
from tests._servers.llm_fixtures import TEST_OPENAI_API_KEY
from tests.integrations._helpers import assert_no_secret, exception_event, tree

agents = pytest.importorskip("agents")
openai = pytest.importorskip("openai")


@pytest.fixture(autouse=True)
def agents_autolog() -> Iterator[None]:
    agents.set_trace_processors([])  # no export to the OpenAI backend from the tests
    flowtel.openai.autolog()
    try:
        yield
    finally:
        flowtel.openai.autolog(disable=True)


@pytest.fixture
def model(llm_server: ScriptedLLMServer) -> Any:
    client = openai.AsyncOpenAI(base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0)
    return agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)


@agents.function_tool
def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"sunny in {city}"


def _by_type(trace: Any, span_type: str) -> list[Any]:
    return sorted((s for s in trace.data.spans if s.span_type == span_type), key=lambda s: s.start_time_ns)


def test_run_sync_with_a_tool_is_one_trace(llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_responses(function_calls=[{"name": "get_weather", "arguments": {"city": "Paris"},
                                                         "call_id": "c1"}], usage={"input_tokens": 30, "output_tokens": 5})
    llm_server.enqueue_openai_responses("It is sunny in Paris.", usage={"input_tokens": 40, "output_tokens": 7})
    agent = agents.Agent(name="weather", instructions="Answer weather questions.", tools=[get_weather], model=model)
    result = agents.Runner.run_sync(agent, "Weather in Paris?")
    assert result.final_output == "It is sunny in Paris."

    [trace] = flowtel_traces.traces
    assert tree(trace) == [(0, "Agent workflow", "AGENT"), (1, "weather", "AGENT"), (2, "AsyncResponses", "CHAT_MODEL"),
                           (2, "get_weather", "TOOL"), (2, "AsyncResponses", "CHAT_MODEL")]
    root = [s for s in trace.data.spans if s.parent_id is None][0]
    assert (root.name, root.span_type) == ("Agent workflow", "AGENT")
    assert root.inputs == {"agent": "weather", "input": "Weather in Paris?"}
    assert root.outputs == "It is sunny in Paris."
    [agent_span] = [s for s in trace.data.spans if s.name == "weather"]
    assert agent_span.span_type == "AGENT"
    chats = _by_type(trace, "CHAT_MODEL")
    assert len(chats) == 2  # one span per model call, though the SDK also traces it
    assert all(c.name == "AsyncResponses" for c in chats)
    [tool] = _by_type(trace, "TOOL")
    assert (tool.name, tool.inputs, tool.outputs) == ("get_weather", {"city": "Paris"}, "sunny in Paris")
    usage = json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])
    assert (usage["input_tokens"], usage["output_tokens"]) == (70, 12)  # counted once
    ids = {s.span_id: s for s in trace.data.spans}

    def ancestors(span: Any) -> list[str]:
        names = []
        while span.parent_id:
            span = ids[span.parent_id]
            names.append(span.name)
        return names

    assert "weather" in ancestors(chats[0]) and "weather" in ancestors(tool)
    assert_no_secret(trace, TEST_OPENAI_API_KEY)


def test_run_nests_under_the_callers_span_and_shows_handoffs(
    llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any
) -> None:
    french = agents.Agent(name="french", instructions="Answer in French.", model=model)
    triage = agents.Agent(name="triage", instructions="Route.", handoffs=[french], model=model)
    llm_server.enqueue_openai_responses(function_calls=[{"name": "transfer_to_french", "arguments": {}, "call_id": "h1"}])
    llm_server.enqueue_openai_responses("Bonjour !")

    @flowtel.trace(span_type="CHAIN")
    def app() -> str:
        return str(agents.Runner.run_sync(triage, "Hello").final_output)

    assert app() == "Bonjour !"
    [trace] = flowtel_traces.traces
    rows = tree(trace)
    assert rows[0] == (0, "app", "CHAIN") and rows[1] == (1, "Agent workflow", "AGENT")
    names = [name for _, name, _ in rows]
    assert "triage" in names and "french" in names
    [handoff] = [s for s in trace.data.spans if s.inputs == {"from_agent": "triage", "to_agent": "french"}]
    assert handoff.span_type == "CHAIN"
    assert len(_by_type(trace, "CHAT_MODEL")) == 2


def test_guardrail_tripwire_is_recorded(llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any) -> None:
    @agents.input_guardrail
    def no_secrets(ctx: Any, agent: Any, user_input: Any) -> Any:
        return agents.GuardrailFunctionOutput(output_info=None, tripwire_triggered="password" in str(user_input))

    llm_server.enqueue_openai_responses("never sent")
    agent = agents.Agent(name="guarded", instructions="Help.", model=model, input_guardrails=[no_secrets])
    with pytest.raises(agents.InputGuardrailTripwireTriggered):
        agents.Runner.run_sync(agent, "my password is hunter2")
    [trace] = flowtel_traces.traces
    [guardrail] = _by_type(trace, "GUARDRAIL")
    assert guardrail.name == "no_secrets" and guardrail.outputs == {"triggered": True}
    root = [s for s in trace.data.spans if s.parent_id is None][0]
    assert root.status.status_code.value == "ERROR"
    assert exception_event(root)["exception.type"].endswith("InputGuardrailTripwireTriggered")


async def test_run_streamed_with_a_tool_keeps_the_tree(
    llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any
) -> None:
    llm_server.enqueue_openai_responses_stream(function_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    llm_server.enqueue_openai_responses_stream("Sunny in Oslo.")
    agent = agents.Agent(name="weather", instructions="Help.", tools=[get_weather], model=model)
    result = agents.Runner.run_streamed(agent, "Weather in Oslo?")
    async for _ in result.stream_events():
        pass
    [trace] = flowtel_traces.traces
    assert tree(trace) == [(0, "Agent workflow", "AGENT"), (1, "weather", "AGENT"), (2, "AsyncResponses", "CHAT_MODEL"),
                           (2, "get_weather", "TOOL"), (2, "AsyncResponses", "CHAT_MODEL")]


async def test_run_streamed(llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any) -> None:
    llm_server.enqueue_openai_responses_stream("Streaming works.")
    agent = agents.Agent(name="streamer", instructions="Help.", model=model)
    result = agents.Runner.run_streamed(agent, "Go")
    async for _ in result.stream_events():
        pass
    assert result.final_output == "Streaming works."
    [trace] = flowtel_traces.traces
    root = [s for s in trace.data.spans if s.parent_id is None][0]
    assert (root.name, root.span_type) == ("Agent workflow", "AGENT")
    [chat] = _by_type(trace, "CHAT_MODEL")
    assert chat.outputs["output"][0]["content"][0]["text"] == "Streaming works."
    assert chat.attributes["flowtel.stream.end_reason"] == "consumed"
    assert tree(trace)[:2] == [(0, "Agent workflow", "AGENT"), (1, "streamer", "AGENT")]
    assert flowtel.get_current_active_span() is None  # nothing left current in the caller's context


def test_disable_records_nothing(llm_server: ScriptedLLMServer, model: Any, flowtel_traces: Any) -> None:
    flowtel.openai.autolog(disable=True)
    agent = agents.Agent(name="plain", instructions="Help.", model=model)
    agents.Runner.run_sync(agent, "Hi")
    assert flowtel_traces.traces == []
    assert not hasattr(agents.run.AgentRunner.run, "__wrapped__") or not isinstance(
        vars(agents.run.AgentRunner)["run"], __import__("wrapt").ObjectProxy)
