from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

from flowtel.delivery._exporter import ExportResult, TraceExporter
from flowtel.entities import Trace


class ConsoleExporter(TraceExporter):
    """Writes each trace as one JSON line (``Trace.to_json()``) to a stream (stdout by default)."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None, pretty: bool = False) -> None:
        self._stream = stream
        self._pretty = pretty

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        stream = self._stream or sys.stdout
        for trace in traces:
            stream.write(trace.to_json(pretty=self._pretty) + "\n")
        stream.flush()
        return ExportResult()
