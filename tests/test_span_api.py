"""start_span, start_span_no_context, trace updates, context propagation, configuration."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor as PlainExecutor

import pytest

import flowtel
from flowtel import SpanEvent, SpanStatus, SpanType
from flowtel.testing import TraceCapture


def test_start_span_context_manager(flowtel_traces: TraceCapture) -> None:
    with flowtel.start_span("outer", span_type=SpanType.CHAIN, attributes={"k": "v"}) as outer:
        outer.set_inputs({"q": 1})
        with flowtel.start_span("inner") as inner:
            inner.set_outputs("x")
            inner.add_event(SpanEvent("checkpoint", attributes={"step": 2}))
            assert flowtel.get_current_active_span() is inner
        assert flowtel.get_current_active_span() is outer
        outer.set_outputs({"a": [1, 2]})
    assert flowtel.get_current_active_span() is None
    trace = flowtel_traces.last
    outer_span, inner_span = trace.data.spans
    assert outer_span.span_type == "CHAIN"
    assert outer_span.get_attribute("k") == "v"
    assert outer_span.inputs == {"q": 1}
    assert outer_span.outputs == {"a": [1, 2]}
    assert inner_span.parent_id == outer_span.span_id
    assert inner_span.events[0].name == "checkpoint"
    assert inner_span.events[0].attributes == {"step": 2}


def test_start_span_exception(flowtel_traces: TraceCapture) -> None:
    with pytest.raises(ZeroDivisionError):
        with flowtel.start_span("risky"):
            1 / 0  # noqa: B018
    span = flowtel_traces.last.data.spans[0]
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.events[0].attributes["exception.type"] == "ZeroDivisionError"


async def test_start_span_async_with(flowtel_traces: TraceCapture) -> None:
    async with flowtel.start_span("async-block") as span:
        span.set_outputs(1)
    assert flowtel_traces.last.data.spans[0].outputs == 1


def test_start_span_no_context(flowtel_traces: TraceCapture) -> None:
    root = flowtel.start_span_no_context(
        "root", span_type=SpanType.AGENT, inputs={"question": "hi"},
        attributes={"a": 1}, tags={"team": "x"}, metadata={"app.version": "1.2"},
        experiment_id="42", start_time_ns=1_000_000_000,
    )
    assert flowtel.get_current_active_span() is None  # not made current
    child = flowtel.start_span_no_context("child", parent_span=root, inputs=[1, 2])
    child.end(outputs="c", attributes={"extra": True}, end_time_ns=2_000_000_000)
    root.end(outputs={"answer": "hello"}, status="OK", end_time_ns=3_000_000_000)

    trace = flowtel_traces.last
    assert trace.info.experiment_id == "42"
    assert trace.info.tags["team"] == "x"
    assert trace.info.trace_metadata["app.version"] == "1.2"
    assert trace.info.request_time == 1000
    assert trace.info.execution_duration == 2000
    root_span, child_span = trace.data.spans
    assert root_span.start_time_ns == 1_000_000_000
    assert child_span.parent_id == root_span.span_id
    assert child_span.get_attribute("extra") is True
    assert child_span.end_time_ns == 2_000_000_000
    assert root_span.outputs == {"answer": "hello"}


def test_end_with_error_status(flowtel_traces: TraceCapture) -> None:
    span = flowtel.start_span_no_context("s")
    span.end(status=SpanStatus("ERROR", "went wrong"))
    trace = flowtel_traces.last
    assert trace.data.spans[0].status.description == "went wrong"
    assert trace.info.state == flowtel.TraceState.ERROR


def test_ending_twice_is_harmless(flowtel_traces: TraceCapture) -> None:
    span = flowtel.start_span_no_context("s")
    span.end(outputs=1)
    span.end(outputs=2)
    assert len(flowtel_traces.traces) == 1
    assert flowtel_traces.last.data.spans[0].outputs == 1


def test_update_current_trace(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def handler() -> str:
        flowtel.update_current_trace(
            tags={"env": "prod"}, metadata={"app.version": "2"}, client_request_id="req-1",
            request_preview="custom request", response_preview="custom response",
            session_id="sess-1", user="alice", model_id="m-1",
        )
        return "ok"

    handler()
    info = flowtel_traces.last.info
    assert info.tags["env"] == "prod"
    assert info.trace_metadata["app.version"] == "2"
    assert info.trace_metadata["mlflow.trace.session"] == "sess-1"
    assert info.trace_metadata["mlflow.trace.user"] == "alice"
    assert info.trace_metadata["mlflow.modelId"] == "m-1"
    assert info.client_request_id == "req-1"
    assert info.request_preview == "custom request"
    assert info.response_preview == "custom response"


def test_update_current_trace_state_wins(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def handler() -> None:
        flowtel.update_current_trace(state="ERROR")

    handler()
    trace = flowtel_traces.last
    assert trace.info.state == flowtel.TraceState.ERROR
    assert trace.data.spans[0].status.status_code == flowtel.SpanStatusCode.OK


def test_update_current_trace_outside_trace_warns(caplog: pytest.LogCaptureFixture) -> None:
    flowtel.update_current_trace(tags={"x": "y"})
    assert "outside a trace" in caplog.text


def test_ids_of_active_and_last_trace(flowtel_traces: TraceCapture) -> None:
    seen = {}

    @flowtel.trace
    def work() -> None:
        seen["active"] = flowtel.get_active_trace_id()

    assert flowtel.get_active_trace_id() is None
    work()
    assert seen["active"] == flowtel.get_last_active_trace_id()
    assert flowtel_traces.last.info.trace_id == seen["active"]

    other_thread: dict[str, str | None] = {}

    def in_thread() -> None:
        other_thread["before"] = flowtel.get_last_active_trace_id(thread_local=True)
        work()
        other_thread["after"] = flowtel.get_last_active_trace_id(thread_local=True)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert other_thread["before"] is None
    assert other_thread["after"] == flowtel.get_last_active_trace_id()


def test_trace_tags_on_active_and_finished_traces(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def work() -> str:
        trace_id = flowtel.get_active_trace_id()
        assert trace_id is not None
        flowtel.set_trace_tag(trace_id, "stage", "running")
        flowtel.set_trace_tag(trace_id, "temp", "1")
        flowtel.delete_trace_tag(trace_id, "temp")
        return trace_id

    trace_id = work()
    assert flowtel_traces.get(trace_id).info.tags["stage"] == "running"
    assert "temp" not in flowtel_traces.get(trace_id).info.tags


def test_thread_pool_helper_keeps_children_in_trace(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def task(i: int) -> int:
        return i * i

    @flowtel.trace
    def fan_out() -> list[int]:
        with flowtel.tracing.ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(task, range(5)))

    assert fan_out() == [0, 1, 4, 9, 16]
    [trace] = flowtel_traces.traces
    root = trace.search_spans(name="fan_out")[0]
    tasks = trace.search_spans(name="task")
    assert len(tasks) == 5
    assert all(s.parent_id == root.span_id for s in tasks)


def test_with_current_context_for_plain_threads_and_executors(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def task() -> str:
        return "done"

    @flowtel.trace
    def root() -> None:
        thread = threading.Thread(target=flowtel.tracing.with_current_context(task))
        thread.start()
        thread.join()
        with PlainExecutor(max_workers=1) as pool:
            pool.submit(flowtel.tracing.with_current_context(task)).result()

    root()
    [trace] = flowtel_traces.traces
    root_span = trace.search_spans(name="root")[0]
    assert [s.parent_id for s in trace.search_spans(name="task")] == [root_span.span_id] * 2


def test_plain_thread_without_helper_starts_its_own_trace(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def task() -> None:
        return None

    @flowtel.trace
    def root() -> None:
        thread = threading.Thread(target=task)
        thread.start()
        thread.join()

    root()
    assert len(flowtel_traces.traces) == 2


async def test_asyncio_tasks_inherit_context(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    async def task(i: int) -> int:
        await asyncio.sleep(0)
        return i

    @flowtel.trace
    async def root() -> int:
        tasks = [asyncio.create_task(task(i)) for i in range(3)]
        return sum(await asyncio.gather(*tasks))

    assert await root() == 3
    [trace] = flowtel_traces.traces
    root_span = trace.search_spans(name="root")[0]
    assert [s.parent_id for s in trace.search_spans(name="task")] == [root_span.span_id] * 3


def test_spans_ending_after_root_stay_in_trace(flowtel_traces: TraceCapture) -> None:
    release = threading.Event()
    finished = threading.Event()

    @flowtel.trace
    def background() -> str:
        release.wait(timeout=10)
        return "late"

    def runner() -> None:
        background()
        finished.set()

    @flowtel.trace
    def root() -> str:
        threading.Thread(target=flowtel.tracing.with_current_context(runner)).start()
        return "root done"

    root()
    assert flowtel_traces.exporter.traces == []  # still waiting for the background span
    release.set()
    assert finished.wait(timeout=10)
    [trace] = flowtel_traces.traces
    assert {s.name for s in trace.data.spans} == {"root", "background"}
    assert trace.search_spans(name="background")[0].outputs == "late"


def test_scoped_context_tags_metadata_and_disable(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def handler() -> None:
        return None

    with flowtel.tracing.context(session_id="s-1", user="bob", tags={"tenant": "acme"}):
        with flowtel.tracing.context(metadata={"region": "eu"}):
            handler()
        with flowtel.tracing.context(enabled=False):
            handler()
    handler()
    first, second = flowtel_traces.traces
    assert first.info.trace_metadata["mlflow.trace.session"] == "s-1"
    assert first.info.trace_metadata["mlflow.trace.user"] == "bob"
    assert first.info.trace_metadata["region"] == "eu"
    assert first.info.tags["tenant"] == "acme"
    assert "tenant" not in second.info.tags


async def test_scoped_disable_does_not_affect_concurrent_requests(flowtel_traces: TraceCapture) -> None:
    gate = asyncio.Event()

    @flowtel.trace
    async def handler(name: str) -> str:
        await gate.wait()
        return name

    async def request(name: str, enabled: bool) -> str:
        with flowtel.tracing.context(enabled=enabled):
            return await handler(name)

    tasks = [asyncio.create_task(request("on", True)), asyncio.create_task(request("off", False))]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == ["on", "off"]
    assert [t.data.spans[0].inputs for t in flowtel_traces.traces] == [{"name": "on"}]


def test_span_processors_run_before_end(flowtel_traces: TraceCapture) -> None:
    def mask(span: flowtel.LiveSpan) -> None:
        if span.inputs and "email" in span.inputs:
            span.set_inputs({**span.inputs, "email": "***"})

    @flowtel.trace
    def signup(user: str, email: str) -> bool:
        return True

    with flowtel.tracing.configure(span_processors=[mask]):
        signup("u", "u@example.com")
    signup("u", "visible@example.com")
    masked, unmasked = flowtel_traces.traces
    assert masked.data.spans[0].inputs == {"user": "u", "email": "***"}
    assert unmasked.data.spans[0].inputs["email"] == "visible@example.com"


def test_configure_rejects_bad_processors() -> None:
    with pytest.raises(flowtel.ConfigError, match="exactly one argument"):
        flowtel.tracing.configure(span_processors=[lambda a, b: None])
    with pytest.raises(flowtel.ConfigError, match="callables"):
        flowtel.tracing.configure(span_processors=["nope"])  # type: ignore[list-item]


def test_log_trace_and_add_trace(flowtel_traces: TraceCapture) -> None:
    trace_id = flowtel.log_trace(
        name="remote", request={"q": 1}, response="r", intermediate_outputs={"docs": ["d"]},
        tags={"src": "svc"}, start_time_ms=1_000, execution_time_ms=250,
    )
    remote = flowtel_traces.get(trace_id)
    assert remote.info.execution_duration == 250
    assert remote.data.intermediate_outputs == {"docs": ["d"]}

    @flowtel.trace
    def local() -> None:
        flowtel.add_trace(remote.to_dict())

    local()
    merged = flowtel_traces.last
    assert [s.name for s in merged.data.spans] == ["local", "remote"]
    local_span, remote_span = merged.data.spans
    assert remote_span.parent_id == local_span.span_id
    assert remote_span.trace_id == merged.info.trace_id
    assert remote_span.inputs == {"q": 1}


def test_add_trace_without_active_span_creates_remote_root(flowtel_traces: TraceCapture) -> None:
    trace_id = flowtel.log_trace(name="svc", request="a", response="b")
    remote = flowtel_traces.get(trace_id)
    flowtel.add_trace(remote)
    merged = flowtel_traces.last
    assert [s.name for s in merged.data.spans] == ["Remote Trace <svc>", "svc"]


def test_add_trace_rejects_bad_input() -> None:
    with pytest.raises(flowtel.FlowtelException, match="Failed to load a trace"):
        flowtel.add_trace({"info": {}, "data": {"spans": [{"name": "x"}]}})


def test_noop_span_surface_does_nothing() -> None:
    span = flowtel.NoOpSpan()
    span.set_inputs(1)
    span.set_outputs(2)
    span.set_attribute("a", 1)
    span.set_attributes({"b": 2})
    span.set_status("ERROR")
    span.add_event(SpanEvent("e"))
    span.record_exception(ValueError("x"))
    span.end()
    assert span.trace_id == "MLFLOW_NO_OP_SPAN_TRACE_ID"
    assert span.span_id is None and span.inputs is None


def test_disabled_start_span_yields_noop(flowtel_traces: TraceCapture) -> None:
    flowtel.tracing.disable()
    with flowtel.start_span("x") as span:
        assert isinstance(span, flowtel.NoOpSpan)
    flowtel.tracing.enable()
    assert flowtel_traces.traces == []


def test_deterministic_ids_and_clock(flowtel_traces: TraceCapture) -> None:
    with flowtel.start_span("a"):
        with flowtel.start_span("b"):
            pass
    trace = flowtel_traces.last
    assert trace.info.trace_id == "tr-" + "0" * 31 + "1"
    assert [s.span_id for s in trace.data.spans] == ["0000000000000001", "0000000000000002"]
    starts = [s.start_time_ns for s in trace.data.spans]
    assert starts[1] - starts[0] == 1_000_000


def test_misuse_is_logged_not_raised(flowtel_traces: TraceCapture, caplog: pytest.LogCaptureFixture) -> None:
    with flowtel.start_span("x") as span:
        span.set_attributes("not a dict")  # type: ignore[arg-type]
        span.set_status("BOGUS")
        span.set_attribute(123, "v")  # type: ignore[arg-type]
    assert "set_attributes() takes a dict" in caplog.text
    assert "Invalid span status" in caplog.text
    assert flowtel_traces.last.data.spans[0].status.status_code == flowtel.SpanStatusCode.OK
