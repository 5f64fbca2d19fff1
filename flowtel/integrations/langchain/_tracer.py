"""The LangChain callback handler behind ``flowtel.langchain.autolog()`` (imports ``langchain_core``).

Every LangChain run becomes a span, nested as LangChain nests the runs: chains (``CHAIN``, or
``AGENT`` for agent executors), chat models (``CHAT_MODEL``) and LLMs (``LLM``), tools (``TOOL``),
retrievers (``RETRIEVER``, outputs as ``Document`` dicts). LangGraph graphs and their nodes arrive
as chains. Runs LangChain marks hidden (``langsmith:hidden``: graph plumbing) are left out; their
children attach to the nearest recorded ancestor.

The handler runs inline (``run_inline``), in the run's own context, so it can make each span
current while its run executes: ``@flowtel.trace`` functions and SDK calls inside a tool or a chat
model nest under it, and an OpenAI/Anthropic call made by a chat model is recognised as that same
LLM call (one span, tokens counted once).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import trace as otel_trace

from flowtel._errors import report_internal_error
from flowtel.entities import (
    Document,
    LiveSpan,
    NoOpSpan,
    SpanEvent,
    SpanType,
    TraceMetadataKey,
)
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _context, _stream
from flowtel.integrations._shared._call import set_chat_attributes
from flowtel.integrations._shared._normalize import add_usage
from flowtel.integrations._shared._values import scrub_mapping
from flowtel.integrations.anthropic._parse import anthropic_usage
from flowtel.integrations.langchain._parse import any_tools, langchain_usage
from flowtel.integrations.openai._parse import openai_usage
from flowtel.tracing import _clock, _engine, _fluent

__all__ = ["FlowtelLangchainTracer"]

_HIDDEN_TAG = "langsmith:hidden"
_AGENT_NAMES = frozenset({"AgentExecutor"})
_ROLES = {
    "human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "function",
    "developer": "developer", "remove": "remove",
    "HumanMessageChunk": "user", "AIMessageChunk": "assistant", "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool", "FunctionMessageChunk": "function",
}


class _Run:
    __slots__ = ("span", "context_token", "llm_token", "tokens")

    def __init__(self, span: LiveSpan | NoOpSpan, context_token: object, llm_token: Any) -> None:
        self.span = span
        self.context_token = context_token
        self.llm_token = llm_token
        self.tokens = 0


class FlowtelLangchainTracer(BaseCallbackHandler):
    """LangChain callback handler that records runs as flowtel spans (sync and async runs).

    Installed for every run by ``flowtel.langchain.autolog()``; can also be passed explicitly:
    ``chain.invoke(x, config={"callbacks": [FlowtelLangchainTracer()]})``. Thread-safe: one
    instance serves concurrent runs (state is keyed by LangChain's run id).
    """

    run_inline = True  # called in the run's own context, so spans can be made current
    raise_error = False

    def __init__(self) -> None:
        super().__init__()
        self._runs: dict[UUID, _Run] = {}
        self._run_span_ids: set[str] = set()  # spans of LangChain runs (vs. @trace spans in between)

    # -- span bookkeeping ------------------------------------------------------------------------
    def _start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        name: str,
        span_type: str,
        inputs: Any,
        attributes: dict[str, Any],
        *,
        llm: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> LiveSpan | NoOpSpan | None:
        if not _context.tracing_on():
            return None
        try:
            parent = self._parent(parent_run_id)
            context = otel_trace.set_span_in_context(cast(Any, parent._span)) if parent is not None else None
            attrs = _engine.start_attributes(span_type, attributes, inputs=inputs, has_inputs=True)
            span = _engine.start_live_span(name, span_type, attrs, parent=context)
            if parent is None and metadata:
                _set_session(span, metadata)
            context_token = _engine.attach(span)
            llm_token = _context.llm_call_scope(span) if llm else None
            self._runs[run_id] = _Run(span, context_token, llm_token)
            if isinstance(span, LiveSpan):
                self._run_span_ids.add(span.span_id)
            return span
        except Exception as exc:  # noqa: BLE001 - a callback must never break the user's chain
            report_internal_error("langchain run start", exc)
            return None

    def _parent(self, parent_run_id: UUID | None) -> LiveSpan | NoOpSpan | None:
        """The LangChain parent's span, unless the current span is a non-LangChain descendant of it
        (a ``@flowtel.trace`` function inside a tool that runs another chain) -- then that one.

        A current span of another LangChain run is not a parent: streaming pipelines run sibling
        steps nested in each other's iteration, and LangChain's run tree is the truth there."""
        run = self._runs.get(parent_run_id) if parent_run_id is not None else None
        if run is None:
            return None  # the current context decides (a @trace span, or a new trace)
        active = _fluent.get_current_active_span()
        if active is None or active is run.span or not isinstance(run.span, LiveSpan):
            return run.span
        if active.span_id in self._run_span_ids:
            return run.span
        return active if _descends_from(active, run.span) else run.span

    def _end(self, run_id: UUID, outputs: Any = None, error: BaseException | None = None) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            return
        span = run.span
        try:
            if isinstance(span, LiveSpan):
                self._run_span_ids.discard(span.span_id)
            if run.llm_token is not None:
                _context.llm_call_reset(run.llm_token)
            _engine.detach(run.context_token)
            if error is not None and _is_control_flow(error) and isinstance(span, LiveSpan):
                # LangGraph's interrupt() / Command(graph=PARENT) travel as exceptions: not failures
                span.add_event(SpanEvent("langgraph.bubble_up", _clock.now_ns(), {
                    "type": type(error).__name__, "message": str(error)[:1000]}))
                error = None
            if error is not None and not isinstance(error, GeneratorExit):
                if outputs is not None and isinstance(span, LiveSpan):
                    span.set_outputs(outputs)
                _engine.end_error(span, error)
                return
            if error is not None and isinstance(span, LiveSpan):  # a stream closed before its end
                span.set_attribute(_stream.STREAM_END_REASON, "closed")
            _engine.end_ok(span, outputs, has_outputs=outputs is not None)
        except Exception as exc:  # noqa: BLE001 - a callback must never break the user's chain
            report_internal_error("langchain run end", exc)
            _engine.end_ok(span, None, has_outputs=False)

    def _span(self, run_id: UUID) -> LiveSpan | None:
        run = self._runs.get(run_id)
        return run.span if run is not None and isinstance(run.span, LiveSpan) else None

    def _event(self, run_id: UUID, name: str, attributes: dict[str, Any]) -> None:
        span = self._span(run_id)
        if span is not None:
            span.add_event(SpanEvent(name, _clock.now_ns(), attributes))

    # -- chains ----------------------------------------------------------------------------------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if tags and _HIDDEN_TAG in tags:
            return
        run_name = _run_name(serialized, name, "chain")
        span_type = SpanType.AGENT if run_name in _AGENT_NAMES else SpanType.CHAIN
        attributes = {"metadata": scrub_mapping(metadata)} if metadata else {}
        self._start(run_id, parent_run_id, run_name, span_type, inputs, attributes, metadata=metadata)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, inputs: Any = None, **kwargs: Any) -> None:
        try:
            if inputs is not None and (span := self._span(run_id)) is not None:
                span.set_inputs(inputs)
            self._end(run_id, outputs)
        except Exception as exc:  # noqa: BLE001 - a callback must never break the user's chain
            report_internal_error("langchain chain end", exc)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, inputs: Any = None, **kwargs: Any) -> None:
        try:
            if inputs is not None and (span := self._span(run_id)) is not None:
                span.set_inputs(inputs)
            self._end(run_id, error=error)
        except Exception as exc:  # noqa: BLE001 - a callback must never break the user's chain
            report_internal_error("langchain chain error", exc)

    def on_agent_action(self, action: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._span(run_id)
        if span is None:
            return
        if span.span_type == SpanType.CHAIN:
            span.set_span_type(SpanType.AGENT)  # a chain that picks tools is an agent
        self._event(run_id, "agent_action", {
            "tool": str(getattr(action, "tool", "")),
            "tool_input": _context.encode("tool_input", getattr(action, "tool_input", None)),
            "log": str(getattr(action, "log", "")),
        })

    def on_agent_finish(self, finish: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._event(run_id, "agent_finish", {
            "return_values": _context.encode("return_values", getattr(finish, "return_values", None)),
            "log": str(getattr(finish, "log", "")),
        })

    # -- chat models and LLMs --------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            if len(messages) == 1:
                inputs: Any = {"messages": [_chat_message(m) for m in messages[0]]}
            else:
                inputs = [[_chat_message(m) for m in batch] for batch in messages]
        except Exception as exc:  # noqa: BLE001 - an unusual message records as LangChain gave it
            report_internal_error("langchain chat inputs", exc)
            inputs = messages
        self._start_model(
            run_id, parent_run_id, _run_name(serialized, name, "chat model"), SpanType.CHAT_MODEL, inputs,
            metadata, kwargs,
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(
            run_id, parent_run_id, _run_name(serialized, name, "llm"), SpanType.LLM, prompts, metadata, kwargs
        )

    def _start_model(
        self, run_id: UUID, parent_run_id: UUID | None, name: str, span_type: str, inputs: Any,
        metadata: Mapping[str, Any] | None, kwargs: Mapping[str, Any],
    ) -> None:
        params = kwargs.get("invocation_params") or {}
        attributes: dict[str, Any] = {SpanAttributeKey.MESSAGE_FORMAT: "langchain"}
        if params:
            attributes["invocation_params"] = scrub_mapping(params)
        if metadata:
            attributes["metadata"] = scrub_mapping(metadata)
        tools = any_tools(params.get("tools")) if isinstance(params, Mapping) else []
        if tools:
            attributes[SpanAttributeKey.CHAT_TOOLS] = tools
        model = (metadata or {}).get("ls_model_name") or _param(params, "model") or _param(params, "model_name")
        if model:
            attributes[SpanAttributeKey.MODEL] = model
        provider = _provider(metadata, params)
        if provider:
            attributes[SpanAttributeKey.MODEL_PROVIDER] = provider
        self._start(run_id, parent_run_id, name, span_type, inputs, attributes, llm=True)

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        run = self._runs.get(run_id)
        if run is None or not isinstance(run.span, LiveSpan):
            return
        try:
            index = run.tokens
            run.tokens = index + 1
            now = _clock.now_ns()
            if index < _stream.MAX_CHUNK_EVENTS:
                value = {_stream.CHUNK_VALUE_KEY: _context.encode(_stream.CHUNK_VALUE_KEY, token)}
                run.span.add_event(SpanEvent(f"{_stream.CHUNK_EVENT_PREFIX}{index}", now, value))
            if index == 0:
                start = run.span._span.start_time or now
                run.span.set_attribute(_stream.TIME_TO_FIRST_TOKEN, max(0, now - start) / 1e9)
        except Exception as exc:  # noqa: BLE001 - a callback must never break the user's stream
            report_internal_error("langchain new token", exc)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_model(run_id, response, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, response: Any = None, **kwargs: Any) -> None:
        self._end_model(run_id, response, error)

    def _end_model(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return
        outputs = None
        try:
            if run.tokens and isinstance(run.span, LiveSpan):
                run.span.set_attribute(_stream.STREAM_CHUNKS, run.tokens)
                if run.tokens > _stream.MAX_CHUNK_EVENTS:
                    run.span.set_attribute(_stream.STREAM_CHUNK_EVENTS_DROPPED, run.tokens - _stream.MAX_CHUNK_EVENTS)
            if response is not None and isinstance(run.span, LiveSpan):
                outputs = _model_outputs(response)
                _set_model_attributes(run.span, response)
        except Exception as exc:  # noqa: BLE001 - the span still ends, with less detail
            report_internal_error("langchain llm end", exc)
        self._end(run_id, outputs, error)

    # -- tools and retrievers --------------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        attributes: dict[str, Any] = {"metadata": scrub_mapping(metadata)} if metadata else {}
        description = (serialized or {}).get("description")
        if description:
            attributes[SpanAttributeKey.DESCRIPTION] = description
        recorded = inputs if isinstance(inputs, dict) and inputs else _tool_input(input_str)
        self._start(run_id, parent_run_id, _run_name(serialized, name, "tool"), SpanType.TOOL, recorded, attributes)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        attributes = {"metadata": scrub_mapping(metadata)} if metadata else {}
        self._start(
            run_id, parent_run_id, _run_name(serialized, name, "retriever"), SpanType.RETRIEVER, query, attributes
        )

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        try:
            outputs: Any = [Document.from_langchain_document(d).to_dict() for d in documents]
        except Exception as exc:  # noqa: BLE001 - unusual documents are recorded as they are
            report_internal_error("langchain retriever documents", exc)
            outputs = documents
        self._end(run_id, outputs)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error=error)

    # -- other events ----------------------------------------------------------------------------
    def on_text(self, text: str, *, run_id: UUID, **kwargs: Any) -> None:
        self._event(run_id, "text", {"text": str(text)})

    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        outcome = getattr(retry_state, "outcome", None)
        self._event(run_id, "retry", {
            "attempt": int(getattr(retry_state, "attempt_number", 0) or 0),
            "outcome": "N/A" if outcome is None else ("failed" if outcome.failed else "success"),
        })


# -- helpers --------------------------------------------------------------------------------------
def _run_name(serialized: Mapping[str, Any] | None, name: str | None, default: str) -> str:
    if name:
        return name
    if serialized:
        if serialized.get("name"):
            return str(serialized["name"])
        ids = serialized.get("id")
        if isinstance(ids, list) and ids:
            return str(ids[-1])
    return default


def _is_control_flow(error: BaseException) -> bool:
    return any(cls.__name__ == "GraphBubbleUp" for cls in type(error).__mro__)


def _descends_from(span: LiveSpan, ancestor: LiveSpan) -> bool:
    if span.trace_id != ancestor.trace_id:
        return False
    record = _engine.record_of(span.trace_id)
    if record is None:
        return False
    target = ancestor.span_id
    parent_id = span.parent_id
    for _ in range(256):
        if parent_id is None:
            return False
        if parent_id == target:
            return True
        parent = record.live.get(int(parent_id, 16))
        if parent is None:
            return False
        parent_id = parent.parent_id
    return False


def _set_session(span: LiveSpan | NoOpSpan, metadata: Mapping[str, Any]) -> None:
    """LangGraph's ``thread_id`` is the conversation: the trace's session (as MLflow does)."""
    thread_id = metadata.get("thread_id")
    if thread_id is None or not isinstance(span, LiveSpan):
        return
    record = _engine.record_of(span.trace_id)
    if record is not None:
        record.metadata.setdefault(TraceMetadataKey.TRACE_SESSION, str(thread_id))


def _param(params: Any, key: str) -> Any:
    return params.get(key) if isinstance(params, Mapping) else None


def _provider(metadata: Mapping[str, Any] | None, params: Any) -> str | None:
    provider = (metadata or {}).get("ls_provider")
    if provider:
        return str(provider)
    kind = _param(params, "_type")
    if isinstance(kind, str) and kind:
        return kind.removesuffix("-chat").removeprefix("chat-")
    return None


def _tool_input(input_str: str) -> Any:
    # Tools often get a dict rendered with str(); read it back for display, conservatively.
    if isinstance(input_str, str) and input_str[:1] in "{[" and len(input_str) < 100_000:
        try:
            return ast.literal_eval(input_str)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return input_str


def _chat_message(message: Any) -> Any:
    """A LangChain message as an OpenAI-style chat message dict (MLflow's normalisation)."""
    kind = getattr(message, "type", None)
    if kind is None:
        return message
    role = getattr(message, "role", None) if kind in ("chat", "ChatMessageChunk") else _ROLES.get(kind, kind)
    result: dict[str, Any] = {"role": role, "content": getattr(message, "content", None)}
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        result["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": "function",
                "function": {"name": call.get("name"), "arguments": json.dumps(call.get("args", {}), default=str)},
            }
            for call in tool_calls
        ]
    if getattr(message, "tool_call_id", None):
        result["tool_call_id"] = message.tool_call_id
    if getattr(message, "name", None):
        result["name"] = message.name
    return result


def _generations(response: Any) -> list[Any]:
    return [g for batch in getattr(response, "generations", None) or [] for g in batch]


def _finish_reason(generation: Any) -> Any:
    info = getattr(generation, "generation_info", None) or {}
    if info.get("finish_reason") is not None:
        return info["finish_reason"]
    metadata = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
    return metadata.get("finish_reason") or metadata.get("stop_reason")


def _model_outputs(response: Any) -> Any:
    batches = getattr(response, "generations", None)
    if not isinstance(batches, list) or len(batches) != 1:
        return response
    choices = []
    for index, generation in enumerate(batches[0]):
        message = getattr(generation, "message", None)
        chat = _chat_message(message) if message is not None else {"role": "assistant", "content": generation.text}
        choices.append({"index": index, "message": chat, "finish_reason": _finish_reason(generation)})
    return {"choices": choices}


def _set_model_attributes(span: LiveSpan, response: Any) -> None:
    usage: dict[str, int] | None = None
    model = None
    for generation in _generations(response):
        message = getattr(generation, "message", None)
        if message is None:
            continue
        usage = add_usage(usage, langchain_usage(getattr(message, "usage_metadata", None)))
        metadata = getattr(message, "response_metadata", None) or {}
        model = model or metadata.get("model_name") or metadata.get("model")
    llm_output = getattr(response, "llm_output", None) or {}
    if usage is None and isinstance(llm_output, Mapping):
        if llm_output.get("token_usage"):
            usage = openai_usage(llm_output["token_usage"])
        elif llm_output.get("usage"):
            usage = anthropic_usage(llm_output["usage"])
    if isinstance(llm_output, Mapping):
        model = model or llm_output.get("model_name") or llm_output.get("model")
    set_chat_attributes(span, model=model, usage=usage)
