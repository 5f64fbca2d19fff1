"""Destinations for finished traces, each behind its own delivery pipeline."""

from __future__ import annotations

from flowtel.exporters._base import ExportFailure, ExportResult, TraceExporter
from flowtel.exporters._console import ConsoleExporter
from flowtel.exporters._local import LocalStoreExporter
from flowtel.exporters._memory import InMemoryExporter
from flowtel.exporters._mlflow import MlflowExporter
from flowtel.exporters._otel_bridge import ApplicationSpanCapture, MlflowSpanExporter
from flowtel.exporters._otlp import OtlpExporter

__all__ = [
    "ApplicationSpanCapture",
    "ConsoleExporter",
    "ExportFailure",
    "ExportResult",
    "InMemoryExporter",
    "LocalStoreExporter",
    "MlflowExporter",
    "MlflowSpanExporter",
    "OtlpExporter",
    "TraceExporter",
]
