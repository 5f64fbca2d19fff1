"""The data model on its own: construction, parsing, aliases, and compatibility quirks."""

from __future__ import annotations

import json
import re

import mlflow.entities
import pytest
from opentelemetry import trace as otel_trace

import flowtel
from flowtel.entities import (
    Document,
    SpanStatusCode,
    SpanType,
    TraceInfo,
    TraceLocation,
    TraceLocationType,
    TraceState,
    TraceStatus,
)
from flowtel.testing import TraceCapture


def test_span_types_match_mlflow() -> None:
    ours = {k: v for k, v in vars(SpanType).items() if k.isupper()}
    theirs = {k: v for k, v in vars(mlflow.entities.SpanType).items() if k.isupper()}
    assert ours == theirs
    assert len(ours) == 15


def test_span_event_from_exception() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        event = flowtel.SpanEvent.from_exception(exc)
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert event.attributes["exception.message"] == "'missing'"
    assert 'raise KeyError("missing")' in event.attributes["exception.stacktrace"]


def test_span_event_from_exception_whose_str_raises() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = flowtel.SpanEvent.from_exception(Weird())
    assert event.attributes["exception.message"] == "<Weird: unprintable>"


def test_span_status_parsing() -> None:
    assert flowtel.SpanStatus("OK").status_code is SpanStatusCode.OK
    assert flowtel.SpanStatus("STATUS_CODE_ERROR", "x").status_code is SpanStatusCode.ERROR
    assert SpanStatusCode.ERROR.to_otel_proto_status_code_name() == "STATUS_CODE_ERROR"
    with pytest.raises(ValueError, match="Invalid span status"):
        flowtel.SpanStatus("BROKEN")
    assert flowtel.SpanStatus("ERROR", "why").to_otel_status().description == "why"


def test_trace_info_v2_aliases() -> None:
    info = TraceInfo(
        trace_id="tr-abc", trace_location=TraceLocation.from_experiment_id("7"), request_time=1000,
        state=TraceState.ERROR, execution_duration=50, trace_metadata={"k": "v"},
    )
    assert info.request_id == "tr-abc"
    assert info.experiment_id == "7"
    assert info.timestamp_ms == 1000
    assert info.execution_time_ms == 50
    assert info.request_metadata == {"k": "v"}
    assert info.status is TraceStatus.ERROR
    assert info.token_usage is None


def test_trace_info_v2_dict_is_readable() -> None:
    info = TraceInfo.from_dict({
        "request_id": "tr-1", "experiment_id": "3", "timestamp_ms": 5, "execution_time_ms": 2,
        "status": "OK", "request_metadata": {"a": "b"}, "tags": {"t": "u"},
    })
    assert (info.trace_id, info.experiment_id, info.request_time, info.state) == ("tr-1", "3", 5, TraceState.OK)
    assert info.tags == {"t": "u"}


def test_bare_trace_info_dict_matches_mlflow() -> None:
    ours = TraceInfo(trace_id="tr-1", trace_location=TraceLocation.from_experiment_id("0"),
                     request_time=0, state=TraceState.STATE_UNSPECIFIED)
    theirs = mlflow.entities.TraceInfo(
        trace_id="tr-1",
        trace_location=mlflow.entities.TraceLocation.from_experiment_id("0"),
        request_time=0, state=mlflow.entities.TraceState.STATE_UNSPECIFIED,
    )
    assert ours.to_dict() == theirs.to_dict()


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 1_795_344_974_130, 1_795_344_974_000])
def test_request_time_rendering_matches_protobuf(ms: int) -> None:
    ours = TraceInfo("tr-1", TraceLocation.from_experiment_id("0"), ms, TraceState.OK).to_dict()
    theirs = mlflow.entities.TraceInfo(
        "tr-1", mlflow.entities.TraceLocation.from_experiment_id("0"), ms, mlflow.entities.TraceState.OK
    ).to_dict()
    assert ours["request_time"] == theirs["request_time"]
    assert TraceInfo.from_dict(ours).request_time == ms


def test_long_metadata_and_tags_are_truncated_like_mlflow() -> None:
    kwargs = dict(request_time=0)
    ours = TraceInfo("tr-1", TraceLocation.from_experiment_id("0"), state=TraceState.OK,
                     trace_metadata={"m" * 300: "v" * 300}, tags={"t": "x" * 5000}, **kwargs)
    theirs = mlflow.entities.TraceInfo(
        "tr-1", mlflow.entities.TraceLocation.from_experiment_id("0"), state=mlflow.entities.TraceState.OK,
        trace_metadata={"m" * 300: "v" * 300}, tags={"t": "x" * 5000}, **kwargs,
    )
    assert ours.to_dict() == theirs.to_dict()


def test_trace_location() -> None:
    loc = TraceLocation.from_experiment_id("5")
    assert loc.type is TraceLocationType.MLFLOW_EXPERIMENT
    assert TraceLocation.from_dict(loc.to_dict()) == loc
    with pytest.raises(ValueError):
        TraceLocation(type="NOT_A_TYPE")  # type: ignore[arg-type]


def test_document() -> None:
    doc = Document(page_content="text", metadata={"source": "x"}, id="d1")
    assert doc.to_dict() == {"page_content": "text", "metadata": {"source": "x"}, "id": "d1"}


def test_search_spans(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(span_type=SpanType.TOOL)
    def add_one(x: int) -> int:
        return x + 1

    @flowtel.trace(span_type=SpanType.TOOL)
    def add_two(x: int) -> int:
        return x + 2

    @flowtel.trace
    def run(x: int) -> int:
        return add_two(add_one(x))

    run(1)
    trace = flowtel_traces.last
    assert [s.name for s in trace.search_spans(span_type=SpanType.TOOL)] == ["add_one", "add_two"]
    assert [s.name for s in trace.search_spans(name=re.compile(r"add_\w+"))] == ["add_one", "add_two"]
    assert [s.name for s in trace.search_spans(name="run")] == ["run"]
    span_id = trace.data.spans[1].span_id
    assert [s.name for s in trace.search_spans(span_id=span_id)] == ["add_one"]
    assert trace.search_spans(name="add_one", span_type=SpanType.LLM) == []
    with pytest.raises(ValueError):
        trace.search_spans(name=42)  # type: ignore[arg-type]
    assert trace.data.request == '{"x": 1}'
    assert trace.data.response == "4"
    assert trace.data.intermediate_outputs == {"add_one": 2, "add_two": 4}


def test_span_from_dict_accepts_hex_ids_and_v2_form() -> None:
    hex_form = {
        "trace_id": "tr-" + "a" * 32, "span_id": "00000000000000ff", "parent_span_id": None,
        "name": "s", "start_time_unix_nano": "10", "end_time_unix_nano": "20", "events": [],
        "status": {"code": "OK", "message": ""},
        "attributes": {"mlflow.traceRequestId": json.dumps("tr-" + "a" * 32)},
    }
    span = flowtel.Span.from_dict(hex_form)
    assert span.span_id == "00000000000000ff" and span.start_time_ns == 10
    v2 = {
        "name": "old", "context": {"trace_id": "0x" + "1" * 32, "span_id": "0x" + "2" * 16},
        "parent_id": None, "start_time": 1, "end_time": 2, "status_code": "OK", "status_message": "",
        "attributes": {"mlflow.traceRequestId": '"tr-1"'}, "events": [],
    }
    assert flowtel.Span.from_dict(v2).name == "old"


def test_invalid_dicts_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="Expected keys: 'info' and 'data'"):
        flowtel.Trace.from_dict({"info": {}})
    with pytest.raises(ValueError, match="mlflow.traceRequestId"):
        flowtel.Span.from_dict({"attributes": {}})
    with pytest.raises(ValueError, match="Unable to parse trace JSON"):
        flowtel.Trace.from_json("{not json")


def test_flowtel_never_touches_the_global_provider(flowtel_traces: TraceCapture) -> None:
    before = otel_trace.get_tracer_provider()

    @flowtel.trace
    def f() -> None:
        return None

    f()
    flowtel.tracing.reset()
    f()
    assert otel_trace.get_tracer_provider() is before
