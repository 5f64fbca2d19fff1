"""Machinery shared by the LLM SDK integrations.

* :class:`Patcher` installs ``wrapt`` function wrappers and restores the original attributes exactly.
* :func:`start_llm_span` / :class:`LLMCall` own one span per SDK call: current while the SDK runs
  (so nested spans and callbacks nest under it), ended exactly once.
* :class:`TracedStream` / :class:`TracedAsyncStream` keep a streaming call's span open while the
  user reads and end it once, however the stream ends: consumed, closed early, broken by an error,
  cancelled, or garbage-collected unread. Chunks become ``mlflow.chunk.item.<i>`` events (capped) and
  a provider :class:`StreamAccumulator` rebuilds the full response.
* One LLM call is one LLM span: an integration that opens an LLM span marks the context
  (:func:`llm_call_scope`); a provider integration called inside it records nothing
  (:func:`llm_call_active`). LangChain's chat-model span therefore suppresses the OpenAI span of the
  same request, and its tokens are counted once.
* Token usage normalisation (:func:`openai_usage`, :func:`anthropic_usage`, :func:`langchain_usage`),
  tool-definition normalisation and credential scrubbing (:func:`scrub_kwargs`).

Nothing here imports an SDK: the integrations hand in the types they need.
"""

from __future__ import annotations

import contextvars
import gc
import inspect
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import wrapt

from flowtel._errors import report_internal_error
from flowtel._redaction import REDACTED, is_sensitive_key
from flowtel.entities import LiveSpan, NoOpSpan, SpanEvent, TokenUsageKey
from flowtel.entities._constants import SpanAttributeKey
from flowtel.tracing import _clock, _fluent

if TYPE_CHECKING:
    from types import TracebackType

    ObjectProxy = wrapt.ObjectProxy[Any]
else:
    ObjectProxy = wrapt.ObjectProxy  # generic only for the type checker

__all__ = [
    "LLMCall",
    "MAX_CHUNK_EVENTS",
    "ObjectProxy",
    "Patcher",
    "REDACTED",
    "StreamAccumulator",
    "StreamRecorder",
    "TracedAsyncStream",
    "TracedStream",
    "add_usage",
    "anthropic_tools",
    "anthropic_usage",
    "any_tools",
    "encode",
    "field_of",
    "import_attr",
    "is_sensitive_key",
    "jsonable",
    "langchain_usage",
    "llm_call_active",
    "llm_call_reset",
    "llm_call_scope",
    "omit_unset",
    "openai_tools",
    "openai_usage",
    "parse_json_object",
    "scrub_kwargs",
    "scrub_mapping",
    "set_chat_attributes",
    "start_llm_span",
    "tracing_on",
]

_logger = logging.getLogger("flowtel")

#: At most this many ``mlflow.chunk.item.<i>`` events per streamed span; later chunks are only
#: counted (``flowtel.stream.chunks``) so a very long stream keeps a bounded span.
MAX_CHUNK_EVENTS = 1000
#: What a credential value is replaced by in recorded inputs and attributes.

CHUNK_EVENT_PREFIX = "mlflow.chunk.item."
CHUNK_VALUE_KEY = "mlflow.chunk.value"
TIME_TO_FIRST_TOKEN = "gen_ai.response.time_to_first_chunk"
STREAM_CHUNKS = "flowtel.stream.chunks"
STREAM_CHUNK_EVENTS_DROPPED = "flowtel.stream.chunk_events_dropped"
STREAM_END_REASON = "flowtel.stream.end_reason"


# -- tracing state -------------------------------------------------------------------------------
def encode(key: str, value: Any) -> str:
    """The JSON text flowtel records for ``value`` under ``key`` (its encoder and capture policy)."""
    return _fluent._encode(key, value)


def tracing_on() -> bool:
    """Whether a span started now would be recorded (globally enabled and not scoped off)."""
    return _fluent._tracing_on()


# -- one LLM call, one LLM span ------------------------------------------------------------------
_LLM_CALL: contextvars.ContextVar[LiveSpan | NoOpSpan | None] = contextvars.ContextVar(
    "flowtel_llm_call", default=None
)


def llm_call_active() -> bool:
    """True inside an LLM span opened by an integration that is still running.

    A provider SDK call made there is the same LLM call seen one layer down, so it is not
    recorded again. A span that already ended (a context that leaked past its end) does not count.
    """
    span = _LLM_CALL.get()
    return span is not None and cast(Any, span._span).is_recording()


def llm_call_scope(span: LiveSpan | NoOpSpan) -> contextvars.Token[LiveSpan | NoOpSpan | None]:
    """Mark the current context as inside the LLM call ``span``; undo with :func:`llm_call_reset`."""
    return _LLM_CALL.set(span)


def llm_call_reset(token: contextvars.Token[LiveSpan | NoOpSpan | None]) -> None:
    try:
        _LLM_CALL.reset(token)
    except ValueError:  # a token from another context (callbacks split across threads/tasks);
        pass  # the liveness check in llm_call_active makes a stale mark harmless


# -- spans ----------------------------------------------------------------------------------------
def start_llm_span(
    name: str, span_type: str, inputs: Any, attributes: Mapping[str, Any]
) -> LiveSpan | NoOpSpan:
    """Start a span under the current context, exactly like ``@flowtel.trace`` does.

    Parented by the current span (so calls inside ``@flowtel.trace`` nest); outside any span it
    starts a new trace. Sampling follows the parent. Never raises.
    """
    try:
        attrs = _fluent._start_attributes(span_type, dict(attributes), inputs=inputs, has_inputs=True)
        return _fluent._start_span(name, span_type, attrs)
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
        self._tokens = (_fluent._attach(self.span), llm_call_scope(self.span))

    def exit(self) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            llm_call_reset(tokens[1])
            _fluent._detach(tokens[0])

    def fail(self, exc: BaseException) -> None:
        """End ERROR with an ``exception`` event; the caller re-raises ``exc`` unchanged."""
        _fluent._end_error(self.span, exc)

    def finish(self, outputs: Any) -> None:
        """End OK with ``outputs`` (the response); provider attributes (model, usage) come from it."""
        self.set_response_attributes(outputs)
        _fluent._end_ok(self.span, jsonable(outputs))

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
    user has not read yet (``with_streaming_response``, raw streams) is left unread.
    """
    try:
        if isinstance(result, state.streams):
            return TracedStream(result, call.recorder())
        if isinstance(result, state.async_streams):
            return TracedAsyncStream(result, call.recorder())
        if raw_response_mode(kwargs) is None:
            call.finish(result)
        else:
            call.finish(parsed)
    except Exception as exc:  # noqa: BLE001 - the user gets their result whatever happened here
        report_internal_error("integration result", exc)
        call.finish(None)
    return result


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


# -- streams --------------------------------------------------------------------------------------
class StreamAccumulator(Protocol):
    """Rebuilds a provider's full response from its stream chunks."""

    def add(self, chunk: Any) -> bool:
        """Take one chunk; True when it carried generated content (text, tool arguments, ...)."""

    def result(self) -> Any:
        """The response rebuilt from the chunks seen so far (JSON-able), or None."""


class StreamRecorder:
    """Records a stream's chunks on its span and ends the span exactly once."""

    __slots__ = ("call", "accumulator", "chunks", "_done", "_first_token")

    def __init__(self, call: LLMCall, accumulator: StreamAccumulator) -> None:
        self.call = call
        self.accumulator = accumulator
        self.chunks = 0
        self._done = False
        self._first_token = False

    @property
    def done(self) -> bool:
        return self._done

    def on_chunk(self, chunk: Any) -> None:
        if self._done:
            return
        try:
            index = self.chunks
            self.chunks = index + 1
            span = self.call.span
            now = _clock.now_ns()
            if index < MAX_CHUNK_EVENTS:
                value = encode(CHUNK_VALUE_KEY, jsonable(chunk))
                span.add_event(SpanEvent(f"{CHUNK_EVENT_PREFIX}{index}", now, {CHUNK_VALUE_KEY: value}))
            if self.accumulator.add(chunk) and not self._first_token:
                self._first_token = True
                start = span._span.start_time or now
                span.set_attribute(TIME_TO_FIRST_TOKEN, max(0, now - start) / 1e9)
        except Exception as exc:  # noqa: BLE001 - recording a chunk must not break the user's loop
            report_internal_error("stream chunk", exc)

    def finish(self, reason: str, exc: BaseException | None = None) -> None:
        """End the span (once): ``reason`` is consumed / closed / error / cancelled / garbage_collected."""
        if self._done:
            return
        self._done = True
        span = self.call.span
        try:
            span.set_attribute(STREAM_END_REASON, reason)
            span.set_attribute(STREAM_CHUNKS, self.chunks)
            if self.chunks > MAX_CHUNK_EVENTS:
                span.set_attribute(STREAM_CHUNK_EVENTS_DROPPED, self.chunks - MAX_CHUNK_EVENTS)
            result = self.accumulator.result()
            if exc is None:
                self.call.finish(result)
                return
            if result is not None:
                span.set_outputs(jsonable(result))
                self.call.set_response_attributes(result)
        except Exception as inner:  # noqa: BLE001 - ending a span must not raise into user code
            report_internal_error("stream finish", inner)
        # reached with the stream's error, or after a failure above: the span still ends (once)
        if exc is not None:
            self.call.fail(exc)
        else:
            _fluent._end_ok(span, None, has_outputs=False)

    def finish_gc(self) -> None:
        """End the span of a stream dropped before it ended (called from its finaliser).

        A finaliser run by the cyclic garbage collector can interrupt any code of this thread --
        including flowtel's own, holding a lock the span end needs -- so there the span ends on a
        short-lived thread instead. When the last reference goes away (the usual case) it ends here.
        """
        if self._done or sys.is_finalizing():
            return
        if getattr(_gc_state, "collecting", False):
            threading.Thread(
                target=self.finish, args=("garbage_collected",), name="flowtel-stream-finaliser", daemon=True
            ).start()
        else:
            self.finish("garbage_collected")


_gc_state = threading.local()
_gc_hooked = False


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    _gc_state.collecting = phase == "start"


def _hook_gc() -> None:
    """Track whether this thread is inside a cyclic garbage collection (see ``finish_gc``)."""
    global _gc_hooked
    if not _gc_hooked:
        _gc_hooked = True
        gc.callbacks.append(_on_gc)


def _end_reason(exc: BaseException) -> str:
    import asyncio

    return "cancelled" if isinstance(exc, asyncio.CancelledError) else "error"


class _TracedResponse(ObjectProxy):
    """The stream's HTTP response: SDK stream helpers close the stream through it."""

    def __init__(self, wrapped: Any, recorder: StreamRecorder) -> None:
        super().__init__(wrapped)
        self._self_recorder = recorder

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_recorder.finish("closed")

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_recorder.finish("closed")


class _StreamProxyBase(ObjectProxy):
    def __init__(self, wrapped: Any, recorder: StreamRecorder) -> None:
        _hook_gc()
        super().__init__(wrapped)
        self._self_recorder = recorder
        self._self_response: Any = None

    @property
    def response(self) -> Any:
        response = self._self_response
        if response is None:
            response = _TracedResponse(self.__wrapped__.response, self._self_recorder)
            self._self_response = response
        return response

    def __del__(self) -> None:
        try:
            self._self_recorder.finish_gc()
        except Exception:  # noqa: BLE001 - a finaliser must never raise (interpreter shutdown)
            pass


class TracedStream(_StreamProxyBase):
    """A synchronous SDK stream whose span ends exactly once, however the stream ends."""

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        recorder = self._self_recorder
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            recorder.finish("consumed")
            raise
        except BaseException as exc:
            recorder.finish("error", exc)
            raise
        recorder.on_chunk(item)
        return item

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_recorder.finish("closed")

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self._self_recorder.finish(_end_reason(exc), exc)
            else:
                self._self_recorder.finish("closed")


class TracedAsyncStream(_StreamProxyBase):
    """An asynchronous SDK stream whose span ends exactly once, however the stream ends."""

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        recorder = self._self_recorder
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            recorder.finish("consumed")
            raise
        except BaseException as exc:
            recorder.finish(_end_reason(exc), exc)
            raise
        recorder.on_chunk(item)
        return item

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_recorder.finish("closed")

    async def __aenter__(self) -> TracedAsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            if exc is not None and not isinstance(exc, GeneratorExit):
                self._self_recorder.finish(_end_reason(exc), exc)
            else:
                self._self_recorder.finish("closed")


# -- patching -------------------------------------------------------------------------------------
_MISSING = object()


class Patcher:
    """Wraps methods with ``wrapt`` and puts the original class attributes back on :meth:`restore`.

    Only attributes defined on the class itself are wrapped: wrapping an inherited method on a
    subclass would record one call twice.
    """

    def __init__(self, library: str) -> None:
        self.library = library
        self._originals: list[tuple[type, str, Any]] = []

    def __len__(self) -> int:
        return len(self._originals)

    def wrap(self, owner: type | None, attribute: str, wrapper: Callable[..., Any]) -> bool:
        if owner is None or attribute not in vars(owner):
            return False
        if any(o is owner and a == attribute for o, a, _ in self._originals):
            return False
        original = vars(owner)[attribute]
        wrapt.wrap_function_wrapper(owner, attribute, wrapper)
        self._originals.append((owner, attribute, original))
        return True

    def restore(self) -> None:
        while self._originals:
            owner, attribute, original = self._originals.pop()
            try:
                setattr(owner, attribute, original)
            except Exception as exc:  # noqa: BLE001 - one stuck attribute must not keep the others patched
                report_internal_error(f"{self.library} unpatch {owner.__name__}.{attribute}", exc)


def import_attr(module: str, *names: str) -> Any:
    """``module.names[0].names[1]...`` or None when the SDK version does not have it."""
    try:
        obj: Any = __import__(module, fromlist=["_"])
    except ImportError:
        return None
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


# -- inputs ---------------------------------------------------------------------------------------
_HEADER_KWARGS = frozenset({"extra_headers", "default_headers", "headers", "extra_query", "default_query"})


def scrub_mapping(value: Any, depth: int = 4) -> Any:
    """A copy of ``value`` with credential-named keys redacted in nested mappings and lists."""
    if depth <= 0:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if v is not None else None) if is_sensitive_key(k) else scrub_mapping(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_mapping(v, depth - 1) for v in value]
    return value


def scrub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """SDK call kwargs as recorded: credentials redacted, header/query mappings scrubbed.

    Message content is left untouched (and unconverted) so recording stays cheap.
    """
    clean: dict[str, Any] = {}
    for key, value in kwargs.items():
        if is_sensitive_key(key):
            clean[key] = REDACTED if value is not None else None
        elif key in _HEADER_KWARGS and isinstance(value, Mapping):
            clean[key] = scrub_mapping(value)
        elif isinstance(value, type):
            clean[key] = str(value)  # e.g. a pydantic response_format class, shown as MLflow does
        else:
            clean[key] = value
    return clean


def jsonable(value: Any) -> Any:
    """A pydantic SDK object as plain JSON data (``model_dump(mode="json")``, without pydantic's
    serializer warnings for generic fields); anything else unchanged."""
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        return value
    try:
        return dump(mode="json", warnings=False)
    except TypeError:  # pydantic v1-style models
        return dump()


def omit_unset(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Drop SDK sentinels (``NOT_GIVEN`` / ``omit``): they mean "argument not supplied"."""
    return {k: v for k, v in kwargs.items() if type(v).__name__ not in ("NotGiven", "Omit")}


# -- token usage ----------------------------------------------------------------------------------
def field_of(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _usage(
    input_tokens: Any, output_tokens: Any, total_tokens: Any = None, *,
    cache_read: Any = None, cache_creation: Any = None, reasoning: Any = None,
) -> dict[str, int] | None:
    usage: dict[str, int] = {}
    for key, value in (
        (TokenUsageKey.INPUT_TOKENS, input_tokens),
        (TokenUsageKey.OUTPUT_TOKENS, output_tokens),
        (TokenUsageKey.TOTAL_TOKENS, total_tokens),
        (TokenUsageKey.CACHE_READ_INPUT_TOKENS, cache_read),
        (TokenUsageKey.CACHE_CREATION_INPUT_TOKENS, cache_creation),
        (TokenUsageKey.REASONING_TOKENS, reasoning),
    ):
        number = _int(value)
        if number is not None:
            usage[key] = number
    if not usage:
        return None
    if TokenUsageKey.TOTAL_TOKENS not in usage:
        usage[TokenUsageKey.TOTAL_TOKENS] = usage.get(TokenUsageKey.INPUT_TOKENS, 0) + usage.get(
            TokenUsageKey.OUTPUT_TOKENS, 0
        )
    return usage


def openai_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from an OpenAI ``usage`` (chat/completions, Responses or embeddings)."""
    if usage is None:
        return None
    if field_of(usage, "prompt_tokens") is not None or field_of(usage, "completion_tokens") is not None:
        return _usage(
            field_of(usage, "prompt_tokens"), field_of(usage, "completion_tokens"), field_of(usage, "total_tokens"),
            cache_read=field_of(field_of(usage, "prompt_tokens_details"), "cached_tokens"),
            reasoning=field_of(field_of(usage, "completion_tokens_details"), "reasoning_tokens"),
        )
    return _usage(
        field_of(usage, "input_tokens"), field_of(usage, "output_tokens"), field_of(usage, "total_tokens"),
        cache_read=field_of(field_of(usage, "input_tokens_details"), "cached_tokens"),
        reasoning=field_of(field_of(usage, "output_tokens_details"), "reasoning_tokens"),
    )


def anthropic_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from an Anthropic ``usage``.

    Anthropic's ``input_tokens`` excludes cached tokens; like MLflow, the recorded input (and total)
    includes cache reads and writes so the figure is comparable with other providers.
    """
    if usage is None:
        return None
    cache_read = _int(field_of(usage, "cache_read_input_tokens"))
    cache_creation = _int(field_of(usage, "cache_creation_input_tokens"))
    input_tokens = _int(field_of(usage, "input_tokens"))
    output_tokens = _int(field_of(usage, "output_tokens"))
    if input_tokens is not None:
        input_tokens += (cache_read or 0) + (cache_creation or 0)
    result = _usage(
        input_tokens, output_tokens, cache_read=cache_read, cache_creation=cache_creation,
        reasoning=field_of(field_of(usage, "output_tokens_details"), "thinking_tokens"),
    )
    above_1h = _int(field_of(field_of(usage, "cache_creation"), "ephemeral_1h_input_tokens"))
    if result is not None and above_1h:
        result["cache_creation_input_tokens_above_1hr"] = above_1h
    return result


def langchain_usage(usage_metadata: Any) -> dict[str, int] | None:
    """MLflow token usage from LangChain's ``usage_metadata`` (input already includes cache)."""
    if not usage_metadata:
        return None
    input_details = field_of(usage_metadata, "input_token_details")
    output_details = field_of(usage_metadata, "output_token_details")
    return _usage(
        field_of(usage_metadata, "input_tokens"), field_of(usage_metadata, "output_tokens"),
        field_of(usage_metadata, "total_tokens"),
        cache_read=field_of(input_details, "cache_read"),
        cache_creation=field_of(input_details, "cache_creation"),
        reasoning=field_of(output_details, "reasoning"),
    )


def add_usage(total: dict[str, int] | None, usage: dict[str, int] | None) -> dict[str, int] | None:
    if usage is None:
        return total
    if total is None:
        return dict(usage)
    for key, value in usage.items():
        total[key] = total.get(key, 0) + value
    return total


# -- tools ----------------------------------------------------------------------------------------
def _function_tool(name: Any, description: Any = None, parameters: Any = None) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


def openai_tools(tools: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from OpenAI chat or Responses tool definitions (built-ins by type name)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type", "function")
        function = tool.get("function")
        if isinstance(function, Mapping):
            parsed.append(_function_tool(function.get("name"), function.get("description"), function.get("parameters")))
        elif kind == "function":
            parsed.append(_function_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
        else:
            parsed.append(_function_tool(tool.get("name") or kind))
    return parsed


def anthropic_tools(tools: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from Anthropic tool definitions (``input_schema`` -> ``parameters``)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    return [
        _function_tool(tool.get("name") or tool.get("type"), tool.get("description"), tool.get("input_schema"))
        for tool in tools
        if isinstance(tool, Mapping)
    ]


def any_tools(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions in OpenAI or Anthropic shape (LangChain passes either)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        if "input_schema" in tool:
            parsed.extend(anthropic_tools([tool]))
        else:
            parsed.extend(openai_tools([tool]))
    return parsed


def set_chat_attributes(
    span: LiveSpan, *, model: Any = None, provider: str | None = None, usage: dict[str, int] | None = None
) -> None:
    if model:
        span.set_attribute(SpanAttributeKey.MODEL, model)
    if provider:
        span.set_attribute(SpanAttributeKey.MODEL_PROVIDER, provider)
    if usage:
        span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)


def parse_json_object(text: str) -> Any:
    """Tool-call arguments accumulated from deltas: the JSON value, or the raw text if incomplete."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text
