"""The queue's byte budget bounds real memory: large event values and explicit previews count."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

import flowtel
from flowtel.delivery._exporter import ExportResult, TraceExporter
from flowtel.entities import Trace
from flowtel.exporters import InMemoryExporter
from flowtel.tracing import _runtime
from tests.delivery._helpers import stats

MB = 1_000_000


class Stalled(TraceExporter):
    """A destination that takes nothing until released."""

    name = "stalled"

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        self.release.wait()
        return ExportResult()


def test_memory_is_bounded_by_the_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWTEL_MAX_QUEUED_BYTES", str(2 * MB))
    monkeypatch.setenv("FLOWTEL_SPOOL_ENABLED", "false")
    exporter = Stalled()
    _runtime.set_destinations([_runtime.Destination(exporter=exporter)])
    try:
        for i in range(20):
            with flowtel.start_span(f"stream-{i}") as span:
                span.add_event(flowtel.SpanEvent("mlflow.chunk.item", attributes={"mlflow.chunk.value": "x" * MB}))
        held = stats()
        # Each trace holds ~1 MB: at most the budget's worth waits (plus the one being exported).
        assert held["queued"] + held["in_flight"] <= 3
        assert held["queued_bytes"] <= 2 * MB
        assert held["dropped"]["queue_full"] >= 17  # counted and warned about, never silent
    finally:
        exporter.release.set()
    assert flowtel.flush(30)


def test_explicit_previews_are_truncated_like_every_other_value() -> None:
    memory = InMemoryExporter()
    _runtime.set_destinations([_runtime.Destination(exporter=memory)])

    @flowtel.trace
    def call() -> None:
        flowtel.update_current_trace(request_preview="q" * (5 * MB), response_preview="a" * (5 * MB))

    call()
    assert flowtel.flush(30)
    (trace,) = memory.traces
    assert len(trace.info.request_preview) <= 10_000
    assert len(trace.info.response_preview) <= 10_000
