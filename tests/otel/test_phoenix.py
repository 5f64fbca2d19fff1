"""flowtel's default OTLP export to a real Arize Phoenix server (its own cached venv, see
``tests/_servers/phoenix_server.py``), asserted through Phoenix's own REST and GraphQL APIs: what
Phoenix's trace list, span views and sessions show, with nothing but an OTLP endpoint configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import flowtel
from flowtel import SpanType
from flowtel.exporters import OtlpExporter
from tests._servers.llm import ScriptedLLMServer
from tests._servers.phoenix_server import PhoenixServer, PhoenixUnavailableError
from tests.otel.test_otlp_span_types import ANSWER, DOC_TEXT, QUESTION, TYPES, run_agent

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixServer]:
    server = PhoenixServer(tmp_path_factory.mktemp("phoenix"))
    try:
        server.start()
    except PhoenixUnavailableError as exc:
        pytest.fail(f"Arize Phoenix could not run here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def project(phoenix: PhoenixServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A Phoenix project of this test's own (OpenInference's resource attribute), and flowtel
    sending to Phoenix with nothing but the endpoint: the default conventions."""
    name = request.node.name.replace("[", "-").replace("]", "")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={name}")
    exporter = OtlpExporter(phoenix.otlp_endpoint)
    assert exporter.conventions == "genai"
    flowtel.tracing.set_destination(exporter)
    return name


ROOT_SPANS = """
query {
  projects(first: 50) { edges { node { name
    spans(first: 50, filterCondition: "parent_id is None") { edges { node {
      name spanKind statusCode input { value } output { value } cumulativeTokenCountTotal metadata
    } } }
    sessions(first: 10) { edges { node {
      sessionId userId numTraces firstInput { value } lastOutput { value }
    } } }
  } } }
}
"""


def project_view(phoenix: PhoenixServer, project: str) -> dict[str, Any]:
    """The project's root spans (the trace list) and sessions, as Phoenix's UI queries them."""
    data = phoenix.graphql(ROOT_SPANS)
    [node] = [e["node"] for e in data["projects"]["edges"] if e["node"]["name"] == project]
    return {
        "roots": [e["node"] for e in node["spans"]["edges"]],
        "sessions": [e["node"] for e in node["sessions"]["edges"]],
    }


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


def test_every_span_type_renders_in_phoenix(phoenix: PhoenixServer, project: str) -> None:
    run_agent()
    assert flowtel.flush(30)
    spans = by_name(phoenix.wait_for_spans(project, len(TYPES)))

    kinds = {name: spans[name]["span_kind"] for name in spans}
    assert kinds == {
        "invoke_agent agent": "AGENT", "plan": "CHAIN", "search": "RETRIEVER", "rerank": "RERANKER",
        "embeddings": "EMBEDDING", "execute_tool lookup": "TOOL", "chat local-7b": "LLM", "parse": "CHAIN",
        "misc": "CHAIN", "remember": "CHAIN",
    }  # no span is "unknown"
    llm = spans["chat local-7b"]["attributes"]  # Phoenix's span view reads OpenInference's (flat) keys
    assert (llm["llm.input_messages.0.message.role"], llm["llm.input_messages.0.message.content"]) == ("user", QUESTION)
    assert (llm["llm.output_messages.0.message.role"], llm["llm.output_messages.0.message.content"]) == (
        "assistant", ANSWER)
    assert (llm["llm.token_count.prompt"], llm["llm.token_count.completion"], llm["llm.model_name"]) == (11, 7, "local-7b")
    assert [e["name"] for e in spans["chat local-7b"]["events"]] == ["flowtel.stream.first_chunk", "gen_ai.evaluation.result"]
    search = spans["search"]["attributes"]
    assert search["input.value"] == "louvre location"
    assert (search["retrieval.documents.0.document.id"], search["retrieval.documents.0.document.content"]) == (
        "doc-1", DOC_TEXT)
    tool = spans["execute_tool lookup"]["attributes"]
    assert (tool["tool.name"], tool["tool.parameters.museum"]) == ("lookup", "Louvre")  # Phoenix unnests JSON
    assert json.loads(tool["output.value"]) == {"city": "Paris"}
    assert spans["plan"]["attributes"]["input.value"] == json.dumps({"question": QUESTION})
    assert json.loads(spans["embeddings"]["attributes"]["input.value"]) == {"input": "embed me please"}

    view = project_view(phoenix, project)
    [root] = view["roots"]  # the trace list: its Input and Output columns
    assert (root["input"]["value"], root["output"]["value"]) == (QUESTION, ANSWER)
    assert root["cumulativeTokenCountTotal"] == 18  # the trace list's token column
    [session] = view["sessions"]
    assert (session["sessionId"], session["userId"], session["numTraces"]) == ("sess-7", "bob", 1)
    assert (session["firstInput"]["value"], session["lastOutput"]["value"]) == (QUESTION, ANSWER)
    root_attributes = spans["invoke_agent agent"]["attributes"]
    assert (root_attributes["user.id"], root_attributes["session.id"]) == ("bob", "sess-7")
    metadata = root["metadata"] if isinstance(root["metadata"], dict) else json.loads(root["metadata"])
    metadata = {k: v for k, v in metadata.items() if not k.startswith("flowtel.")}  # cost notes
    assert metadata == {"team": "search", "app.version": "2.0", "client_request_id": "req-7"}  # the metadata column
    evaluations = [e["attributes"] for e in spans["invoke_agent agent"]["events"] if e["name"] == "gen_ai.evaluation.result"]
    assert [e["gen_ai.evaluation.name"] for e in evaluations] == ["helpful", "expected_answer"]


@pytest.mark.usefixtures("openai_autolog")
def test_llm_messages_tool_calls_and_errors_in_phoenix(
    phoenix: PhoenixServer, project: str, llm_server: ScriptedLLMServer, openai_client: Any
) -> None:
    llm_server.enqueue_openai_chat(
        tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], model="gpt-4o-mini-2024-07-18",
        usage={"prompt_tokens": 20, "completion_tokens": 5},
    )

    @flowtel.trace(span_type=SpanType.AGENT)
    def weather_agent(question: str) -> str:
        openai_client.chat.completions.create(
            model="gpt-4o-mini", tools=[WEATHER_TOOL],
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
        )
        raise RuntimeError("weather service down")

    with pytest.raises(RuntimeError, match="weather service down"):
        weather_agent("Weather in Paris?")
    assert flowtel.flush(30)
    spans = by_name(phoenix.wait_for_spans(project, 2))

    chat = spans["chat gpt-4o-mini"]
    assert chat["span_kind"] == "LLM"
    attributes = chat["attributes"]
    assert [attributes[f"llm.input_messages.{i}.message.role"] for i in range(2)] == ["system", "user"]
    assert attributes["llm.input_messages.1.message.content"] == "Weather in Paris?"
    call = "llm.output_messages.0.message.tool_calls.0.tool_call."
    assert attributes[call + "function.name"] == "get_weather"
    assert json.loads(attributes[call + "function.arguments"]) == {"city": "Paris"}
    assert (attributes["llm.model_name"], attributes["llm.provider"]) == ("gpt-4o-mini", "openai")
    assert (attributes["llm.token_count.prompt"], attributes["llm.token_count.completion"]) == (20, 5)
    assert json.loads(attributes["llm.tools.0.tool.json_schema"])["function"]["name"] == "get_weather"
    agent = spans["invoke_agent weather_agent"]
    assert agent["status_code"] == "ERROR" and "weather service down" in agent["status_message"]
    assert [e["name"] for e in agent["events"]] == ["exception"]


def test_the_readme_quickstart_shape_in_phoenix(phoenix: PhoenixServer, project: str) -> None:
    with flowtel.start_span("llm", span_type="CHAT_MODEL") as span:
        span.set_inputs({"messages": [{"role": "user", "content": "Hi"}]})
        span.set_outputs("Hello!")
    assert flowtel.flush(30)
    [stored] = phoenix.wait_for_spans(project, 1)
    assert stored["span_kind"] == "LLM"
    assert stored["attributes"]["llm.output_messages.0.message.content"] == "Hello!"
    assert stored["attributes"]["llm.input_messages.0.message.content"] == "Hi"
