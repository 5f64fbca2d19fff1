"""Patching the ``openai`` SDK: which methods are wrapped, and the span each call records.

Nothing here imports ``openai`` until :func:`install` runs, after the user imported it.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._call import LLMCall, SdkState
from flowtel.integrations._shared._patch import Patcher, import_attr
from flowtel.integrations._shared._stream import StreamAccumulator
from flowtel.integrations._shared._values import field_of, omit_unset, scrub_kwargs
from flowtel.integrations.openai._base_url import provider_for
from flowtel.integrations.openai._parse import openai_tools, openai_usage
from flowtel.integrations.openai._stream import ChatAccumulator, CompletionAccumulator, ResponsesAccumulator

__all__ = ["install", "uninstall"]

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


# -- install --------------------------------------------------------------------------------------
_patcher = Patcher(_NAME)
_state = SdkState()


def install() -> None:
    import openai

    _state.streams = (openai.Stream,)
    _state.async_streams = (openai.AsyncStream,)
    for module, cls, method, kind in _TARGETS:
        owner = import_attr(module, cls)
        if owner is None:
            continue
        start = functools.partial(_start, kind)
        wrap = _call.async_wrapper if _is_async(owner, method) else _call.sync_wrapper
        _patcher.wrap(owner, method, wrap(_state, start))
    _state.active = True
    _hook_agents()


def uninstall() -> None:
    _state.active = False
    _patcher.restore()
    from flowtel.integrations.openai._agents import uninstall_agents

    uninstall_agents()


_agents_hooked = False


def _hook_agents() -> None:
    """The OpenAI Agents SDK, when the program imports it (now, if it already has)."""
    global _agents_hooked
    import wrapt

    if not _agents_hooked:
        _agents_hooked = True
        wrapt.register_post_import_hook(_on_agents_import, "agents")
    elif "agents" in sys.modules:
        _on_agents_import(sys.modules["agents"])


def _on_agents_import(module: Any) -> None:
    del module
    if not _state.active:
        return
    try:
        from flowtel.integrations.openai._agents import install_agents

        install_agents()
    except Exception as exc:  # noqa: BLE001 - the Agents SDK runs untraced rather than broken
        report_internal_error("openai-agents integration install", exc)


def _is_async(owner: type, method: str) -> bool:
    # The SDK's ``required_args`` decorator hides ``async def`` behind a plain function.
    return owner.__name__.startswith("Async") or inspect.iscoroutinefunction(vars(owner).get(method))


# -- spans ----------------------------------------------------------------------------------------
def _start(
    kind: str, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> LLMCall:
    recorded = scrub_kwargs(omit_unset(kwargs))
    inputs: dict[str, Any] = dict(recorded)
    if args:
        inputs["args"] = list(args)
    # as MLflow records them: every argument but the conversation is also its own attribute
    attributes: dict[str, Any] = {k: v for k, v in recorded.items() if k not in ("messages", "input")}
    if kind != _EMBEDDING:
        attributes[SpanAttributeKey.MESSAGE_FORMAT] = "openai"
    tools = openai_tools(kwargs.get("tools"))
    if tools:
        attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    if isinstance(kwargs.get("model"), str):
        attributes[SpanAttributeKey.MODEL] = kwargs["model"]  # replaced by the response's model
    provider = _provider(instance)
    attributes[SpanAttributeKey.MODEL_PROVIDER] = provider
    span = _call.start_llm_span(type(instance).__name__, _SPAN_TYPES[kind], inputs, attributes)
    return LLMCall(span, functools.partial(_finalize, provider), _ACCUMULATORS[kind])


def _provider(instance: Any) -> str:
    return provider_for(getattr(instance, "_client", None))


def _finalize(provider: str, span: LiveSpan, response: Any) -> None:
    usage = openai_usage(field_of(response, "usage"))
    _call.set_chat_attributes(span, model=field_of(response, "model"), provider=provider, usage=usage)


_ACCUMULATORS: dict[str, Callable[[], StreamAccumulator]] = {
    _CHAT: ChatAccumulator,
    _COMPLETION: CompletionAccumulator,
    _EMBEDDING: ChatAccumulator,  # embeddings never stream
    _RESPONSES: ResponsesAccumulator,
}
