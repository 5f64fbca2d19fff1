"""flowtel/_otel_sdk.py: SDK internals are used only on verified SDK versions, and the public-API
fallback records exactly the same traces."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

import flowtel
from flowtel import _otel_sdk
from flowtel.delivery import Destination
from flowtel.exporters import InMemoryExporter
from flowtel.tracing import _deterministic, _runtime
from flowtel.tracing._spans import SpanStarter


@contextmanager
def _sdk_version(version: str) -> Iterator[bool]:
    """Pretend the installed SDK is ``version``; yields what the check decided."""
    original = _otel_sdk.sdk_version
    _otel_sdk.sdk_version = lambda: version
    try:
        yield _otel_sdk.recheck()
    finally:
        _otel_sdk.sdk_version = original
        _otel_sdk.recheck()
        _runtime.reset()


def test_the_installed_sdk_is_verified_and_its_internals_are_used() -> None:
    assert _otel_sdk.version_verified(_otel_sdk.sdk_version())
    assert _otel_sdk.internals_usable()
    provider = TracerProvider()
    assert SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True).fast


@pytest.mark.parametrize(("version", "verified"), [
    ("1.26.0", False), ("1.27.0", True), ("1.30.1", True), ("1.45.2", True),
    ("1.46.0", False), ("1.46.0.dev0", False), ("2.0.0", False), ("1.27.0rc1", True),
])
def test_the_version_range_decides(version: str, verified: bool) -> None:
    assert _otel_sdk.version_verified(version) is verified
    with _sdk_version(version) as usable:
        assert usable is verified  # (the installed SDK passes the structural check)
        assert _otel_sdk.internals_usable() is verified
        provider = TracerProvider()
        assert SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True).fast is verified


def test_the_fallback_is_logged_once_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="flowtel"), _sdk_version("9.0.0"):
        provider = TracerProvider()
        for _ in range(3):
            SpanStarter(provider, provider.get_tracer("flowtel"), always_sample=True)
    records = [r for r in caplog.records if "internals not used" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    assert "9.0.0" in records[0].getMessage()


def test_a_failed_structural_check_means_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_otel_sdk, "_structure_problem", lambda: "the span layout differs")
    try:
        assert not _otel_sdk.recheck()
    finally:
        monkeypatch.undo()
        _otel_sdk.recheck()
    assert _otel_sdk.internals_usable()


# -- the same traces on both paths --------------------------------------------------------------
@flowtel.trace(span_type="TOOL")
def _lookup(city: str, *, units: str = "metric") -> dict[str, Any]:
    span = flowtel.get_current_active_span()
    if span is not None:
        span.set_attribute("city.len", len(city))
    return {"city": city, "temp": 21, "units": units}


@flowtel.trace
def _fail(reason: str) -> None:
    raise ValueError(reason)


@flowtel.trace
def _count(n: int) -> Iterator[int]:
    yield from range(n)


@flowtel.trace(name="agent", attributes={"team": "x"})
def _agent(question: str) -> str:
    weather = _lookup(question, units="imperial")
    try:
        _fail("no tool")
    except ValueError:
        pass
    total = sum(_count(3))
    with flowtel.start_span("block", span_type="CHAIN") as span:
        span.set_inputs({"weather": weather})
        span.add_event(flowtel.SpanEvent("note", timestamp=1_700_000_000_500_000_000, attributes={"k": 1, "v": [1, 2]}))
        otel_trace.get_current_span().set_attribute("raw.otel", "set through the OTel API")
        span.set_outputs(["done", total])
    return f"{question}: {weather['temp']}"


def _workload() -> None:
    _agent("Paris")
    _lookup("Oslo")
    try:
        _fail("top-level")
    except ValueError:
        pass
    with flowtel.start_span("manual") as span:
        span.set_attributes({"a": 1, "b": {"nested": True}})
        span.set_status("OK")


def _recorded(processors: list[Callable[[Any], Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    exporter = InMemoryExporter()
    _runtime.set_destinations([Destination(exporter=exporter)])
    try:
        with _deterministic(), flowtel.tracing.configure(span_processors=processors):
            _workload()
            runtime = _runtime.peek_runtime()
            assert runtime is not None and runtime.flush(10.0)
            assert runtime.starter is not None
            fast = runtime.starter.fast
        traces = exporter.traces
        return [t.to_dict() for t in traces], [fast, [s._span for t in traces for s in t.data.spans]]
    finally:
        _runtime.set_destinations(None)


@pytest.mark.parametrize("with_processor", [False, True])
def test_the_public_api_fallback_records_the_same_traces(with_processor: bool) -> None:
    seen: list[str] = []
    processors = [lambda span: seen.append(span.name)] if with_processor else []
    direct, (direct_fast, direct_spans) = _recorded(processors)
    with _sdk_version("1.0.0"):
        public, (public_fast, public_spans) = _recorded(processors)
    assert direct_fast and not public_fast  # each path was really taken
    # The direct path delivers the ended SDK spans themselves, the public one the SDK's snapshots.
    assert not any(type(s) is ReadableSpan for s in direct_spans)
    assert all(type(s) is ReadableSpan for s in public_spans)
    assert len(direct) == 4
    assert public == direct
    if with_processor:
        assert seen[: len(seen) // 2] == seen[len(seen) // 2:] and "agent" in seen


def test_fallback_spans_are_written_only_through_the_public_api(flowtel_traces: Any) -> None:
    with _sdk_version("1.0.0"):
        with flowtel.start_span("s") as span:
            assert isinstance(span, flowtel.LiveSpan)
            assert span._attrs is None and not span._direct
            span.set_attribute("k", "v")
        trace = flowtel_traces.last
    assert trace.data.spans[0].attributes["k"] == "v"
