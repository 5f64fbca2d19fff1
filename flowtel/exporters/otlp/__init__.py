"""OTLP (gRPC or HTTP/protobuf): the exporter, its settings, span encoding and conventions."""

from __future__ import annotations

from flowtel.exporters.otlp._exporter import OtlpExporter, create_otlp_destination

__all__ = ["OtlpExporter", "create_otlp_destination"]
