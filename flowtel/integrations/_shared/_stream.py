"""Streams: a streaming call's span stays open while the user reads and ends exactly once.

:class:`TracedStream` / :class:`TracedAsyncStream` end it however the stream ends: consumed, closed
early, broken by an error, cancelled, or garbage-collected unread. Chunks become
``mlflow.chunk.item.<i>`` events (capped) and a provider :class:`StreamAccumulator` rebuilds the
full response.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import wrapt

from flowtel._errors import report_internal_error
from flowtel.entities import SpanEvent
from flowtel.integrations._shared._context import encode
from flowtel.integrations._shared._values import jsonable
from flowtel.tracing import _clock, _engine

if TYPE_CHECKING:
    from types import TracebackType

    from flowtel.integrations._shared._call import LLMCall

    ObjectProxy = wrapt.ObjectProxy[Any]
else:
    ObjectProxy = wrapt.ObjectProxy  # generic only for the type checker

__all__ = [
    "CHUNK_EVENT_PREFIX",
    "CHUNK_VALUE_KEY",
    "MAX_CHUNK_EVENTS",
    "ObjectProxy",
    "STREAM_CHUNKS",
    "STREAM_CHUNK_EVENTS_DROPPED",
    "STREAM_END_REASON",
    "StreamAccumulator",
    "StreamRecorder",
    "TIME_TO_FIRST_TOKEN",
    "TracedAsyncStream",
    "TracedStream",
]

#: At most this many ``mlflow.chunk.item.<i>`` events per streamed span; later chunks are only
#: counted (``flowtel.stream.chunks``) so a very long stream keeps a bounded span.
MAX_CHUNK_EVENTS = 1000

CHUNK_EVENT_PREFIX = "mlflow.chunk.item."
CHUNK_VALUE_KEY = "mlflow.chunk.value"
TIME_TO_FIRST_TOKEN = "gen_ai.response.time_to_first_chunk"
STREAM_CHUNKS = "flowtel.stream.chunks"
STREAM_CHUNK_EVENTS_DROPPED = "flowtel.stream.chunk_events_dropped"
STREAM_END_REASON = "flowtel.stream.end_reason"


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
            _engine.end_ok(span, None, has_outputs=False)

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

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
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
