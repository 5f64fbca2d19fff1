"""Tracing for the ``anthropic`` SDK: ``flowtel.anthropic.autolog()``.

Records one ``CHAT_MODEL`` span per call of ``messages.create`` (also with ``stream=True``),
``messages.stream()`` (the ``MessageStreamManager`` context manager: ``text_stream``,
``get_final_message()``...) and ``messages.parse``, on ``client.messages`` and
``client.beta.messages``, sync and async. Span name as MLflow's: ``Messages.create``,
``AsyncMessages.create``, ``Messages.stream``...; inputs: the keyword arguments with credentials
redacted; outputs: the ``Message`` (a stream's is rebuilt from its events: text, ``tool_use`` input
JSON, thinking, usage). Attributes: ``mlflow.message.format="anthropic"``, ``mlflow.chat.tools``,
``mlflow.llm.model``, ``mlflow.llm.provider="anthropic"``, ``mlflow.chat.tokenUsage`` (input
including cache reads/writes, like MLflow).

Nothing here imports ``anthropic`` until the integration is installed, after the user imported it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, SpanType
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations import _common, _registry
from flowtel.integrations._common import LLMCall, Patcher, SdkState, field_of

__all__ = ["autolog"]

_NAME = "anthropic"
_PROVIDER = "anthropic"

#: (module, class) of every messages resource; absent ones (older SDKs) are skipped.
_RESOURCES: tuple[tuple[str, str], ...] = (
    ("anthropic.resources.messages", "Messages"),
    ("anthropic.resources.messages", "AsyncMessages"),
    ("anthropic.resources.beta.messages", "Messages"),
    ("anthropic.resources.beta.messages", "AsyncMessages"),
)


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every Anthropic Messages API call: create (streaming or not), stream(), parse.

    Idempotent; ``disable=True`` restores the SDK's original methods. Lazy: if ``anthropic`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function (or a
    LangChain run) nest under it; a call made inside a LangChain chat-model span is that span's
    request and is not recorded a second time.

    Args:
        disable: Switch the integration off and restore the original methods.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``anthropic`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``anthropic`` is not installed
            (``pip install 'flowtel[anthropic]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)


# -- install --------------------------------------------------------------------------------------
_patcher = Patcher(_NAME)
_state = SdkState()


def _install() -> None:
    import anthropic

    _state.streams = (anthropic.Stream,)
    _state.async_streams = (anthropic.AsyncStream,)
    for module, cls in _RESOURCES:
        owner = _common.import_attr(module, cls)
        if owner is None:
            continue
        wrap = _common.async_wrapper if owner.__name__.startswith("Async") else _common.sync_wrapper
        for method in ("create", "parse"):  # (decorators can hide ``async def``: go by the class)
            _patcher.wrap(owner, method, wrap(_state, _start))
        _patcher.wrap(owner, "stream", _stream_wrapper)
    _state.active = True


def _uninstall() -> None:
    _state.active = False
    _patcher.restore()


# -- spans ----------------------------------------------------------------------------------------
def _start(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> LLMCall:
    inputs: dict[str, Any] = _common.scrub_kwargs(_common.omit_unset(kwargs))
    if args:
        inputs["args"] = list(args)
    attributes: dict[str, Any] = {
        SpanAttributeKey.MESSAGE_FORMAT: "anthropic",
        SpanAttributeKey.MODEL_PROVIDER: _PROVIDER,
    }
    tools = _common.anthropic_tools(kwargs.get("tools"))
    if tools:
        attributes[SpanAttributeKey.CHAT_TOOLS] = tools
    if isinstance(kwargs.get("model"), str):
        attributes[SpanAttributeKey.MODEL] = kwargs["model"]  # replaced by the response's model
    name = f"{type(instance).__name__}.{getattr(wrapped, '__name__', 'create')}"
    span = _common.start_llm_span(name, SpanType.CHAT_MODEL, inputs, attributes)
    return LLMCall(span, _finalize, _MessageAccumulator)


def _finalize(span: LiveSpan, message: Any) -> None:
    usage = _common.anthropic_usage(field_of(message, "usage"))
    _common.set_chat_attributes(span, model=field_of(message, "model"), usage=usage)


# -- messages.stream() ----------------------------------------------------------------------------
def _stream_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    manager = wrapped(*args, **kwargs)
    if not _state.active:
        return manager
    return _TracedStreamManager(manager, lambda: _start(wrapped, instance, args, kwargs))


class _TracedStreamManager(_common.ObjectProxy):
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
        _trace_message_stream(call, stream, _common.TracedStream)
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
        _trace_message_stream(call, stream, _common.TracedAsyncStream)
        return stream

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.__wrapped__.__aexit__(*exc_info)


def _trace_message_stream(
    call: LLMCall, stream: Any, proxy: type[_common.TracedStream] | type[_common.TracedAsyncStream]
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


class _MessageAccumulator:
    """Rebuilds a ``Message`` from raw stream events (text, tool_use JSON, thinking, usage)."""

    __slots__ = ("message", "blocks", "json")

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        if kind == "message_start":
            self.message = _common.jsonable(event.message)
        elif kind == "content_block_start":
            self.blocks[event.index] = _common.jsonable(event.content_block)
        elif kind == "content_block_stop":
            self._close_block(event.index)
        elif kind == "message_delta":
            self._message_delta(event)
        return False

    def _delta(self, index: int, delta: Any) -> bool:
        block = self.blocks.setdefault(index, {})
        kind = getattr(delta, "type", None)
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.text
        elif kind == "input_json_delta":
            self.json.setdefault(index, []).append(delta.partial_json)
            return bool(delta.partial_json)
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
        elif kind == "signature_delta":
            block["signature"] = delta.signature
            return False
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(_common.jsonable(delta.citation))
        else:
            return False
        return True

    def _close_block(self, index: int) -> None:
        parts = self.json.pop(index, None)
        if parts is not None:
            self.blocks.setdefault(index, {})["input"] = _common.parse_json_object("".join(parts))

    def _message_delta(self, event: Any) -> None:
        message = self.message if self.message is not None else {}
        self.message = message
        delta = event.delta
        for key in ("stop_reason", "stop_sequence"):
            value = getattr(delta, key, None)
            if value is not None:
                message[key] = value
        usage = getattr(event, "usage", None)
        if usage is not None:
            merged = dict(message.get("usage") or {})
            merged.update({k: v for k, v in _common.jsonable(usage).items() if v is not None})
            message["usage"] = merged

    def result(self) -> dict[str, Any] | None:
        if self.message is None and not self.blocks:
            return None
        for index in list(self.json):
            self._close_block(index)
        message = dict(self.message or {})
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        return message
