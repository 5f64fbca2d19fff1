"""OTLP (gRPC or HTTP/protobuf): the exporter, its settings, span encoding and conventions, metrics."""

from __future__ import annotations

from flowtel.exporters.otlp._exporter import OtlpExporter, create_otlp_destination
from flowtel.exporters.otlp._metrics import OtlpMetricsExporter, create_otlp_metrics_destination

__all__ = ["OtlpExporter", "OtlpMetricsExporter", "create_otlp_destination", "create_otlp_metrics_destination"]
