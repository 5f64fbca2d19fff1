"""An MLflow tracking server: the exporter, its REST client, the read side and the wire encoding."""

from __future__ import annotations

from flowtel.exporters.mlflow._exporter import MlflowExporter, create_mlflow_destination
from flowtel.exporters.mlflow._span_exporter import MlflowSpanExporter

__all__ = ["MlflowExporter", "MlflowSpanExporter", "create_mlflow_destination"]
