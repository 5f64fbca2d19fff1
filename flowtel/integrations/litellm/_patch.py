"""Patching ``litellm``: which functions are wrapped, and the span each call records.

Nothing here imports ``litellm`` until :func:`install` runs, after the user imported it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._call import LLMCall, SdkState
from flowtel.integrations._shared._patch import Patcher
from flowtel.integrations._shared._values import field_of, omit_unset, scrub_kwargs
from flowtel.integrations.litellm._parse import litellm_provider, litellm_tools, litellm_usage, response_provider
from flowtel.integrations.litellm._stream import ChatAccumulator

__all__ = ["install", "uninstall"]

_NAME = "litellm"
#: (function, span type, its positional parameters): wrapped on the ``litellm`` module.
_TARGETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("completion", SpanType.CHAT_MODEL, ("model", "messages")),
    ("acompletion", SpanType.CHAT_MODEL, ("model", "messages")),
    ("embedding", SpanType.EMBEDDING, ("model", "input")),
    ("aembedding", SpanType.EMBEDDING, ("model", "input")),
)

_patcher = Patcher(_NAME)
# sync and async calls return the same stream class, iterated with ``for`` or ``async for``
_sync = SdkState()
_async = SdkState()


def install() -> None:
    import litellm

    stream_class = _stream_class(litellm)
    _sync.streams = (stream_class,) if stream_class else ()
    _async.async_streams = (stream_class,) if stream_class else ()
    for function, span_type, positional in _TARGETS:
        getattr(litellm, function, None)  # newer versions bind some names on first access
        start = functools.partial(_start, litellm, function, span_type, positional)
        wrap = _call.async_wrapper(_async, start) if function.startswith("a") else _call.sync_wrapper(_sync, start)
        _patcher.wrap(cast(Any, litellm), function, wrap)  # a module: its functions are the attributes
    _sync.active = _async.active = True


def uninstall() -> None:
    _sync.active = _async.active = False
    _patcher.restore()


def _stream_class(litellm: Any) -> type | None:
    found = getattr(litellm, "CustomStreamWrapper", None)
    if found is None:
        try:
            from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

            found = CustomStreamWrapper
        except ImportError:
            return None
    return found if isinstance(found, type) else None


# -- spans ----------------------------------------------------------------------------------------
def _start(
    litellm: Any, function: str, span_type: str, positional: tuple[str, ...],
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
) -> LLMCall:
    named = dict(zip(positional, args))
    named.update(kwargs)
    recorded = scrub_kwargs(omit_unset(named))
    inputs: dict[str, Any] = dict(recorded)
    if len(args) > len(positional):
        inputs["args"] = list(args[len(positional):])
    attributes: dict[str, Any] = {}
    if span_type == SpanType.CHAT_MODEL:
        attributes[SpanAttributeKey.MESSAGE_FORMAT] = _NAME
        tools = litellm_tools(named.get("tools"))
        if tools:
            attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    model = named.get("model")
    if isinstance(model, str):
        attributes[SpanAttributeKey.MODEL] = model  # replaced by the response's model
    provider = litellm_provider(litellm, model, named)
    if provider:
        attributes[SpanAttributeKey.MODEL_PROVIDER] = provider
    span = _call.start_llm_span(f"litellm-{function}", span_type, inputs, attributes)
    return LLMCall(span, functools.partial(_finalize, provider), ChatAccumulator)


def _finalize(provider: str | None, span: LiveSpan, response: Any) -> None:
    _call.set_chat_attributes(
        span, model=field_of(response, "model"), provider=response_provider(response) or provider,
        usage=litellm_usage(field_of(response, "usage")),
    )
