"""The span of one SDK call, and the ``wrapt`` wrappers that start and end it.

:func:`start_llm_span` / :class:`LLMCall` own one span per SDK call: current while the SDK runs (so
nested spans and callbacks nest under it), ended exactly once -- for a stream, when the stream ends.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from flowtel._errors import report_internal_error
from flowtel.entities import LiveSpan, NoOpSpan
from flowtel.entities._constants import SpanAttributeKey
from flowtel.integrations._shared._context import llm_call_active, llm_call_reset, llm_call_scope, tracing_on
from flowtel.integrations._shared._stream import (
    ObjectProxy,
    StreamAccumulator,
    StreamRecorder,
    TracedAsyncStream,
    TracedStream,
)
from flowtel.integrations._shared._values import jsonable
from flowtel.tracing import _engine

__all__ = [
    "LLMCall",
    "RawStreamResponse",
    "SdkState",
    "StartCall",
    "async_wrapper",
    "finish_call",
    "raw_response_mode",
    "reads_raw_body",
    "set_chat_attributes",
    "start_llm_span",
    "sync_wrapper",
]


def start_llm_span(
    name: str, span_type: str, inputs: Any, attributes: Mapping[str, Any]
) -> LiveSpan | NoOpSpan:
    """Start a span under the current context, exactly like ``@flowtel.trace`` does.

    Parented by the current span (so calls inside ``@flowtel.trace`` nest); outside any span it
    starts a new trace. Sampling follows the parent. Never raises.
    """
    try:
        attrs = _engine.start_attributes(span_type, dict(attributes), inputs=inputs, has_inputs=True)
        return _engine.start_live_span(name, span_type, attrs)
    except Exception as exc:  # noqa: BLE001 - instrumentation must not break the user's call
        report_internal_error("integration span start", exc)
        return NoOpSpan()


class LLMCall:
    """The span of one SDK call: current (and marked as an LLM call) while the SDK runs.

    ``enter``/``exit`` bracket the SDK call itself; ``fail`` or ``finish`` end the span (for a
    stream, its :class:`StreamRecorder` does, when the stream ends). Nothing here raises into the
    user's call.
    """

    __slots__ = ("span", "finalize", "accumulator", "_tokens")

    def __init__(
        self,
        span: LiveSpan | NoOpSpan,
        finalize: Callable[[LiveSpan, Any], None],
        accumulator: Callable[[], StreamAccumulator] | None = None,
    ) -> None:
        self.span = span
        self.finalize = finalize
        self.accumulator = accumulator
        self._tokens: tuple[object, contextvars.Token[Any]] | None = None

    @property
    def recording(self) -> bool:
        return type(self.span) is LiveSpan

    def enter(self) -> None:
        self._tokens = (_engine.attach(self.span), llm_call_scope(self.span))

    def exit(self) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            llm_call_reset(tokens[1])
            _engine.detach(tokens[0])

    def fail(self, exc: BaseException) -> None:
        """End ERROR with an ``exception`` event; the caller re-raises ``exc`` unchanged."""
        _engine.end_error(self.span, exc)

    def finish(self, outputs: Any) -> None:
        """End OK with ``outputs`` (the response); provider attributes (model, usage) come from it."""
        self.set_response_attributes(outputs)
        _engine.end_ok(self.span, jsonable(outputs))

    def set_response_attributes(self, response: Any) -> None:
        span = self.span
        if type(span) is LiveSpan and response is not None:
            try:
                self.finalize(span, response)
            except Exception as exc:  # noqa: BLE001 - a surprising response shape loses attributes only
                report_internal_error("integration response attributes", exc)

    def recorder(self) -> StreamRecorder:
        if self.accumulator is None:
            raise TypeError("this call has no stream accumulator")
        return StreamRecorder(self, self.accumulator())


# -- SDK method wrappers -------------------------------------------------------------------------
StartCall = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], LLMCall]
"""``(wrapped, instance, args, kwargs) -> LLMCall``: starts the span of one SDK call."""

RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


class SdkState:
    """What the wrappers of one SDK share: whether they record, and the SDK's stream classes."""

    __slots__ = ("active", "streams", "async_streams")

    def __init__(self) -> None:
        self.active = False
        self.streams: tuple[type, ...] = ()
        self.async_streams: tuple[type, ...] = ()

    def should_trace(self) -> bool:
        return self.active and tracing_on() and not llm_call_active()


def sync_wrapper(state: SdkState, start: StartCall) -> Callable[..., Any]:
    """A ``wrapt`` wrapper tracing a synchronous SDK method: one call, one span."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not state.should_trace():
            return wrapped(*args, **kwargs)
        call = start(wrapped, instance, args, kwargs)
        if not call.recording:
            return wrapped(*args, **kwargs)
        call.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.exit()
            call.fail(exc)
            raise
        call.exit()
        parsed = _parse_raw_sync(result) if reads_raw_body(kwargs) else None
        return finish_call(state, call, result, kwargs, parsed)

    return wrapper


def async_wrapper(state: SdkState, start: StartCall) -> Callable[..., Any]:
    """A ``wrapt`` wrapper tracing an ``async`` SDK method: one call, one span."""

    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not state.should_trace():
            return await wrapped(*args, **kwargs)
        call = start(wrapped, instance, args, kwargs)
        if not call.recording:
            return await wrapped(*args, **kwargs)
        call.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            call.exit()
            call.fail(exc)
            raise
        call.exit()
        parsed = await _parse_raw_async(result) if reads_raw_body(kwargs) else None
        return finish_call(state, call, result, kwargs, parsed)

    return wrapper


def finish_call(state: SdkState, call: LLMCall, result: Any, kwargs: Mapping[str, Any], parsed: Any) -> Any:
    """The SDK result for the user: a stream wrapped so the span ends with it; else the span ends now.

    ``with_raw_response`` results are recorded through their parsed body (``parsed``); a body the
    user has not read yet (``with_streaming_response``) is left unread -- unless it is a stream,
    whose span then ends with the stream its ``parse()`` returns (:class:`RawStreamResponse`).
    """
    try:
        if isinstance(result, state.streams):
            return TracedStream(result, call.recorder())
        if isinstance(result, state.async_streams):
            return TracedAsyncStream(result, call.recorder())
        if raw_response_mode(kwargs) == "stream" and kwargs.get("stream") is True and call.accumulator is not None:
            return RawStreamResponse(result, state, call.recorder())
        if raw_response_mode(kwargs) is None:
            call.finish(result)
        else:
            call.finish(parsed)
    except Exception as exc:  # noqa: BLE001 - the user gets their result whatever happened here
        report_internal_error("integration result", exc)
        call.finish(None)
    return result


class RawStreamResponse(ObjectProxy):
    """A ``with_streaming_response`` answer to a streaming request: the stream its ``parse()``
    returns ends the span (as a stream does); left unparsed, the span ends when it is collected."""

    def __init__(self, wrapped: Any, state: SdkState, recorder: StreamRecorder) -> None:
        super().__init__(wrapped)
        self._self_state = state
        self._self_recorder = recorder

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        parsed = self.__wrapped__.parse(*args, **kwargs)
        if inspect.isawaitable(parsed):
            return self._traced_async(parsed)
        return self._traced(parsed)

    async def _traced_async(self, parsed: Any) -> Any:
        return self._traced(await parsed)

    def _traced(self, parsed: Any) -> Any:
        state, recorder = self._self_state, self._self_recorder
        if isinstance(parsed, state.streams):
            return TracedStream(parsed, recorder)
        if isinstance(parsed, state.async_streams):
            return TracedAsyncStream(parsed, recorder)
        return parsed

    def __del__(self) -> None:
        try:
            self._self_recorder.finish_gc()
        except Exception:  # noqa: BLE001 - a finaliser must never raise (interpreter shutdown)
            pass


def raw_response_mode(kwargs: Mapping[str, Any]) -> str | None:
    """``raw`` / ``true`` (``with_raw_response``), ``stream`` (``with_streaming_response``) or None."""
    headers = kwargs.get("extra_headers")
    if isinstance(headers, Mapping) and headers.get(RAW_RESPONSE_HEADER) is not None:
        return str(headers[RAW_RESPONSE_HEADER])
    return None


def reads_raw_body(kwargs: Mapping[str, Any]) -> bool:
    """``with_raw_response`` without streaming: the body is already read, parsing it is free."""
    return raw_response_mode(kwargs) in ("raw", "true") and not kwargs.get("stream")


def _parse_raw_sync(result: Any) -> Any:
    parse = getattr(result, "parse", None)
    if parse is None or inspect.iscoroutinefunction(parse):
        return None
    try:
        return parse()  # cached by the SDK: the user's own parse() returns the same object
    except Exception as exc:  # noqa: BLE001 - the user parses it again and sees the error there
        report_internal_error("integration raw response parse", exc)
        return None


async def _parse_raw_async(result: Any) -> Any:
    try:
        parsed = result.parse()
        return await parsed if inspect.isawaitable(parsed) else parsed
    except Exception as exc:  # noqa: BLE001 - the user parses it again and sees the error there
        report_internal_error("integration raw response parse", exc)
        return None


def set_chat_attributes(
    span: LiveSpan, *, model: Any = None, provider: str | None = None, usage: dict[str, int] | None = None
) -> None:
    if model:
        span.set_attribute(SpanAttributeKey.MODEL, model)
    if provider:
        span.set_attribute(SpanAttributeKey.MODEL_PROVIDER, provider)
    if usage:
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
