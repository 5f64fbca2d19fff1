from __future__ import annotations

import threading
from collections.abc import Sequence

from flowtel.delivery._exporter import ExportResult, TraceExporter
from flowtel.entities import Trace


class InMemoryExporter(TraceExporter):
    """Keeps delivered traces in a list (tests, notebooks). Bounded: oldest dropped past ``max_traces``."""

    name = "memory"

    def __init__(self, max_traces: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._traces: list[Trace] = []
        self._max = max_traces
        self.evicted = 0

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        with self._lock:
            self._traces.extend(traces)
            overflow = len(self._traces) - self._max
            if overflow > 0:
                del self._traces[:overflow]
                self.evicted += overflow
        return ExportResult()

    @property
    def traces(self) -> list[Trace]:
        with self._lock:
            return list(self._traces)

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
