"""@flowtel.trace on every kind of callable, through the public API."""

from __future__ import annotations

import asyncio
import gc
import inspect
import sys
import traceback

import pytest

import flowtel
from flowtel import SpanType
from flowtel.testing import TraceCapture


def span_named(trace: flowtel.Trace, name: str) -> flowtel.Span:
    [span] = trace.search_spans(name=name)
    return span


def test_decorator_without_parentheses_records_inputs_outputs(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def add(a: int, b: int = 2) -> int:
        return a + b

    assert add(1) == 3
    trace = flowtel_traces.last
    [span] = trace.data.spans
    assert span.name == "add"
    assert span.inputs == {"a": 1, "b": 2}
    assert span.outputs == 3
    assert span.span_type == "UNKNOWN"
    assert span.get_attribute("mlflow.spanFunctionName") == "add"
    assert span.status.status_code == flowtel.SpanStatusCode.OK
    assert trace.info.state == flowtel.TraceState.OK
    assert trace.info.tags["mlflow.traceName"] == "add"


def test_decorator_with_options(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(name="lookup", span_type=SpanType.TOOL, attributes={"team": "search", "n": 3},
                   description="finds things", log_level="WARNING")
    def find(query: str) -> list[str]:
        return [query.upper()]

    find("x")
    span = flowtel_traces.last.data.spans[0]
    assert span.name == "lookup"
    assert span.span_type == "TOOL"
    assert span.get_attribute("team") == "search"
    assert span.get_attribute("n") == 3
    assert span.description == "finds things"
    assert span.log_level == 30


def test_signature_and_metadata_are_preserved() -> None:
    def original(a: int, *, b: str = "x") -> str:
        """Docs."""
        return b * a

    traced = flowtel.trace(original)
    assert inspect.signature(traced) == inspect.signature(original)
    assert traced.__name__ == "original"
    assert traced.__doc__ == "Docs."
    assert traced.__wrapped__ is original  # type: ignore[attr-defined]


def test_nested_calls_become_children(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def leaf(x: int) -> int:
        return x + 1

    @flowtel.trace
    def root(x: int) -> int:
        return leaf(x) + leaf(x)

    root(1)
    [trace] = flowtel_traces.traces
    root_span = span_named(trace, "root")
    leaves = trace.search_spans(name="leaf")
    assert len(leaves) == 2
    assert all(s.parent_id == root_span.span_id for s in leaves)
    assert root_span.parent_id is None
    assert {s.trace_id for s in trace.data.spans} == {trace.info.trace_id}


class Service:
    factor = 10

    @flowtel.trace
    def method(self, x: int) -> int:
        return x * self.factor

    @classmethod
    @flowtel.trace
    def class_method(cls, x: int) -> int:
        return x * cls.factor

    @flowtel.trace
    @classmethod
    def class_method_outer(cls, x: int) -> int:
        return x + cls.factor

    @staticmethod
    @flowtel.trace
    def static(x: int) -> int:
        return -x

    @flowtel.trace
    @staticmethod
    def static_outer(x: int) -> int:
        return x - 1


def test_methods_classmethods_staticmethods(flowtel_traces: TraceCapture) -> None:
    svc = Service()
    assert svc.method(2) == 20
    assert Service.class_method(3) == 30
    assert Service.class_method_outer(3) == 13
    assert Service.static(4) == -4
    assert Service.static_outer(4) == 3
    spans = [t.data.spans[0] for t in flowtel_traces.traces]
    assert [s.name for s in spans] == ["method", "class_method", "class_method_outer", "static", "static_outer"]
    assert [s.inputs for s in spans] == [{"x": 2}, {"x": 3}, {"x": 3}, {"x": 4}, {"x": 4}]


def test_var_args_are_recorded(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def f(a, *args, key=None, **kwargs):  # type: ignore[no-untyped-def]
        return len(args) + len(kwargs)

    f(1, 2, 3, key="k", extra=True)
    assert flowtel_traces.last.data.spans[0].inputs == {
        "a": 1, "args": [2, 3], "key": "k", "kwargs": {"extra": True}
    }


async def test_async_function(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @flowtel.trace
    async def root() -> list[int]:
        return list(await asyncio.gather(fetch(1), fetch(2)))

    assert await root() == [2, 4]
    [trace] = flowtel_traces.traces
    root_span = span_named(trace, "root")
    children = trace.search_spans(name="fetch")
    assert sorted(s.outputs for s in children) == [2, 4]
    assert all(s.parent_id == root_span.span_id for s in children)


# -- exceptions ----------------------------------------------------------------------------------
class CustomError(Exception):
    pass


def test_user_exception_passes_through_unchanged(flowtel_traces: TraceCapture) -> None:
    error = CustomError("boom")

    @flowtel.trace
    def fails() -> None:
        raise error

    with pytest.raises(CustomError) as info:
        fails()
    assert info.value is error
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "fails"  # the user's frame is where it was raised

    trace = flowtel_traces.last
    span = trace.data.spans[0]
    assert trace.info.state == flowtel.TraceState.ERROR
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.status.description == "CustomError: boom"
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "CustomError"
    assert event.attributes["exception.message"] == "boom"
    assert "raise error" in event.attributes["exception.stacktrace"]
    assert span.log_level == 40


def test_exception_in_child_only_marks_child(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def child() -> None:
        raise ValueError("inner")

    @flowtel.trace
    def parent() -> str:
        try:
            child()
        except ValueError:
            return "recovered"
        return "no"

    assert parent() == "recovered"
    trace = flowtel_traces.last
    assert trace.info.state == flowtel.TraceState.OK
    assert span_named(trace, "child").status.status_code == flowtel.SpanStatusCode.ERROR


def test_base_exceptions_end_span_with_error(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "KeyboardInterrupt"


async def test_cancelled_task_ends_span_with_error(flowtel_traces: TraceCapture) -> None:
    started = asyncio.Event()

    @flowtel.trace
    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "CancelledError"


# -- generators ----------------------------------------------------------------------------------
def test_generator_span_lasts_until_exhausted(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def child(i: int) -> int:
        return i

    @flowtel.trace
    def stream(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield child(i)
        return "done"

    gen = stream(3)
    assert inspect.isgenerator(gen)
    assert list(gen) == [0, 1, 2]
    trace = flowtel_traces.last
    root = span_named(trace, "stream")
    assert root.outputs == [0, 1, 2]
    assert root.status.status_code == flowtel.SpanStatusCode.OK
    assert [e.name for e in root.events] == ["mlflow.chunk.item.0", "mlflow.chunk.item.1", "mlflow.chunk.item.2"]
    assert root.events[1].attributes["mlflow.chunk.value"] == "1"
    assert all(s.parent_id == root.span_id for s in trace.search_spans(name="child"))


def test_generator_return_value_and_send(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(output_reducer=lambda items: sum(items))
    def accumulate():  # type: ignore[no-untyped-def]
        total = 0
        while True:
            received = yield total
            if received is None:
                return total
            total += received

    gen = accumulate()
    assert next(gen) == 0
    assert gen.send(5) == 5
    assert gen.send(2) == 7
    with pytest.raises(StopIteration) as stop:
        gen.send(None)
    assert stop.value.value == 7
    assert flowtel_traces.last.data.spans[0].outputs == 12


def test_generator_closed_early_ends_ok(flowtel_traces: TraceCapture) -> None:
    cleaned = []

    @flowtel.trace
    def numbers():  # type: ignore[no-untyped-def]
        try:
            yield from range(100)
        finally:
            cleaned.append(True)

    gen = numbers()
    assert [next(gen), next(gen)] == [0, 1]
    gen.close()
    assert cleaned == [True]
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.OK
    assert span.outputs == [0, 1]
    assert span.events[-1].name == "generator.closed"


def test_generator_abandoned_is_ended_when_collected(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def numbers():  # type: ignore[no-untyped-def]
        yield from range(10)

    gen = numbers()
    next(gen)
    del gen
    gc.collect()
    [trace] = flowtel_traces.traces
    assert trace.data.spans[0].end_time_ns is not None
    assert trace.data.spans[0].outputs == [0]


def test_generator_raising_midway(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def broken():  # type: ignore[no-untyped-def]
        yield 1
        raise RuntimeError("stream broke")

    gen = broken()
    assert next(gen) == 1
    with pytest.raises(RuntimeError, match="stream broke"):
        next(gen)
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.events[-1].name == "exception"


def test_generator_throw_is_forwarded(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def resilient():  # type: ignore[no-untyped-def]
        try:
            yield 1
        except ValueError:
            yield "handled"

    gen = resilient()
    next(gen)
    assert gen.throw(ValueError("x")) == "handled"
    with pytest.raises(StopIteration):
        next(gen)
    assert flowtel_traces.last.data.spans[0].outputs == [1, "handled"]


async def test_async_generator(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    async def child(i: int) -> int:
        return i

    @flowtel.trace
    async def stream(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield await child(i)

    assert inspect.isasyncgenfunction(stream)
    assert [x async for x in stream(3)] == [0, 1, 2]
    trace = flowtel_traces.last
    root = span_named(trace, "stream")
    assert root.outputs == [0, 1, 2]
    assert all(s.parent_id == root.span_id for s in trace.search_spans(name="child"))


async def test_async_generator_closed_early(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    async def stream():  # type: ignore[no-untyped-def]
        for i in range(10):
            yield i

    agen = stream()
    assert await agen.__anext__() == 0
    await agen.aclose()
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.OK
    assert span.outputs == [0]


async def test_async_generator_raising(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    async def stream():  # type: ignore[no-untyped-def]
        yield 1
        raise CustomError("async broke")

    with pytest.raises(CustomError):
        async for _ in stream():
            pass
    assert flowtel_traces.last.data.spans[0].status.status_code == flowtel.SpanStatusCode.ERROR


def test_generator_consumed_outside_parent_keeps_parent(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def produce():  # type: ignore[no-untyped-def]
        yield "a"
        yield "b"

    @flowtel.trace
    def parent() -> list[str]:
        return list(produce())

    parent()
    trace = flowtel_traces.last
    assert span_named(trace, "produce").parent_id == span_named(trace, "parent").span_id


def test_disabled_tracing_calls_function_directly(flowtel_traces: TraceCapture) -> None:
    calls = []

    @flowtel.trace
    def f(x: int) -> int:
        calls.append(flowtel.get_current_active_span())
        return x

    flowtel.tracing.disable()
    assert f(1) == 1
    flowtel.tracing.enable()
    assert f(2) == 2
    assert calls[0] is None and calls[1] is not None
    assert len(flowtel_traces.traces) == 1


def test_sampling_override_zero_records_nothing(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def child() -> str:
        return flowtel.get_current_active_span() is None and "noop" or "live"

    @flowtel.trace(sampling_ratio_override=0.0)
    def never() -> str:
        return child()

    assert never() == "noop"
    assert flowtel_traces.traces == []


def test_invalid_sampling_override_is_a_clear_error() -> None:
    with pytest.raises(flowtel.FlowtelException, match="between 0.0 and 1.0"):
        flowtel.trace(sampling_ratio_override=1.5)


def test_recursion_limit_is_not_exceeded_by_tracing(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(min(200, sys.getrecursionlimit() // 10)) > 0
    assert len(flowtel_traces.last.data.spans) > 1
