"""flowtel's direct span construction gives exactly what the OTel SDK's Tracer.start_span gives."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from flowtel.tracing._sampling import make_sampler
from flowtel.tracing._spans import SpanStarter


class _Recorder(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[tuple[Any, Any]] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append((span, parent_context))

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


class _FixedIds:
    """Same ids for both paths, so whole span contexts can be compared."""

    def __init__(self) -> None:
        self.trace_ids = iter(range(0xA0, 0xFFFF))
        self.span_ids = iter(range(0xB0, 0xFFFF))

    def generate_trace_id(self) -> int:
        return next(self.trace_ids)

    def generate_span_id(self) -> int:
        return next(self.span_ids)


def _provider(ratio: float = 1.0) -> tuple[TracerProvider, _Recorder]:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class Ids(IdGenerator):
        def __init__(self) -> None:
            self.fixed = _FixedIds()

        def generate_trace_id(self) -> int:
            return self.fixed.generate_trace_id()

        def generate_span_id(self) -> int:
            return self.fixed.generate_span_id()

    provider = TracerProvider(
        sampler=make_sampler(ratio)[0], id_generator=Ids(),
        span_limits=SpanLimits(max_attributes=1000, max_attribute_length=SpanLimits.UNSET,
                               max_span_attribute_length=SpanLimits.UNSET),
    )
    recorder = _Recorder()
    provider.add_span_processor(recorder)
    return provider, recorder


def _shape(span: ReadableSpan) -> dict[str, Any]:
    return {
        "name": span.name, "context": span.context, "flags": int(span.context.trace_flags),
        "trace_state": span.context.trace_state.to_header(), "parent": span.parent, "kind": span.kind,
        "resource": span.resource.attributes, "scope": span.instrumentation_scope,
        "attributes": dict(span.attributes or {}), "links": list(span.links),
        "events": [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
        "status": span.status.status_code, "start": span.start_time, "end": span.end_time,
    }


def _both(parent_ctx: otel_context.Context | None) -> tuple[dict[str, Any], dict[str, Any], SpanStarter]:
    shapes = []
    starter = None
    for fast in (False, True):
        provider, recorder = _provider()
        tracer = provider.get_tracer("flowtel", "1")
        starter = SpanStarter(provider, tracer, always_sample=True)
        if fast:
            span = starter.start("op", parent_ctx, 1_000)
        else:
            span = tracer.start_span("op", context=parent_ctx, start_time=1_000)
        assert recorder.started[0][0] is span
        assert recorder.started[0][1] is parent_ctx
        span.end(end_time=2_000)
        shapes.append(_shape(recorder.ended[0]))
    assert starter is not None
    return shapes[0], shapes[1], starter


def test_fast_path_is_taken_with_this_sdk() -> None:
    provider, _ = _provider()
    assert SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True).fast


def test_root_span_matches_the_sdk() -> None:
    slow, fast, _ = _both(None)
    assert fast == slow
    assert fast["parent"] is None


def test_child_of_sampled_parent_with_trace_state_matches_the_sdk() -> None:
    parent = SpanContext(0x1234, 0x99, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED),
                         trace_state=TraceState([("vendor", "v1")]))
    ctx = otel_trace.set_span_in_context(NonRecordingSpan(parent))
    slow, fast, _ = _both(ctx)
    assert fast == slow
    assert fast["context"].trace_id == 0x1234
    assert fast["trace_state"] == "vendor=v1"


def test_child_of_current_context_matches_the_sdk() -> None:
    parent = SpanContext(0x77, 0x88, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    token = otel_context.attach(otel_trace.set_span_in_context(NonRecordingSpan(parent)))
    try:
        slow, fast, _ = _both(None)
    finally:
        otel_context.detach(token)
    assert fast == slow
    assert fast["parent"] == parent


def test_unsampled_parent_is_left_to_the_sampler() -> None:
    parent = SpanContext(0x55, 0x66, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    provider, recorder = _provider()
    starter = SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True)
    span = starter.start("op", otel_trace.set_span_in_context(NonRecordingSpan(parent)), 1_000)
    assert not span.is_recording()
    assert recorder.started == []


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_ratio_sampling_goes_through_the_sampler(ratio: float) -> None:
    provider, _ = _provider(ratio)
    starter = SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=ratio >= 1.0)
    assert not starter.fast
    span = starter.start("op", None, 1_000)
    if ratio == 0.0:
        assert not span.is_recording()


def test_more_processors_are_all_called() -> None:
    provider, first = _provider()
    second = _Recorder()
    provider.add_span_processor(second)
    starter = SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True)
    span = starter.start("op", None, 1_000)
    span.end(end_time=2_000)
    assert len(first.ended) == len(second.ended) == 1


def test_direct_end_gives_the_processor_what_the_sdk_end_gives() -> None:
    """LiveSpan's direct end hands the ended SDK span itself to the processor (no snapshot copy):
    everything a processor or exporter reads must equal what the SDK's own end() delivers."""
    from flowtel.entities import LiveSpan, SpanEvent

    shapes = []
    for direct in (False, True):
        provider, recorder = _provider()
        starter = SpanStarter(provider, provider.get_tracer("flowtel", "1"), always_sample=True)
        span = starter.start("op", None, 1_000)
        live = LiveSpan(span, None, "TOOL", direct=direct)
        live.set_attribute("k", {"v": 1})
        live.add_event(SpanEvent("note", timestamp=1_500, attributes={"a": 1}))
        live.end(outputs="done", end_time_ns=2_000)
        live.end(outputs="ignored", end_time_ns=3_000)  # a second end changes nothing
        (ended,) = recorder.ended
        assert (ended is span) == direct
        assert not span.is_recording()
        live.set_attribute("after", 1)  # ignored once ended, on both paths
        shapes.append(_shape(ended))
    assert shapes[0] == shapes[1]
    assert shapes[1]["end"] == 2_000 and shapes[1]["attributes"]["mlflow.spanOutputs"] == '"done"'


def test_template_built_spans_have_the_sdk_layout_and_behave_alike() -> None:
    """Spans built from the template (a sole processor, as in flowtel's runtime) carry exactly
    the fields, containers and locks the SDK's constructor gives, and the SDK's own methods work
    on them the same way."""
    from opentelemetry.trace import Status, StatusCode

    spans = []
    provider, recorder = _provider()
    tracer = provider.get_tracer("flowtel", "1")
    starter = SpanStarter(provider, tracer, always_sample=True)
    assert starter.template_layout  # this SDK's layout is the one known
    for fast in (False, True):
        recorder.ended.clear()
        span = starter.start("op", None, 1_000) if fast else tracer.start_span("op", start_time=1_000)
        spans.append(span)

        span.set_attribute("a", "1")
        span.set_attributes({"b": 2})
        span.add_event("e", {"x": 1}, timestamp=1_100)
        span.add_link(SpanContext(0x9, 0x8, is_remote=False), {"l": True})
        span.update_name("renamed")
        span.set_status(Status(StatusCode.OK))
        span.end(end_time=2_000)
        span.set_attribute("late", "ignored")
        (ended,) = recorder.ended
        assert _shape(ended)["attributes"] == {"a": "1", "b": 2}

    slow, fast_span = spans
    per_span = {"_lock", "_attributes", "_events", "_links", "_context", "_span_processor", "_status"}
    assert fast_span._status.status_code == slow._status.status_code
    # The SDK hands its multi-processor to the span; the template, the sole processor itself.
    assert fast_span._span_processor is provider._active_span_processor._span_processors[0]
    assert set(vars(fast_span)) == set(vars(slow))
    assert {k: v for k, v in vars(fast_span).items() if k not in per_span} == {
        k: v for k, v in vars(slow).items() if k not in per_span}
    for name in ("_lock",):
        assert type(getattr(fast_span, name)) is type(getattr(slow, name))
    for container in ("_attributes", "_events", "_links"):
        f, s = getattr(fast_span, container), getattr(slow, container)
        assert isinstance(f, type(s)) and type(f._lock) is type(s._lock)
        assert f is not getattr(spans[0], container)
    assert type(fast_span._attributes) is type(slow._attributes)
    assert set(vars(fast_span._attributes)) == set(vars(slow._attributes))
    assert fast_span._attributes.maxlen == slow._attributes.maxlen
    # Events and links got a value, so their deques exist now, bounded as the SDK's are.
    assert fast_span._events._dq.maxlen == slow._events._dq.maxlen
    assert fast_span._links._dq.maxlen == slow._links._dq.maxlen
    assert [lk.attributes for lk in fast_span.links] == [lk.attributes for lk in slow.links]
    assert _shape(fast_span) | {"context": None, "links": None} == _shape(slow) | {"context": None, "links": None}


def test_two_template_spans_share_no_state() -> None:
    provider, _ = _provider()
    starter = SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True)
    first, second = starter.start("a", None, 1), starter.start("b", None, 2)
    first.set_attribute("only", "first")
    first.add_event("only-first")
    assert dict(second.attributes or {}) == {} and list(second.events) == []
    assert first._lock is not second._lock and first._attributes._lock is not second._attributes._lock


def test_event_and_link_deques_are_made_on_first_use() -> None:
    from opentelemetry.sdk.util import BoundedList

    from flowtel.entities._span import plain_events, plain_links

    provider, recorder = _provider()
    starter = SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True)
    span = starter.start("op", None, 1)
    assert isinstance(span._events, BoundedList) and "_dq" not in vars(span._events)
    assert plain_events(span) == () and plain_links(span) == ()  # reading makes none
    assert "_dq" not in vars(span._events) and "_dq" not in vars(span._links)
    assert len(span._events) == 0 and span.events == ()  # the SDK's reads work (and make it)
    for i in range(130):  # beyond the bound (128 in this provider): oldest dropped, counted
        span.add_event(f"e{i}")
    span.end(end_time=2)
    (ended,) = recorder.ended
    assert [e.name for e in ended.events][:1] == ["e2"] and len(ended.events) == 128
    assert ended.dropped_events == 2
