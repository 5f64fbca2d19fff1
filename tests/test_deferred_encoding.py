"""Immutable inputs and outputs of ``@trace`` are JSON-encoded off the caller's thread.

The caller's thread records the bound arguments (and a scalar return value) as they are, with a
marker in the span's attribute dict; whoever reads the span first -- the delivery worker in
practice -- encodes them under the capture policy that was in force at the call. Every read
must see exactly what immediate encoding would have given, and the marker must never escape.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import trace as otel_trace

import flowtel
from flowtel.entities._constants import SpanAttributeKey
from flowtel.entities._span import _DEFERRED_SLOT, DEFERRED
from flowtel.exporters import ExportResult, TraceExporter
from flowtel.testing import TraceCapture
from flowtel.tracing import _clock, _runtime

INPUTS, OUTPUTS = SpanAttributeKey.INPUTS, SpanAttributeKey.OUTPUTS


def _deferred_keys(span: flowtel.LiveSpan) -> set[str]:
    return set(getattr(span._span, _DEFERRED_SLOT, None) or {})


class _Held:
    """A pipeline that keeps what it is given, unfinalised, until the test asks."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def submit(self, item: Any) -> bool:
        self.items.append(item)
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        return True

    def stats(self) -> Any:
        from flowtel.delivery._pipeline import DeliveryStats

        return DeliveryStats(destination="held")


class _Drop(TraceExporter):
    name = "drop"

    def export(self, traces: Any) -> ExportResult:
        return ExportResult()


def test_scalar_arguments_and_result_are_recorded_exactly(flowtel_traces: TraceCapture) -> None:
    seen: dict[str, Any] = {}

    @flowtel.trace
    def call(text: str, n: int, x: float, flag: bool, nothing: None = None, word: str = "défaut") -> str:
        span = flowtel.get_current_active_span()
        assert span is not None
        seen["deferred"] = _deferred_keys(span)
        return "réponse ✓"

    call("héllo \"quoted\"\n", 3, 2.5, True)
    assert seen["deferred"] == {INPUTS}  # the path under test was taken

    span = flowtel_traces.last.data.spans[0]
    expected_inputs = {"text": "héllo \"quoted\"\n", "n": 3, "x": 2.5, "flag": True, "nothing": None, "word": "défaut"}
    raw = span._raw_attributes()
    assert raw[INPUTS] == json.dumps(expected_inputs, ensure_ascii=False)
    assert raw[OUTPUTS] == json.dumps("réponse ✓", ensure_ascii=False)
    assert DEFERRED not in raw.values()
    assert span.inputs == expected_inputs and span.outputs == "réponse ✓"
    trace = flowtel_traces.last
    assert json.loads(trace.info.request_preview) == expected_inputs  # built from the encoded root
    assert DEFERRED not in trace.to_json()
    assert list(raw).index(INPUTS) < list(raw).index(OUTPUTS)  # positions kept: inputs first


def test_mutable_values_are_encoded_on_the_callers_thread(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def call(items: list[int]) -> dict[str, list[int]]:
        span = flowtel.get_current_active_span()
        assert span is not None and _deferred_keys(span) == set()
        result = {"items": items}
        return result

    items = [1, 2]
    out = call(items)
    items.append(3)  # changed after the call: the trace keeps the values at call time
    out["items"].append(4)
    span = flowtel_traces.last.data.spans[0]
    assert span.inputs == {"items": [1, 2]}
    assert span.outputs == {"items": [1, 2]}


def test_reading_an_open_span_sees_the_values(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def call(question: str) -> str:
        span = flowtel.get_current_active_span()
        assert span is not None
        assert span._span.attributes[INPUTS] is DEFERRED  # not encoded yet...
        assert span.inputs == {"question": "why?"}  # ...but every read encodes first
        assert span.to_dict()["attributes"][INPUTS] == json.dumps({"question": "why?"})
        return "because"

    call("why?")
    assert flowtel_traces.last.data.spans[0].inputs == {"question": "why?"}


def test_a_later_write_wins_over_the_deferred_value(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def call(question: str) -> str:
        span = flowtel.get_current_active_span()
        assert span is not None
        span.set_inputs({"rewritten": True})
        return "answer"

    call("original")
    span = flowtel_traces.last.data.spans[0]
    assert span.inputs == {"rewritten": True}
    assert span.outputs == "answer"


def test_policy_at_call_time_applies_even_if_changed_before_encoding() -> None:
    held = _Held()
    _runtime.set_destinations([_runtime.Destination(exporter=_Drop(), pipeline=held)])  # type: ignore[arg-type]

    @flowtel.trace
    def call(text: str) -> str:
        return text

    try:
        with flowtel.tracing.configure(max_string_chars=20):
            call("x" * 100)
        call("y" * 100)  # default policy again
        assert len(held.items) == 2
        # Nothing was encoded on the caller's thread, and the policy has changed since.
        limited, default = (item.trace().data.spans[0] for item in held.items)
    finally:
        for item in held.items:
            item.release()
        _runtime.set_destinations(None)
    assert "truncated 80 of 100 chars" in limited.inputs["text"]
    assert "truncated" in limited.outputs
    assert default.inputs == {"text": "y" * 100} and default.outputs == "y" * 100


def test_content_switch_off_records_nothing(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def call(secret: str) -> str:
        return "secret answer"

    with flowtel.tracing.configure(capture_content=False):
        call("secret question")
    assert "secret" not in flowtel_traces.last.to_json()


def test_span_ended_through_the_otel_api_keeps_its_inputs(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def call(question: str) -> str:
        otel_trace.get_current_span().end()  # the SDK ends it and hands a copy to the processor
        return "late"

    assert call("asked") == "late"
    span = flowtel_traces.last.data.spans[0]
    assert span.inputs == {"question": "asked"}
    assert DEFERRED not in span._raw_attributes().values()


def test_a_timed_out_trace_keeps_deferred_inputs(flowtel_traces: TraceCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(_clock, "monotonic", lambda: now[0])
    timeouts = _runtime.get_runtime().timeouts
    assert timeouts is not None

    @flowtel.trace
    def stuck(task: str) -> str:
        now[0] += timeouts.timeout + 1
        assert timeouts.check() == 1  # closed while this span is still open
        return "done late"

    stuck("sort")
    flowtel_traces.flush()
    trace = flowtel_traces.last
    assert trace.info.state == flowtel.TraceState.ERROR
    span = trace.data.spans[0]
    assert span.inputs == {"task": "sort"}
    assert DEFERRED not in trace.to_json()


def test_exceptions_still_end_the_span_with_inputs(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def boom(n: int) -> None:
        raise KeyError(n)

    with pytest.raises(KeyError):
        boom(7)
    span = flowtel_traces.last.data.spans[0]
    assert span.inputs == {"n": 7}
    assert span.status.status_code == flowtel.SpanStatusCode.ERROR
    assert span.outputs is None


async def test_async_functions_defer_and_record_exactly(flowtel_traces: TraceCapture) -> None:
    seen: dict[str, Any] = {}

    @flowtel.trace
    async def ask(question: str, attempt: int) -> str:
        span = flowtel.get_current_active_span()
        assert span is not None
        seen["deferred"] = _deferred_keys(span)
        return f"answer to {question}"

    assert await ask("why", 2) == "answer to why"
    assert seen["deferred"] == {INPUTS}
    span = flowtel_traces.last.data.spans[0]
    assert (span.inputs, span.outputs) == ({"question": "why", "attempt": 2}, "answer to why")


def test_generators_defer_inputs_and_record_their_chunks(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def stream(prompt: str, n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield f"{prompt}-{i}"

    assert list(stream("tok", 3)) == ["tok-0", "tok-1", "tok-2"]
    span = flowtel_traces.last.data.spans[0]
    assert span.inputs == {"prompt": "tok", "n": 3}
    assert span.outputs == ["tok-0", "tok-1", "tok-2"]
    assert DEFERRED not in flowtel_traces.last.to_json()


def test_nested_calls_each_keep_their_own_values(flowtel_traces: TraceCapture) -> None:
    @flowtel.trace
    def inner(x: int) -> int:
        return x * 2

    @flowtel.trace
    def outer(x: int) -> int:
        return inner(x) + inner(x + 1)

    assert outer(5) == 22
    spans = {(s.name, json.dumps(s.inputs)): s.outputs for s in flowtel_traces.last.data.spans}
    assert spans == {("outer", '{"x": 5}'): 22, ("inner", '{"x": 5}'): 10, ("inner", '{"x": 6}'): 12}
    info = flowtel_traces.last.info
    assert info.trace_metadata["mlflow.traceInputs"] == '{"x": 5}'
    assert info.trace_metadata["mlflow.traceOutputs"] == "22"
