"""Tracing for the ``openai`` SDK: ``flowtel.openai.autolog()``.

Records, like ``mlflow.openai.autolog()``, one span per call of

* ``chat.completions.create`` / ``parse`` (``CHAT_MODEL``; ``.stream()`` goes through ``create``),
* ``responses.create`` / ``parse`` (``CHAT_MODEL``; ``.stream()`` goes through ``create``),
* ``completions.create`` (legacy, ``LLM``) and ``embeddings.create`` (``EMBEDDING``),

sync and async, streaming or not. Span name: the resource class (``Completions``, ``Responses``,
``Embeddings``, ``AsyncCompletions``...). Inputs: the call's keyword arguments with credentials
redacted; each one except ``messages``/``input`` is also its own attribute (as MLflow does).
Outputs: the response (a stream's is rebuilt from its chunks). Attributes:
``mlflow.message.format="openai"``, ``mlflow.chat.tools``, ``mlflow.llm.model`` (the response's
model), ``mlflow.llm.provider`` (``openai``, or ``azure`` for Azure clients), ``mlflow.chat.tokenUsage``.

Nothing here imports ``openai`` until the integration is installed, after the user imported it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations import _common, _registry
from flowtel.integrations._common import LLMCall, Patcher, SdkState, field_of

__all__ = ["autolog"]

_NAME = "openai"

_CHAT, _COMPLETION, _EMBEDDING, _RESPONSES = "chat", "completion", "embedding", "responses"
_SPAN_TYPES = {
    _CHAT: SpanType.CHAT_MODEL,
    _COMPLETION: SpanType.LLM,
    _EMBEDDING: SpanType.EMBEDDING,
    _RESPONSES: SpanType.CHAT_MODEL,
}
#: (module, class, method, kind) of every wrapped method; absent ones (older SDKs) are skipped.
_TARGETS: tuple[tuple[str, str, str, str], ...] = (
    ("openai.resources.chat.completions", "Completions", "create", _CHAT),
    ("openai.resources.chat.completions", "Completions", "parse", _CHAT),
    ("openai.resources.chat.completions", "AsyncCompletions", "create", _CHAT),
    ("openai.resources.chat.completions", "AsyncCompletions", "parse", _CHAT),
    ("openai.resources.beta.chat.completions", "Completions", "parse", _CHAT),
    ("openai.resources.beta.chat.completions", "AsyncCompletions", "parse", _CHAT),
    ("openai.resources.responses", "Responses", "create", _RESPONSES),
    ("openai.resources.responses", "Responses", "parse", _RESPONSES),
    ("openai.resources.responses", "AsyncResponses", "create", _RESPONSES),
    ("openai.resources.responses", "AsyncResponses", "parse", _RESPONSES),
    ("openai.resources.completions", "Completions", "create", _COMPLETION),
    ("openai.resources.completions", "AsyncCompletions", "create", _COMPLETION),
    ("openai.resources.embeddings", "Embeddings", "create", _EMBEDDING),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create", _EMBEDDING),
)


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every OpenAI SDK call (chat completions, Responses, completions, embeddings).

    Idempotent; ``disable=True`` restores the SDK's original methods. Lazy: if ``openai`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function (or a
    LangChain run) nest under it; a call made inside a LangChain chat-model span is that span's
    request and is not recorded a second time.

    Args:
        disable: Switch the integration off and restore the original methods.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``openai`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``openai`` is not installed (``pip install 'flowtel[openai]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)


# -- install --------------------------------------------------------------------------------------
_patcher = Patcher(_NAME)
_state = SdkState()


def _install() -> None:
    import openai

    _state.streams = (openai.Stream,)
    _state.async_streams = (openai.AsyncStream,)
    for module, cls, method, kind in _TARGETS:
        owner = _common.import_attr(module, cls)
        if owner is None:
            continue
        start = functools.partial(_start, kind)
        wrap = _common.async_wrapper if _is_async(owner, method) else _common.sync_wrapper
        _patcher.wrap(owner, method, wrap(_state, start))
    _state.active = True


def _uninstall() -> None:
    _state.active = False
    _patcher.restore()


def _is_async(owner: type, method: str) -> bool:
    # The SDK's ``required_args`` decorator hides ``async def`` behind a plain function.
    return owner.__name__.startswith("Async") or inspect.iscoroutinefunction(vars(owner).get(method))


# -- spans ----------------------------------------------------------------------------------------
def _start(
    kind: str, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> LLMCall:
    recorded = _common.scrub_kwargs(_common.omit_unset(kwargs))
    inputs: dict[str, Any] = dict(recorded)
    if args:
        inputs["args"] = list(args)
    # as MLflow records them: every argument but the conversation is also its own attribute
    attributes: dict[str, Any] = {k: v for k, v in recorded.items() if k not in ("messages", "input")}
    if kind != _EMBEDDING:
        attributes[SpanAttributeKey.MESSAGE_FORMAT] = "openai"
    tools = _common.openai_tools(kwargs.get("tools"))
    if tools:
        attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    if isinstance(kwargs.get("model"), str):
        attributes[SpanAttributeKey.MODEL] = kwargs["model"]  # replaced by the response's model
    provider = _provider(instance)
    attributes[SpanAttributeKey.MODEL_PROVIDER] = provider
    span = _common.start_llm_span(type(instance).__name__, _SPAN_TYPES[kind], inputs, attributes)
    return LLMCall(span, functools.partial(_finalize, provider), _ACCUMULATORS[kind])


def _provider(instance: Any) -> str:
    client = getattr(instance, "_client", None)
    return "azure" if "Azure" in type(client).__name__ else "openai"


def _finalize(provider: str, span: LiveSpan, response: Any) -> None:
    usage = _common.openai_usage(field_of(response, "usage"))
    _common.set_chat_attributes(span, model=field_of(response, "model"), provider=provider, usage=usage)


# -- streams --------------------------------------------------------------------------------------
class _ChatAccumulator:
    """Rebuilds a ``chat.completion`` from ``chat.completion.chunk`` s (text, tool-call deltas, usage)."""

    __slots__ = ("envelope", "choices", "usage")

    def __init__(self) -> None:
        self.envelope: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> bool:
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            value = getattr(chunk, key, None)
            if value is not None:
                self.envelope[key] = value
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        content = False
        for choice in getattr(chunk, "choices", None) or ():
            content = self._add_choice(choice) or content
        return content

    def _add_choice(self, choice: Any) -> bool:
        state = self.choices.get(choice.index)
        if state is None:
            state = self.choices[choice.index] = {
                "role": "assistant", "content": [], "refusal": [], "tool_calls": {}, "finish_reason": None,
            }
        if choice.finish_reason is not None:
            state["finish_reason"] = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return False
        content = False
        if delta.role:
            state["role"] = delta.role
        if delta.content:
            state["content"].append(delta.content)
            content = True
        if getattr(delta, "refusal", None):
            state["refusal"].append(delta.refusal)
            content = True
        for call in delta.tool_calls or ():
            slot = state["tool_calls"].get(call.index)
            if slot is None:
                slot = state["tool_calls"][call.index] = {"id": None, "type": "function", "name": "", "arguments": []}
            if call.id:
                slot["id"] = call.id
            function = call.function
            if function is not None:
                if function.name:
                    slot["name"] = function.name
                if function.arguments:
                    slot["arguments"].append(function.arguments)
            content = True
        return content

    def result(self) -> dict[str, Any] | None:
        if not self.envelope and not self.choices:
            return None
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {
                "role": state["role"],
                "content": "".join(state["content"]) if state["content"] else None,
                "refusal": "".join(state["refusal"]) if state["refusal"] else None,
            }
            if state["tool_calls"]:
                message["tool_calls"] = [
                    {"id": slot["id"], "type": slot["type"],
                     "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])}}
                    for _, slot in sorted(state["tool_calls"].items())
                ]
            choices.append({"index": index, "message": message, "finish_reason": state["finish_reason"],
                            "logprobs": None})
        return {
            "id": self.envelope.get("id"),
            "object": "chat.completion",
            "created": self.envelope.get("created"),
            "model": self.envelope.get("model"),
            "choices": choices,
            "system_fingerprint": self.envelope.get("system_fingerprint"),
            "service_tier": self.envelope.get("service_tier"),
            "usage": _common.jsonable(self.usage),
        }


class _CompletionAccumulator:
    """Rebuilds a legacy ``text_completion`` from its chunks."""

    __slots__ = ("envelope", "texts", "finish", "usage")

    def __init__(self) -> None:
        self.envelope: dict[str, Any] = {}
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, Any] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> bool:
        for key in ("id", "created", "model", "system_fingerprint"):
            value = getattr(chunk, key, None)
            if value is not None:
                self.envelope[key] = value
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        content = False
        for choice in getattr(chunk, "choices", None) or ():
            if choice.text:
                self.texts.setdefault(choice.index, []).append(choice.text)
                content = True
            if choice.finish_reason is not None:
                self.finish[choice.index] = choice.finish_reason
        return content

    def result(self) -> dict[str, Any] | None:
        if not self.envelope:
            return None
        indexes = sorted(set(self.texts) | set(self.finish))
        return {
            **self.envelope,
            "object": "text_completion",
            "choices": [
                {"index": i, "text": "".join(self.texts.get(i, [])), "finish_reason": self.finish.get(i),
                 "logprobs": None}
                for i in indexes
            ],
            "usage": _common.jsonable(self.usage),
        }


_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_CONTENT = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
})


class _ResponsesAccumulator:
    """The Responses API's final ``response`` event, or a partial response from the items seen."""

    __slots__ = ("base", "final", "items")

    def __init__(self) -> None:
        self.base: Any = None
        self.final: Any = None
        self.items: list[Any] = []

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind in _RESPONSES_FINAL:
            self.final = event.response
        elif kind in ("response.created", "response.in_progress"):
            self.base = event.response
        elif kind == "response.output_item.done":
            self.items.append(event.item)
        return kind in _RESPONSES_CONTENT

    def result(self) -> Any:
        if self.final is not None:
            return self.final
        if self.base is None:
            return None
        partial = _common.jsonable(self.base)
        if isinstance(partial, dict):
            partial["output"] = [_common.jsonable(item) for item in self.items]
        return partial


_ACCUMULATORS: dict[str, Callable[[], _common.StreamAccumulator]] = {
    _CHAT: _ChatAccumulator,
    _COMPLETION: _CompletionAccumulator,
    _EMBEDDING: _ChatAccumulator,  # embeddings never stream
    _RESPONSES: _ResponsesAccumulator,
}
