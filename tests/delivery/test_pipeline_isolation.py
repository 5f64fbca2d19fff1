"""Isolating poisoned traces, with scripted exporters (no network): what the pipeline does with
each shape of failure an exporter can report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import pytest

import flowtel
from flowtel.delivery._pipeline import DeliveryOptions, DeliveryPipeline, RetryPolicy
from flowtel.exporters import (
    ExportFailure,
    ExportResult,
    InMemoryExporter,
    TraceExporter,
)
from tests.delivery._helpers import make_traces, route_to

Verdict = Callable[[Sequence[flowtel.Trace]], ExportResult]


class Item:
    """A finished trace as the pipeline receives it."""

    def __init__(self, trace: flowtel.Trace) -> None:
        self.trace_id = trace.info.trace_id
        self._trace = trace

    def trace(self) -> flowtel.Trace:
        return self._trace

    def release(self) -> None:
        return None


class ScriptedExporter(TraceExporter):
    """Answers with ``verdict``; the first call waits for ``gate`` so later traces queue up."""

    name = "scripted"

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []
        self.delivered: list[str] = []

    def export(self, traces: Sequence[flowtel.Trace]) -> ExportResult:
        if not self.calls:
            self.entered.set()
            self.gate.wait(10)
        self.calls.append(len(traces))
        result = self.verdict(traces)
        self.delivered += [t.info.trace_id for t in traces if t.info.trace_id not in result.failures]
        return result


@pytest.fixture(scope="module")
def traces() -> list[flowtel.Trace]:
    capture = InMemoryExporter()
    route_to(capture)
    make_traces(17, spans=2)
    assert flowtel.flush(10)
    return capture.traces


_pipelines: list[DeliveryPipeline] = []


@pytest.fixture(autouse=True)
def _stop_pipelines() -> Iterator[None]:
    yield
    while _pipelines:
        _pipelines.pop().shutdown(1)


def _run(exporter: ScriptedExporter, traces: list[flowtel.Trace]) -> DeliveryPipeline:
    options = DeliveryOptions(retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.002))
    pipeline = DeliveryPipeline(exporter, options)
    _pipelines.append(pipeline)
    pipeline.submit(Item(traces[0]))  # held by the gate: the rest leave as one batch
    assert exporter.entered.wait(10)
    for trace in traces[1:]:
        pipeline.submit(Item(trace))
    exporter.gate.set()
    assert pipeline.flush(10)
    return pipeline


def test_whole_batch_refusals_are_bisected_down_to_the_poisoned_traces(traces: list[flowtel.Trace]) -> None:
    poisoned = {traces[3].info.trace_id, traces[11].info.trace_id}

    def refuse_batches_with_poison(batch: Sequence[flowtel.Trace]) -> ExportResult:
        if any(t.info.trace_id in poisoned for t in batch):
            return ExportResult.all_failed(batch, ExportFailure("http_400", retryable=False))
        return ExportResult()

    exporter = ScriptedExporter(refuse_batches_with_poison)
    stats = _run(exporter, traces).stats()

    assert (stats.sent, stats.dropped) == (15, {"http_400": 2})
    assert sorted(exporter.delivered) == sorted(t.info.trace_id for t in traces if t.info.trace_id not in poisoned)
    assert len(exporter.calls) <= 1 + 4 * 4 + 1  # O(k log n) requests, not one per trace


def test_per_trace_failures_are_trusted_without_bisecting(traces: list[flowtel.Trace]) -> None:
    bad = traces[5].info.trace_id
    exporter = ScriptedExporter(
        lambda batch: ExportResult({bad: ExportFailure("too_large", retryable=False)} if any(t.info.trace_id == bad for t in batch) else {})
    )
    stats = _run(exporter, traces).stats()
    assert (stats.sent, stats.dropped, exporter.calls) == (16, {"too_large": 1}, [1, 16])


def test_a_destination_refusing_everything_is_bisected_once_not_per_batch(traces: list[flowtel.Trace]) -> None:
    exporter = ScriptedExporter(lambda batch: ExportResult.all_failed(batch, ExportFailure("http_404", retryable=False)))
    pipeline = _run(exporter, traces[:9])
    first = len(exporter.calls)
    for trace in traces[9:]:
        pipeline.submit(Item(trace))
    assert pipeline.flush(10)
    stats = pipeline.stats()
    assert (stats.sent, stats.dropped) == (0, {"http_404": 17})
    assert first == 1 + (2 * 8 - 1)  # the gate trace, then the full bisection of 8
    assert len(exporter.calls) - first <= 8  # later batches: no bisection


def test_retryable_failures_inside_a_batch_are_retried_alone(traces: list[flowtel.Trace]) -> None:
    flaky = {traces[2].info.trace_id: 1}

    def fail_once(batch: Sequence[flowtel.Trace]) -> ExportResult:
        failures = {}
        for trace in batch:
            if flaky.get(trace.info.trace_id, 0) > 0:
                flaky[trace.info.trace_id] -= 1
                failures[trace.info.trace_id] = ExportFailure("http_503", retryable=True)
        return ExportResult(failures)

    exporter = ScriptedExporter(fail_once)
    stats = _run(exporter, traces).stats()
    assert (stats.sent, stats.retried, stats.dropped, exporter.calls) == (17, 1, {}, [1, 16, 1])
