"""pytest plugin: capture traces in memory, with deterministic ids and clock.

Enable it with ``-p flowtel.testing`` (or it is auto-loaded through flowtel's ``pytest11`` entry
point when flowtel is installed), then use the ``flowtel_traces`` fixture::

    def test_agent(flowtel_traces):
        agent("hi")
        [trace] = flowtel_traces.traces
        assert trace.data.spans[0].name == "agent"

Span and trace ids count up from 1 and the clock starts at 2023-11-14T22:13:20Z and moves
1 ms per reading, so whole traces can be compared to stored expectations.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowtel.delivery._destination import Destination
from flowtel.entities import Trace
from flowtel.exporters import InMemoryExporter
from flowtel.tracing import _deterministic, _runtime

__all__ = ["TraceCapture", "flowtel_traces"]


class TraceCapture:
    """Traces finished while the fixture is active, oldest first."""

    def __init__(self, exporter: InMemoryExporter) -> None:
        self.exporter = exporter

    @property
    def traces(self) -> list[Trace]:
        """Every finished trace (delivery is flushed first, so nothing is in flight)."""
        runtime = _runtime.peek_runtime()
        if runtime is not None and not runtime.flush(10.0):
            raise AssertionError("flowtel: traces still in flight after 10 s")
        return self.exporter.traces

    def get(self, trace_id: str) -> Trace:
        for trace in self.traces:
            if trace.info.trace_id == trace_id:
                return trace
        raise KeyError(f"No captured trace with id {trace_id!r}.")

    @property
    def last(self) -> Trace:
        traces = self.traces
        if not traces:
            raise AssertionError("No trace was captured.")
        return traces[-1]

    def clear(self) -> None:
        self.flush()
        self.exporter.clear()

    def flush(self) -> None:
        runtime = _runtime.peek_runtime()
        if runtime is not None:
            runtime.flush(10.0)


@pytest.fixture
def flowtel_traces() -> Iterator[TraceCapture]:
    """Route traces to memory with deterministic ids and clock for the duration of a test."""
    exporter = InMemoryExporter()
    _runtime.set_destinations([Destination(exporter=exporter)])
    with _deterministic():
        try:
            yield TraceCapture(exporter)
        finally:
            _runtime.set_destinations(None)
