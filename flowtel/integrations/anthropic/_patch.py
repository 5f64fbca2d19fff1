"""Patching the ``anthropic`` SDK: the messages resources, the span each call records, and
``messages.stream()``'s context manager.

Nothing here imports ``anthropic`` until :func:`install` runs, after the user imported it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared import _call
from flowtel.integrations._shared._call import LLMCall, SdkState
from flowtel.integrations._shared._patch import Patcher, import_attr
from flowtel.integrations._shared._stream import ObjectProxy, TracedAsyncStream, TracedStream
from flowtel.integrations._shared._values import field_of, omit_unset, scrub_kwargs
from flowtel.integrations.anthropic._parse import anthropic_tools, anthropic_usage
from flowtel.integrations.anthropic._stream import MessageAccumulator

__all__ = ["install", "uninstall"]

_NAME = "anthropic"
_PROVIDER = "anthropic"

#: (module, class) of every messages resource; absent ones (older SDKs) are skipped.
_RESOURCES: tuple[tuple[str, str], ...] = (
    ("anthropic.resources.messages", "Messages"),
    ("anthropic.resources.messages", "AsyncMessages"),
    ("anthropic.resources.beta.messages", "Messages"),
    ("anthropic.resources.beta.messages", "AsyncMessages"),
)


# -- install --------------------------------------------------------------------------------------
_patcher = Patcher(_NAME)
_state = SdkState()


def install() -> None:
    import anthropic

    _state.streams = (anthropic.Stream,)
    _state.async_streams = (anthropic.AsyncStream,)
    for module, cls in _RESOURCES:
        owner = import_attr(module, cls)
        if owner is None:
            continue
        wrap = _call.async_wrapper if owner.__name__.startswith("Async") else _call.sync_wrapper
        for method in ("create", "parse"):  # (decorators can hide ``async def``: go by the class)
            _patcher.wrap(owner, method, wrap(_state, _start))
        _patcher.wrap(owner, "stream", _stream_wrapper)
    _state.active = True


def uninstall() -> None:
    _state.active = False
    _patcher.restore()


# -- spans ----------------------------------------------------------------------------------------
def _start(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> LLMCall:
    inputs: dict[str, Any] = scrub_kwargs(omit_unset(kwargs))
    if args:
        inputs["args"] = list(args)
    attributes: dict[str, Any] = {
        SpanAttributeKey.MESSAGE_FORMAT: "anthropic",
        SpanAttributeKey.MODEL_PROVIDER: _PROVIDER,
    }
    tools = anthropic_tools(kwargs.get("tools"))
    if tools:
        attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    if isinstance(kwargs.get("model"), str):
        attributes[SpanAttributeKey.MODEL] = kwargs["model"]  # replaced by the response's model
    name = f"{type(instance).__name__}.{getattr(wrapped, '__name__', 'create')}"
    span = _call.start_llm_span(name, SpanType.CHAT_MODEL, inputs, attributes)
    return LLMCall(span, _finalize, MessageAccumulator)


def _finalize(span: LiveSpan, message: Any) -> None:
    usage = anthropic_usage(field_of(message, "usage"))
    _call.set_chat_attributes(span, model=field_of(message, "model"), usage=usage)


# -- messages.stream() ----------------------------------------------------------------------------
def _stream_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    manager = wrapped(*args, **kwargs)
    if not _state.active:
        return manager
    return _TracedStreamManager(manager, lambda: _start(wrapped, instance, args, kwargs))


class _TracedStreamManager(ObjectProxy):
    """``MessageStreamManager``: the span starts when the request does (``__enter__``) and ends with
    the stream the manager hands out (read to the end, closed by ``__exit__``, broken, or dropped)."""

    def __init__(self, wrapped: Any, start: Callable[[], LLMCall]) -> None:
        super().__init__(wrapped)
        self._self_start = start

    def _self_begin(self) -> LLMCall | None:
        if not _state.should_trace():
            return None
        call = self._self_start()
        return call if call.recording else None

    def __enter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return self.__wrapped__.__enter__()
        call.enter()
        try:
            stream = self.__wrapped__.__enter__()
        except BaseException as exc:
            call.exit()
            call.fail(exc)
            raise
        call.exit()
        _trace_message_stream(call, stream, TracedStream)
        return stream

    def __exit__(self, *exc_info: Any) -> Any:
        return self.__wrapped__.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return await self.__wrapped__.__aenter__()
        call.enter()
        try:
            stream = await self.__wrapped__.__aenter__()
        except BaseException as exc:
            call.exit()
            call.fail(exc)
            raise
        call.exit()
        _trace_message_stream(call, stream, TracedAsyncStream)
        return stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)


def _trace_message_stream(
    call: LLMCall, stream: Any, proxy: type[TracedStream] | type[TracedAsyncStream]
) -> None:
    """Route the ``MessageStream``'s raw events through a traced stream (its ``_raw_stream``)."""
    try:
        raw = getattr(stream, "_raw_stream", None)
        if raw is None:
            call.finish(None)
            return
        traced = proxy(raw, call.recorder())
        stream._raw_stream = traced
        if "response" in vars(stream):  # older SDKs close the stream through their own reference
            stream.response = traced.response
    except Exception as exc:  # noqa: BLE001 - the user gets their stream whatever happened here
        report_internal_error("anthropic message stream", exc)
        call.finish(None)
