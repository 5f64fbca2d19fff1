"""Destinations for finished traces, each behind its own delivery pipeline."""

from __future__ import annotations

from flowtel.exporters._base import ExportFailure, ExportResult, TraceExporter
from flowtel.exporters._console import ConsoleExporter
from flowtel.exporters._local import LocalStoreExporter
from flowtel.exporters._memory import InMemoryExporter

__all__ = [
    "ConsoleExporter",
    "ExportFailure",
    "ExportResult",
    "InMemoryExporter",
    "LocalStoreExporter",
    "TraceExporter",
]
