"""What gets recorded: any input safely, limits, redaction, the no-content switch, sampling."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowtel
from flowtel.testing import TraceCapture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    __str__ = __repr__


@flowtel.trace
def echo(value: Any) -> Any:
    return value


def recorded_inputs(capture: TraceCapture) -> Any:
    return capture.last.data.spans[0].inputs["value"]


def test_type_zoo_is_recorded(flowtel_traces: TraceCapture) -> None:
    import numpy as np
    import pandas as pd
    import pydantic

    class Model(pydantic.BaseModel):
        name: str
        when: datetime.date

    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    zoo = {
        "model": Model(name="m", when=datetime.date(2024, 1, 2)),
        "dataclass": Point(1, 2),
        "enum": Color.RED,
        "datetime": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "uuid": uuid.UUID(int=1),
        "decimal": Decimal("1.5"),
        "bytes": b"\x00\x01",
        "array": np.arange(3),
        "scalar": np.float32(0.5),
        "frame": pd.DataFrame({"a": [1, 2]}),
        "set": {3, 1, 2},
        "frozen_keys": {frozenset({1}): "v"},
        "tuple": (1, 2),
        "gen": (i for i in range(3)),
        "cyclic": cyclic,
        "weird": Unprintable(),
    }
    echo(zoo)
    got = recorded_inputs(flowtel_traces)
    assert got["model"] == {"name": "m", "when": "2024-01-02"}
    assert got["dataclass"] == {"x": 1, "y": 2}
    assert got["enum"] == "red"
    assert got["datetime"] == "2024-01-02T03:04:05"
    assert got["uuid"] == str(uuid.UUID(int=1))
    assert got["decimal"] == "1.5"
    assert got["bytes"] == "[binary 2 bytes]"
    assert got["array"] == [0, 1, 2]
    assert got["scalar"] == 0.5
    assert got["frame"] == [{"a": 1}, {"a": 2}]
    assert got["set"] == [1, 2, 3]
    assert got["tuple"] == [1, 2]
    assert got["gen"].startswith("<generator")
    assert got["cyclic"] == [1, "<cycle>"]
    assert "Unprintable" in got["weird"]
    assert len(got["frozen_keys"]) == 1


def test_snapshot_at_capture_time(flowtel_traces: TraceCapture) -> None:
    data = {"items": [1]}

    @flowtel.trace
    def mutate(d: dict[str, Any]) -> None:
        d["items"].append(2)

    mutate(data)
    assert flowtel_traces.last.data.spans[0].inputs == {"d": {"items": [1]}}


def test_generators_passed_as_inputs_are_not_consumed(flowtel_traces: TraceCapture) -> None:
    gen = (i for i in range(3))

    @flowtel.trace
    def consume(g: Any) -> list[int]:
        return list(g)

    assert consume(gen) == [0, 1, 2]


def test_huge_values_are_truncated_visibly_and_stay_json(flowtel_traces: TraceCapture) -> None:
    with flowtel.tracing.configure(max_attribute_bytes=10_000):
        echo({"text": "x" * 50_000, "items": list(range(5_000))})
    span = flowtel_traces.last.data.spans[0]
    raw = span._raw_attributes()["mlflow.spanInputs"]
    assert len(raw.encode()) <= 10_000
    value = json.loads(raw)["value"]
    assert "truncated" in json.dumps(value)


def test_binary_media_is_replaced_by_a_reference(flowtel_traces: TraceCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    from flowtel.tracing import _capture

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000).decode()
    echo({"image_url": f"data:image/png;base64,{png}"})
    # A trace attachment, as in MLflow (tests/test_attachments.py); a size marker without them.
    assert recorded_inputs(flowtel_traces)["image_url"].startswith("mlflow-attachment://")
    monkeypatch.setenv("MLFLOW_TRACE_EXTRACT_ATTACHMENTS", "false")
    _capture.set_policy(None)
    echo({"image_url": f"data:image/png;base64,{png}"})
    assert recorded_inputs(flowtel_traces)["image_url"].startswith("[binary image/png")
    _capture.set_policy(None)  # the next test reads the (restored) environment afresh


SECRET = "sk-live-1234567890abcdef"


def test_secrets_are_redacted_everywhere(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(attributes={"api_key": SECRET})
    def call(api_key: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        span = flowtel.get_current_active_span()
        assert span is not None
        span.set_attribute("authorization", f"Bearer {SECRET}")
        span.add_event(flowtel.SpanEvent("request", attributes={"x-api-key": SECRET, "ok": True}))
        return {"token": SECRET, "usage": {"total_tokens": 3, "max_tokens": 10}}

    call(SECRET, {"Authorization": f"Bearer {SECRET}"}, {"nested": {"client_secret": SECRET, "password": SECRET}})
    trace = flowtel_traces.last
    text = trace.to_json()
    assert SECRET not in text
    span = trace.data.spans[0]
    assert span.outputs["usage"] == {"total_tokens": 3, "max_tokens": 10}  # counts are not secrets
    assert span.inputs["headers"]["Authorization"] == "[REDACTED]"
    assert span.events[0].attributes["ok"] is True


def test_redaction_can_be_turned_off(flowtel_traces: TraceCapture) -> None:
    with flowtel.tracing.configure(redact=False):
        echo({"api_key": "visible"})
    assert recorded_inputs(flowtel_traces) == {"api_key": "visible"}


def test_no_content_switch_keeps_structure_and_tokens(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace(span_type="CHAT_MODEL", attributes={"prompt": "secret prompt"})
    def chat(messages: list[dict[str, str]]) -> str:
        span = flowtel.get_current_active_span()
        assert span is not None
        span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7})
        span.set_attribute("mlflow.llm.model", "gpt-x")
        span.add_event(flowtel.SpanEvent("note", attributes={"text": "secret event"}))
        return "secret answer"

    @flowtel.trace
    def fails() -> None:
        raise ValueError("secret error message")

    @flowtel.trace
    def stream():  # type: ignore[no-untyped-def]
        yield "secret chunk"

    with flowtel.tracing.configure(capture_content=False):
        chat([{"role": "user", "content": "secret question"}])
        with pytest.raises(ValueError):
            fails()
        list(stream())
    chat_trace, error_trace, stream_trace = flowtel_traces.traces
    for trace in (chat_trace, error_trace, stream_trace):
        assert "secret" not in trace.to_json()
    span = chat_trace.data.spans[0]
    assert span.span_type == "CHAT_MODEL"
    assert span.get_attribute("mlflow.chat.tokenUsage")["total_tokens"] == 7
    assert span.get_attribute("mlflow.llm.model") == "gpt-x"
    assert chat_trace.info.token_usage == {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}
    err = error_trace.data.spans[0]
    assert err.status.description == "ValueError"
    assert err.events[0].attributes["exception.type"] == "ValueError"
    assert chat_trace.info.state == flowtel.TraceState.OK


def test_no_content_switch_from_environment(monkeypatch: pytest.MonkeyPatch, flowtel_traces: TraceCapture) -> None:
    monkeypatch.setenv("FLOWTEL_CAPTURE_CONTENT", "false")
    flowtel.tracing._capture.set_policy(None)
    try:
        echo("secret")
        assert "secret" not in flowtel_traces.last.to_json()
    finally:
        monkeypatch.delenv("FLOWTEL_CAPTURE_CONTENT")
        flowtel.tracing._capture.set_policy(None)


def test_invalid_capture_settings_are_clear_errors() -> None:
    with pytest.raises(flowtel.ConfigError, match="Invalid capture setting"):
        flowtel.tracing.configure(max_attribute_bytes=1)


# -- sampling ------------------------------------------------------------------------------------
@pytest.fixture
def random_ids(flowtel_traces: TraceCapture) -> Any:
    """Sequential test ids would make ratio sampling degenerate; use seeded random ids."""
    from flowtel.tracing import _clock, _runtime

    previous = _runtime._id_generator.delegate
    _runtime._id_generator.delegate = _clock.SeededIdGenerator(1234)
    yield
    _runtime._id_generator.delegate = previous


def _run_many(n: int) -> None:
    @flowtel.trace
    def child(i: int) -> int:
        return i

    @flowtel.trace
    def root(i: int) -> int:
        if i % 10 == 0:
            raise RuntimeError("boom")
        return child(i)

    for i in range(n):
        try:
            root(i)
        except RuntimeError:
            pass


def test_sampling_ratio_is_per_trace_without_orphans(monkeypatch: pytest.MonkeyPatch, flowtel_traces: TraceCapture,
                                                    random_ids: None) -> None:
    monkeypatch.setenv("MLFLOW_TRACE_SAMPLING_RATIO", "0.5")
    flowtel.tracing._runtime.reset(keep_override=True)
    _run_many(200)
    traces = flowtel_traces.traces
    assert 40 < len(traces) < 160
    for trace in traces:
        names = sorted(s.name for s in trace.data.spans)
        assert names in (["child", "root"], ["root"])  # whole traces only
        if names == ["root"]:
            assert trace.info.state == flowtel.TraceState.ERROR


def test_keep_errors_when_sampling(monkeypatch: pytest.MonkeyPatch, flowtel_traces: TraceCapture,
                                  random_ids: None) -> None:
    monkeypatch.setenv("MLFLOW_TRACE_SAMPLING_RATIO", "0.1")
    monkeypatch.setenv("FLOWTEL_SAMPLING_KEEP_ERRORS", "true")
    flowtel.tracing._runtime.reset(keep_override=True)
    _run_many(200)
    traces = flowtel_traces.traces
    errors = [t for t in traces if t.info.state == flowtel.TraceState.ERROR]
    assert len(errors) == 20
    stats = flowtel.get_delivery_stats()
    assert stats["sampled_out"] == 200 - len(traces)
    assert len(traces) < 100


# -- properties ----------------------------------------------------------------------------------
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10) | st.integers(), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(max_size=50),
    attrs=st.dictionaries(st.text(min_size=1, max_size=20), json_like, max_size=5),
    inputs=json_like,
)
def test_arbitrary_spans_are_recorded_safely(flowtel_traces: TraceCapture, name: str, attrs: dict[str, Any],
                                             inputs: Any) -> None:
    flowtel_traces.clear()
    with flowtel.start_span(name, attributes=attrs) as span:
        span.set_inputs(inputs)
        span.set_outputs(attrs)
    [trace] = flowtel_traces.traces
    again = flowtel.Trace.from_json(trace.to_json())
    assert again.data.spans[0].name == name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(st.text(max_size=8), json_like, max_size=4) | json_like)
def test_arbitrary_dicts_into_from_dict_and_add_trace(flowtel_traces: TraceCapture, data: Any) -> None:
    try:
        trace = flowtel.Trace.from_dict(data)
    except ValueError:
        trace = None
    try:
        with flowtel.start_span("host"):
            flowtel.add_trace(data)
    except flowtel.FlowtelException:
        pass
    if trace is not None:
        assert isinstance(trace, flowtel.Trace)
