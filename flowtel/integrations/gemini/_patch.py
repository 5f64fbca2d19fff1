"""Patching the ``google-genai`` SDK: which methods are wrapped, and the span each call records.

Nothing here imports ``google.genai`` until :func:`install` runs, after the user imported it.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._call import LLMCall, SdkState
from flowtel.integrations._shared._patch import Patcher, import_attr
from flowtel.integrations._shared._values import field_of, scrub_kwargs, scrub_mapping
from flowtel.integrations.gemini._parse import gemini_tools, gemini_usage, plain
from flowtel.integrations.gemini._stream import GeminiAccumulator

__all__ = ["install", "uninstall"]

_NAME = "gemini"
#: (class, method, span type): on ``google.genai.models``; absent ones (older SDKs) are skipped.
_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("Models", "generate_content", SpanType.CHAT_MODEL),
    ("Models", "generate_content_stream", SpanType.CHAT_MODEL),
    ("Models", "embed_content", SpanType.EMBEDDING),
    ("AsyncModels", "generate_content", SpanType.CHAT_MODEL),
    ("AsyncModels", "generate_content_stream", SpanType.CHAT_MODEL),
    ("AsyncModels", "embed_content", SpanType.EMBEDDING),
)

_patcher = Patcher(_NAME)
_state = SdkState()


def install() -> None:
    _state.streams = (types.GeneratorType,)  # generate_content_stream is a generator function
    _state.async_streams = (types.AsyncGeneratorType,)  # the awaited async one returns an async generator
    for cls, method, span_type in _TARGETS:
        owner = import_attr("google.genai.models", cls)
        if owner is None:
            continue
        start = functools.partial(_start, span_type)
        wrap = _call.async_wrapper if cls.startswith("Async") else _call.sync_wrapper
        _patcher.wrap(owner, method, wrap(_state, start))
    _state.active = True


def uninstall() -> None:
    _state.active = False
    _patcher.restore()


class _GeminiCall(LLMCall):
    """Records responses as the SDK's JSON (``to_json_dict``: unset fields left out)."""

    __slots__ = ()

    def finish(self, outputs: Any) -> None:
        super().finish(plain(outputs))


# -- spans ----------------------------------------------------------------------------------------
def _start(
    span_type: str, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> LLMCall:
    inputs: dict[str, Any] = scrub_kwargs(kwargs)
    if args:
        inputs["args"] = list(args)
    config = kwargs.get("config")
    if config is not None:
        inputs["config"] = scrub_mapping(plain(config))  # http_options headers may carry credentials
    attributes: dict[str, Any] = {}
    if span_type == SpanType.CHAT_MODEL:
        attributes[SpanAttributeKey.MESSAGE_FORMAT] = _NAME
        tools = gemini_tools(config)
        if tools:
            attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    model = kwargs.get("model")
    if isinstance(model, str):
        attributes[SpanAttributeKey.MODEL] = model  # replaced by the response's model version
    provider = _provider(instance)
    attributes[SpanAttributeKey.MODEL_PROVIDER] = provider
    name = f"{type(instance).__name__}.{getattr(wrapped, '__name__', 'call')}"
    span = _call.start_llm_span(name, span_type, inputs, attributes)
    return _GeminiCall(span, functools.partial(_finalize, provider), GeminiAccumulator)


def _provider(instance: Any) -> str:
    client = getattr(instance, "_api_client", None)
    return "vertex_ai" if getattr(client, "vertexai", False) is True else "gemini"


def _finalize(provider: str, span: LiveSpan, response: Any) -> None:
    _call.set_chat_attributes(
        span, model=field_of(response, "model_version"), provider=provider,
        usage=gemini_usage(field_of(response, "usage_metadata")),
    )
