"""Destinations for finished traces, each behind its own delivery pipeline."""

from __future__ import annotations

from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.exporters._console import ConsoleExporter
from flowtel.exporters._memory import InMemoryExporter
from flowtel.exporters.local._exporter import LocalStoreExporter
from flowtel.exporters.mlflow._exporter import MlflowExporter
from flowtel.exporters.mlflow._span_exporter import MlflowSpanExporter
from flowtel.exporters.otlp._exporter import OtlpExporter
from flowtel.exporters.otlp._metrics import OtlpMetricsExporter
from flowtel.tracing._app_spans import ApplicationSpanCapture

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
    "OtlpMetricsExporter",
    "TraceExporter",
]
