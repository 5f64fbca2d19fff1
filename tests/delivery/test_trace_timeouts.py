"""Traces that never finish are closed as ERROR after the trace timeout and delivered."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

import flowtel
from flowtel.exporters import ExportResult, InMemoryExporter
from flowtel.tracing import _clock, _runtime
from flowtel.tracing._timeouts import resolve_timeout
from tests.delivery._helpers import route_to


class WaitingExporter(InMemoryExporter):
    """In-memory exporter whose tests can wait (on a condition) for traces to arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._arrived = threading.Condition()

    def export(self, traces: Sequence[flowtel.Trace]) -> ExportResult:
        result = super().export(traces)
        with self._arrived:
            self._arrived.notify_all()
        return result

    def wait_for(self, n: int, timeout: float = 10.0) -> list[flowtel.Trace]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.traces) >= n, timeout), f"{len(self.traces)} of {n}"
        return self.traces


@pytest.fixture
def exporter() -> WaitingExporter:
    return WaitingExporter()


def _exception_events(span: flowtel.Span) -> list[dict[str, object]]:
    return [e.attributes for e in span.events if e.name == "exception"]


def test_a_trace_that_never_finishes_is_closed_as_error_and_delivered(
    exporter: WaitingExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWTEL_TRACE_TIMEOUT_SECONDS", "0.2")
    route_to(exporter)
    root = flowtel.start_span_no_context("agent", inputs={"q": "weather?"})
    done = flowtel.start_span_no_context("plan", parent_span=root)
    done.end(outputs="call the tool")
    stuck = flowtel.start_span_no_context("tool", parent_span=root)  # never ends

    (trace,) = exporter.wait_for(1)

    assert trace.info.state == flowtel.TraceState.ERROR
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"agent", "plan", "tool"}
    assert spans["plan"].status.status_code == flowtel.SpanStatusCode.OK
    for name in ("agent", "tool"):
        assert spans[name].status.status_code == flowtel.SpanStatusCode.ERROR
        (event,) = _exception_events(spans[name])
        assert event["exception.type"] == "flowtel.TraceTimeoutError"
        assert "FLOWTEL_TRACE_TIMEOUT_SECONDS" in str(event["exception.message"])
        assert "'agent', 'tool'" in str(event["exception.message"])
    assert spans["agent"].inputs == {"q": "weather?"}  # what was recorded is kept
    stats = flowtel.get_delivery_stats()
    assert (stats["timed_out_traces"], stats["open_traces"]) == (1, 0)

    # The user's code finishes late: nothing is sent twice, new spans there are counted, not sent.
    stuck.end()
    late = flowtel.start_span_no_context("late-step", parent_span=root)
    late.end()
    root.end()
    assert flowtel.flush(10)
    assert len(exporter.traces) == 1
    assert flowtel.get_delivery_stats()["late_spans"] == 1


def test_the_check_uses_the_trace_clock(exporter: WaitingExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(_clock, "monotonic", lambda: now[0])
    route_to(exporter)
    timeouts = _runtime.get_runtime().timeouts
    assert timeouts is not None and timeouts.timeout == 3600.0
    with flowtel.start_span("finished"):
        pass
    flowtel.start_span_no_context("open")

    now[0] += 3599.0
    assert timeouts.check() == 0
    now[0] += 2.0
    assert timeouts.check() == 1
    assert [t.info.state for t in exporter.wait_for(2)] == [flowtel.TraceState.OK, flowtel.TraceState.ERROR]


@pytest.fixture
def clean_timeout_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv("FLOWTEL_TRACE_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACE_TIMEOUT_SECONDS", raising=False)
    yield monkeypatch


def test_mlflow_timeout_variable_is_honoured(clean_timeout_env: pytest.MonkeyPatch) -> None:
    assert resolve_timeout() == 3600.0
    clean_timeout_env.setenv("MLFLOW_TRACE_TIMEOUT_SECONDS", "30")
    assert resolve_timeout() == 30.0
    clean_timeout_env.setenv("FLOWTEL_TRACE_TIMEOUT_SECONDS", "5")
    assert resolve_timeout() == 5.0
