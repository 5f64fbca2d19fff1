"""flowtel.langchain.autolog(): real langchain-core / LangGraph runs (fake chat models for
provider-free cases; langchain-openai / langchain-anthropic over HTTP to the local scripted endpoint)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest

import flowtel
from tests._servers.llm import OPENAI_CHAT_COMPLETIONS, ScriptedLLMServer
from tests._servers.llm_fixtures import (
    CLIENT_TIMEOUT_S,
    TEST_ANTHROPIC_API_KEY,
    TEST_OPENAI_API_KEY,
)
from tests.integrations._helpers import (
    assert_no_secret,
    chunk_values,
    exception_event,
    only_span,
    tree,
)

pytest.importorskip("langchain_core")
from langchain_core.agents import AgentAction, AgentFinish  # noqa: E402
from langchain_core.callbacks import CallbackManager  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

pytestmark = pytest.mark.usefixtures("langchain_autolog")

PROMPT = ChatPromptTemplate.from_messages([("system", "Answer from: {context}"), ("user", "{question}")])
DOCS = [
    Document(page_content="Paris is the capital of France.", metadata={"source": "atlas"}, id="d1"),
    Document(page_content="Lyon is in France.", metadata={"source": "guide"}, id="d2"),
]


class KeywordRetriever(BaseRetriever):
    """A tiny in-memory retriever: documents sharing a word with the query."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        words = {w for w in query.lower().strip("?").split() if len(w) > 3}
        return [d for d in self.docs if words & set(d.page_content.lower().strip(".").split())]


class ApprovalState(TypedDict):
    answer: str


def fake_model(*answers: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=a) for a in answers]))


@pytest.fixture
def openai_and_langchain(openai_autolog: None) -> Iterator[Any]:
    langchain_openai = pytest.importorskip("langchain_openai")
    yield langchain_openai


def chat_openai(langchain_openai: Any, server: ScriptedLLMServer, **kwargs: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        model="gpt-4o-mini", base_url=server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0,
        timeout=CLIENT_TIMEOUT_S, **kwargs,
    )


# -- chains, chat models, retrievers ----------------------------------------------------------------
def test_rag_chain_is_a_nested_span_tree(flowtel_traces: Any) -> None:
    retriever = KeywordRetriever(docs=DOCS)
    chain = (
        {"context": retriever | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs), name="join"),
         "question": RunnablePassthrough()}
        | PROMPT
        | fake_model("Paris.")
        | StrOutputParser()
    )
    assert chain.invoke("What is the capital?") == "Paris."

    [trace] = flowtel_traces.traces
    assert tree(trace, by_name=True) == [  # siblings by name: the parallel branches run in threads
        (0, "RunnableSequence", "CHAIN"),
        (1, "ChatPromptTemplate", "CHAIN"),
        (1, "GenericFakeChatModel", "CHAT_MODEL"),
        (1, "RunnableParallel<context,question>", "CHAIN"),
        (2, "RunnablePassthrough", "CHAIN"),
        (2, "RunnableSequence", "CHAIN"),
        (3, "KeywordRetriever", "RETRIEVER"),
        (3, "join", "CHAIN"),
        (1, "StrOutputParser", "CHAIN"),
    ]
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert (root.inputs, root.outputs) == ("What is the capital?", "Paris.")
    spans = {s.name: s for s in trace.data.spans}
    retriever_span = spans["KeywordRetriever"]
    assert retriever_span.inputs == "What is the capital?"
    assert retriever_span.outputs == [
        {"page_content": "Paris is the capital of France.", "metadata": {"source": "atlas"}, "id": "d1"},
    ]
    model = spans["GenericFakeChatModel"]
    assert model.inputs == {"messages": [
        {"role": "system", "content": "Answer from: Paris is the capital of France."},
        {"role": "user", "content": "What is the capital?"},
    ]}
    assert model.outputs == {"choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": None},
    ]}
    assert model.attributes["mlflow.message.format"] == "langchain"
    assert trace.info.request_preview == '"What is the capital?"'
    assert trace.info.response_preview == '"Paris."'


def test_streaming_chat_model_records_tokens(flowtel_traces: Any) -> None:
    model = fake_model("sunny in Paris")
    assert "".join(str(chunk.content) for chunk in model.stream("weather?")) == "sunny in Paris"

    span = only_span(flowtel_traces.last)
    assert "".join(chunk_values(span)) == "sunny in Paris"
    assert span.attributes["flowtel.stream.chunks"] == len(chunk_values(span))
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert span.outputs["choices"][0]["message"]["content"] == "sunny in Paris"


def test_stream_closed_early_ends_the_model_span_ok(flowtel_traces: Any) -> None:
    stream = fake_model("one two three four").stream("go")
    next(stream)
    stream.close()

    span = only_span(flowtel_traces.last)
    assert span.status.status_code.value == "OK"
    assert span.attributes["flowtel.stream.end_reason"] == "closed"


def test_chain_error_is_recorded_and_reraised(flowtel_traces: Any) -> None:
    def explode(_: Any) -> None:
        raise ValueError("no answer")

    chain = PROMPT | RunnableLambda(explode, name="explode")
    with pytest.raises(ValueError, match="no answer"):
        chain.invoke({"context": "c", "question": "q"})

    trace = flowtel_traces.last
    assert trace.info.state.value == "ERROR"
    spans = {s.name: s for s in trace.data.spans}
    assert exception_event(spans["explode"])["exception.type"] == "ValueError"
    assert spans["RunnableSequence"].status.status_code.value == "ERROR"
    assert spans["ChatPromptTemplate"].status.status_code.value == "OK"


# -- tools, agents, nesting with @flowtel.trace ------------------------------------------------------
def test_tool_nests_trace_functions_and_runs_inside_trace_nest(flowtel_traces: Any) -> None:
    @flowtel.trace
    def lookup(city: str) -> str:
        return f"sunny in {city}"

    @tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return lookup(city)

    @flowtel.trace(span_type="AGENT")
    def agent() -> str:
        return str(get_weather.invoke({"city": "Paris"}))

    assert agent() == "sunny in Paris"
    trace = flowtel_traces.last
    assert tree(trace) == [(0, "agent", "AGENT"), (1, "get_weather", "TOOL"), (2, "lookup", "UNKNOWN")]
    tool_span = next(s for s in trace.data.spans if s.name == "get_weather")
    assert tool_span.inputs == {"city": "Paris"}
    assert tool_span.outputs == "sunny in Paris"
    assert tool_span.attributes["mlflow.spanDescription"] == "Get the weather for a city."
    assert flowtel.get_current_active_span() is None


def test_chain_that_picks_tools_is_an_agent(flowtel_traces: Any) -> None:
    # What an agent executor does through LangChain's callback API.
    run = CallbackManager.configure().on_chain_start({"name": "ToolPicker"}, {"input": "weather?"}, name="ToolPicker")
    run.on_agent_action(AgentAction(tool="get_weather", tool_input={"city": "Paris"}, log="calling"))
    run.on_agent_finish(AgentFinish(return_values={"output": "sunny"}, log="done"))
    run.on_chain_end({"output": "sunny"})

    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("ToolPicker", "AGENT")
    action, finish = span.events
    assert (action.name, action.attributes["tool"], json.loads(action.attributes["tool_input"])) == (
        "agent_action", "get_weather", {"city": "Paris"})
    assert finish.name == "agent_finish"


# -- one LLM call, one span: LangChain with the provider integrations --------------------------------
def test_chat_openai_with_openai_integration_is_one_span_counted_once(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, openai_and_langchain: Any
) -> None:
    llm = chat_openai(openai_and_langchain, llm_server)
    llm_server.enqueue_openai_chat(content="Paris", usage={"prompt_tokens": 9, "completion_tokens": 1},
                                   model="gpt-4o-mini-2024-07-18")
    assert llm.invoke("Capital of France?").content == "Paris"
    llm_server.enqueue_openai_chat(content="streamed Paris", usage={"prompt_tokens": 4, "completion_tokens": 2})
    assert "".join(str(c.content) for c in llm.stream("go", stream_usage=True)) == "streamed Paris"

    invoked, streamed = flowtel_traces.traces
    span = only_span(invoked)  # no "Completions" child: the provider request is this same LLM call
    usage = span.attributes["mlflow.chat.tokenUsage"]
    assert (span.name, span.span_type) == ("ChatOpenAI", "CHAT_MODEL")
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (9, 1, 10)
    assert json.loads(invoked.info.trace_metadata["mlflow.trace.tokenUsage"]) == usage
    assert span.attributes["mlflow.llm.model"] == "gpt-4o-mini-2024-07-18"
    assert span.attributes["mlflow.llm.provider"] == "openai"
    assert span.outputs["choices"][0]["message"] == {"role": "assistant", "content": "Paris"}
    stream_span = only_span(streamed)
    assert stream_span.attributes["mlflow.chat.tokenUsage"]["total_tokens"] == 6
    assert "".join(chunk_values(stream_span)) == "streamed Paris"
    assert_no_secret(invoked, TEST_OPENAI_API_KEY)
    assert len(llm_server.requests_for(OPENAI_CHAT_COMPLETIONS)) == 2


def test_openai_calls_inside_a_tool_are_still_recorded(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, openai_and_langchain: Any
) -> None:
    import openai

    client = openai.OpenAI(base_url=llm_server.openai_base_url, api_key=TEST_OPENAI_API_KEY, max_retries=0)

    @tool
    def summarise(text: str) -> str:
        """Summarise a text with a model."""
        return str(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
                   .choices[0].message.content)

    with client:
        summarise.invoke({"text": "long text"})
    assert tree(flowtel_traces.last) == [(0, "summarise", "TOOL"), (1, "Completions", "CHAT_MODEL")]


def test_only_the_openai_integration_records_langchain_provider_calls(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, openai_and_langchain: Any
) -> None:
    flowtel.langchain.autolog(disable=True)
    llm = chat_openai(openai_and_langchain, llm_server)
    llm_server.enqueue_openai_chat(content="Paris")
    llm.invoke("Capital of France?")

    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("Completions", "CHAT_MODEL")
    assert span.outputs["choices"][0]["message"]["content"] == "Paris"  # parsed from with_raw_response


def test_chat_anthropic_with_anthropic_integration_is_one_span(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, anthropic_autolog: None
) -> None:
    langchain_anthropic = pytest.importorskip("langchain_anthropic")
    llm = langchain_anthropic.ChatAnthropic(
        model="claude-haiku-4-5", base_url=llm_server.anthropic_base_url, api_key=TEST_ANTHROPIC_API_KEY,
        max_retries=0, timeout=CLIENT_TIMEOUT_S,
    )
    llm_server.enqueue_anthropic_message(
        "Paris", usage={"input_tokens": 4, "output_tokens": 1, "cache_read_input_tokens": 2}
    )
    message = llm.invoke("Capital of France?")
    assert message.content == "Paris"

    span = only_span(flowtel_traces.last)
    assert (span.name, span.span_type) == ("ChatAnthropic", "CHAT_MODEL")
    usage = span.attributes["mlflow.chat.tokenUsage"]  # as LangChain reports it (newer versions add the cache)
    reported = message.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        reported["input_tokens"], reported["output_tokens"], reported["total_tokens"])
    assert json.loads(flowtel_traces.last.info.trace_metadata["mlflow.trace.tokenUsage"]) == usage
    assert span.attributes["mlflow.llm.provider"] == "anthropic"
    assert_no_secret(flowtel_traces.last, TEST_ANTHROPIC_API_KEY)


# -- LangGraph ---------------------------------------------------------------------------------------
def test_langgraph_tool_loop(llm_server: ScriptedLLMServer, flowtel_traces: Any, openai_and_langchain: Any) -> None:
    graph_module = pytest.importorskip("langgraph.graph")
    prebuilt = pytest.importorskip("langgraph.prebuilt")

    @tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return f"sunny in {city}"

    bound = chat_openai(openai_and_langchain, llm_server).bind_tools([get_weather])

    def call_model(state: dict[str, Any]) -> dict[str, Any]:
        return {"messages": [bound.invoke(state["messages"])]}

    builder = graph_module.StateGraph(graph_module.MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", prebuilt.ToolNode([get_weather]))
    builder.add_edge(graph_module.START, "model")
    builder.add_conditional_edges("model", prebuilt.tools_condition)
    builder.add_edge("tools", "model")
    graph = builder.compile()
    llm_server.enqueue_openai_chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}],
                                   usage={"prompt_tokens": 10, "completion_tokens": 5})
    llm_server.enqueue_openai_chat(content="It is sunny in Paris.", usage={"prompt_tokens": 20, "completion_tokens": 6})
    result = graph.invoke({"messages": [("user", "Weather in Paris?")]}, config={"configurable": {"thread_id": "t-1"}})

    assert result["messages"][-1].content == "It is sunny in Paris."
    [trace] = flowtel_traces.traces
    assert tree(trace) == [
        (0, "LangGraph", "CHAIN"),
        (1, "model", "CHAIN"),
        (2, "ChatOpenAI", "CHAT_MODEL"),
        (2, "tools_condition", "CHAIN"),
        (1, "tools", "CHAIN"),
        (2, "get_weather", "TOOL"),
        (1, "model", "CHAIN"),
        (2, "ChatOpenAI", "CHAT_MODEL"),
        (2, "tools_condition", "CHAIN"),
    ]
    assert trace.info.trace_metadata["mlflow.trace.session"] == "t-1"
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])["total_tokens"] == 41
    first_model = next(s for s in trace.data.spans if s.span_type == "CHAT_MODEL")
    assert first_model.attributes["mlflow.chat.tools"][0]["function"]["name"] == "get_weather"
    assert first_model.outputs["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert flowtel.get_current_active_span() is None  # no span left attached after the run


def test_langgraph_interrupt_is_not_an_error(flowtel_traces: Any) -> None:
    graph_module = pytest.importorskip("langgraph.graph")
    types = pytest.importorskip("langgraph.types")
    memory = pytest.importorskip("langgraph.checkpoint.memory")
    if not hasattr(types, "interrupt"):
        pytest.skip("interrupt() needs a newer langgraph")

    def approve(state: ApprovalState) -> dict[str, Any]:
        return {"answer": types.interrupt("approve?")}

    builder = graph_module.StateGraph(ApprovalState)
    builder.add_node("approve", approve)
    builder.add_edge(graph_module.START, "approve")
    builder.add_edge("approve", graph_module.END)
    saver = getattr(memory, "InMemorySaver", None) or memory.MemorySaver
    graph = builder.compile(checkpointer=saver())
    config = {"configurable": {"thread_id": "review-1"}}
    graph.invoke({"answer": ""}, config)
    assert graph.invoke(types.Command(resume="yes"), config)["answer"] == "yes"

    paused, resumed = flowtel_traces.traces
    node = next(s for s in paused.data.spans if s.name == "approve")
    assert node.status.status_code.value == "OK"
    assert [e.name for e in node.events] == ["langgraph.bubble_up"]
    assert node.events[0].attributes["type"] == "GraphInterrupt"
    assert paused.info.state.value == resumed.info.state.value == "OK"


def test_async_chain_nests_and_dedupes(
    llm_server: ScriptedLLMServer, flowtel_traces: Any, openai_and_langchain: Any
) -> None:
    llm = chat_openai(openai_and_langchain, llm_server)
    chain = PROMPT | llm | StrOutputParser()

    @flowtel.trace
    async def answer(question: str) -> str:
        return await chain.ainvoke({"context": "atlas", "question": question})

    async def scenario() -> tuple[str, str]:
        llm_server.enqueue_openai_chat(content="Paris")
        first = await answer("Capital?")
        llm_server.enqueue_openai_chat(content="Lyon too")
        pieces = [piece async for piece in chain.astream({"context": "atlas", "question": "More?"})]
        return first, "".join(pieces)

    assert asyncio.run(scenario()) == ("Paris", "Lyon too")
    awaited, streamed = flowtel_traces.traces
    assert tree(awaited) == [
        (0, "answer", "UNKNOWN"),
        (1, "RunnableSequence", "CHAIN"),
        (2, "ChatPromptTemplate", "CHAIN"),
        (2, "ChatOpenAI", "CHAT_MODEL"),
        (2, "StrOutputParser", "CHAIN"),
    ]
    assert tree(streamed) == [
        (0, "RunnableSequence", "CHAIN"),
        (1, "ChatPromptTemplate", "CHAIN"),
        (1, "ChatOpenAI", "CHAT_MODEL"),
        (1, "StrOutputParser", "CHAIN"),
    ]


# -- switching off ------------------------------------------------------------------------------------
def test_disable_removes_the_handler_from_langchain(flowtel_traces: Any) -> None:
    from langchain_core.tracers import context

    flowtel.langchain.autolog(disable=True)
    hooks = list(context._configure_hooks)
    fake_model("x").invoke("hi")
    flowtel.langchain.autolog()
    flowtel.langchain.autolog()  # idempotent: one hook
    assert len(context._configure_hooks) == len(hooks) + 1
    fake_model("y").invoke("hi")
    flowtel.langchain.autolog(disable=True)
    assert context._configure_hooks == hooks

    [trace] = flowtel_traces.traces
    assert only_span(trace).outputs["choices"][0]["message"]["content"] == "y"
    assert isinstance(flowtel.langchain.FlowtelLangchainTracer(), flowtel.langchain.FlowtelLangchainTracer)
