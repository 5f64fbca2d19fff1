"""Trace.to_dict() JSON round-trips with the real mlflow package, both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import mlflow
import mlflow.entities
import pytest

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.testing import TraceCapture
from tests._mlflow_helpers import as_in_process_mlflow
from tests._servers.mlflow_versions import run_mlflow_client, versions


def _shapes() -> None:
    """Traces of every shape flowtel can produce."""

    @flowtel.trace(span_type=SpanType.TOOL)
    def tool(city: str) -> str:
        return f"Sunny in {city}"

    @flowtel.trace(span_type=SpanType.AGENT)
    def agent(question: str) -> str:
        flowtel.update_current_trace(
            tags={"app": "demo"}, metadata={"app.version": "1.2"}, client_request_id="req-42",
            session_id="sess-1", user="alice",
        )
        with flowtel.start_span("chat", span_type=SpanType.CHAT_MODEL) as span:
            span.set_inputs({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]})
            span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16})
            span.add_event(SpanEvent("retry", attributes={"attempt": 1, "ok": True, "tags": ["a", "b"]}))
            span.set_outputs({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Calling tool"}}]})
        return tool("Paris")

    @flowtel.trace
    def fails(x: int) -> None:
        raise ValueError(f"bad {x}")

    @flowtel.trace(output_reducer="".join)
    def stream():  # type: ignore[no-untyped-def]
        yield "a"
        yield "b"

    @flowtel.trace
    async def async_root() -> dict[str, Any]:
        return {"unicode": "héllo ✓", "nested": {"list": [1, 2.5, None, True]}}

    agent("Weather in Paris?")
    with pytest.raises(ValueError):
        fails(1)
    list(stream())
    asyncio.run(async_root())
    flowtel.log_trace(name="logged", request="q", response="r", start_time_ms=1_700_000_000_123, execution_time_ms=5)


@pytest.fixture
def flowtel_trace_dicts(flowtel_traces: TraceCapture) -> list[dict[str, Any]]:
    _shapes()
    return [json.loads(t.to_json()) for t in flowtel_traces.traces]


def test_flowtel_dicts_load_in_mlflow_with_every_field_equal(flowtel_trace_dicts: list[dict[str, Any]]) -> None:
    assert len(flowtel_trace_dicts) == 5
    for data in flowtel_trace_dicts:
        ours = flowtel.Trace.from_dict(data)
        theirs = mlflow.entities.Trace.from_dict(data)
        assert theirs.to_dict() == as_in_process_mlflow(data)
        _assert_same_trace(ours, theirs)


def test_mlflow_json_loads_in_flowtel(flowtel_trace_dicts: list[dict[str, Any]]) -> None:
    for data in flowtel_trace_dicts:
        mlflow_json = mlflow.entities.Trace.from_dict(data).to_json()
        ours = flowtel.Trace.from_json(mlflow_json)
        assert as_in_process_mlflow(ours.to_dict()) == json.loads(mlflow_json)


def _assert_same_trace(ours: flowtel.Trace, theirs: mlflow.entities.Trace) -> None:
    oi, ti = ours.info, theirs.info
    assert oi.trace_id == ti.trace_id
    assert oi.request_time == ti.request_time
    assert oi.execution_duration == ti.execution_duration
    assert oi.state.value == ti.state.value
    assert oi.trace_metadata == ti.trace_metadata
    assert oi.tags == ti.tags
    assert oi.client_request_id == ti.client_request_id
    assert oi.request_preview == ti.request_preview
    assert oi.response_preview == ti.response_preview
    assert oi.token_usage == ti.token_usage
    assert oi.experiment_id == ti.experiment_id
    assert len(ours.data.spans) == len(theirs.data.spans)
    for o, t in zip(ours.data.spans, theirs.data.spans):
        assert (o.trace_id, o.span_id, o.parent_id, o.name) == (t.trace_id, t.span_id, t.parent_id, t.name)
        assert (o.start_time_ns, o.end_time_ns) == (t.start_time_ns, t.end_time_ns)
        assert o.status.status_code.value == t.status.status_code.value
        assert o.status.description == t.status.description
        assert o.inputs == t.inputs and o.outputs == t.outputs
        assert o.span_type == t.span_type
        assert o.attributes == t.attributes
        assert [(e.name, e.timestamp, e.attributes) for e in o.events] == [
            (e.name, e.timestamp, dict(e.attributes)) for e in t.events
        ]


def test_token_usage_rolled_up(flowtel_trace_dicts: list[dict[str, Any]]) -> None:
    agent = flowtel.Trace.from_dict(flowtel_trace_dicts[0])
    assert agent.info.token_usage == {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    assert agent.info.trace_metadata["mlflow.traceInputs"] == '{"question": "Weather in Paris?"}'
    assert agent.info.trace_metadata["mlflow.traceOutputs"] == '"Sunny in Paris"'
    assert agent.info.request_preview == '{"question": "Weather in Paris?"}'
    assert agent.info.response_preview == '"Sunny in Paris"'
    stats = json.loads(agent.info.trace_metadata["mlflow.trace.sizeStats"])
    assert stats["num_spans"] == 3


def test_error_trace_shape(flowtel_trace_dicts: list[dict[str, Any]]) -> None:
    error = flowtel.Trace.from_dict(flowtel_trace_dicts[1])
    assert error.info.state == flowtel.TraceState.ERROR
    assert error.info.trace_metadata["mlflow.traceOutputs"] == ""
    assert error.info.response_preview is None
    span = error.data.spans[0]
    assert span.status.description == "ValueError: bad 1"
    assert span._span.attributes["mlflow.spanLogLevel"] == "40"


@pytest.fixture
def mlflow_traces(mlflow_server: Any, tmp_path: Any) -> Iterator[list[mlflow.entities.Trace]]:
    """Traces written by the real mlflow client to the real server."""
    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_experiment("roundtrip")

    @mlflow.trace(span_type="TOOL")
    def tool(x: int) -> int:
        return x + 1

    @mlflow.trace
    def root(x: int) -> int:
        mlflow.update_current_trace(tags={"k": "v"}, client_request_id="c-1")
        with mlflow.start_span("manual") as span:
            span.set_inputs({"a": [1, {"b": None}]})
            span.add_event(mlflow.entities.SpanEvent("evt", attributes={"n": 3}))
        return tool(x)

    @mlflow.trace
    def broken() -> None:
        raise RuntimeError("nope")

    ids = []
    root(1)
    ids.append(mlflow.get_last_active_trace_id())
    with pytest.raises(RuntimeError):
        broken()
    ids.append(mlflow.get_last_active_trace_id())
    mlflow.flush_trace_async_logging()
    try:
        yield [mlflow.get_trace(i) for i in ids]
    finally:
        mlflow.set_tracking_uri("")


def test_traces_written_by_mlflow_load_in_flowtel_unchanged(mlflow_traces: list[mlflow.entities.Trace]) -> None:
    for theirs in mlflow_traces:
        data = theirs.to_dict()
        ours = flowtel.Trace.from_dict(json.loads(json.dumps(data)))
        assert as_in_process_mlflow(ours.to_dict()) == data
        _assert_same_trace(ours, theirs)


# -- every supported MLflow version, in its own interpreter ---------------------------------------
_ROUND_TRIP_SCRIPT = """
import json, sys
import mlflow.entities
dicts = json.load(sys.stdin)
print(json.dumps([mlflow.entities.Trace.from_dict(d).to_dict() for d in dicts]))
"""


@pytest.mark.parametrize("version", versions(), ids=lambda v: f"mlflow-{v}")
def test_round_trip_exact_with_each_mlflow_version(flowtel_trace_dicts: list[dict[str, Any]], version: str) -> None:
    """What flowtel writes, the real ``mlflow`` of each version reads and writes back; from 3.18 on
    exactly (span ``kind`` included), before it exactly but for ``kind``, which 3.17 does not know."""
    theirs = run_mlflow_client(version, _ROUND_TRIP_SCRIPT, flowtel_trace_dicts)
    expected = json.loads(json.dumps(flowtel_trace_dicts))
    if tuple(int(part) for part in version.split(".")[:2]) < (3, 18):
        for trace in expected:
            for span in trace["data"]["spans"]:
                span.pop("kind")
    assert theirs == expected
    for data in theirs:  # and back: flowtel reads each version's dicts to the same trace
        assert json.loads(flowtel.Trace.from_dict(data).to_json())["data"]["spans"] == [
            {**s, "kind": s.get("kind", "SPAN_KIND_INTERNAL")} for s in data["data"]["spans"]
        ]
