"""Destinations: an exporter, the delivery pipeline in front of it, and its read side.

The built-in destinations are found through :data:`DESTINATION_FACTORIES`, a registry of import
strings, so that nothing below ``flowtel.exporters`` imports an exporter: adding a destination is
its package under ``flowtel/exporters/`` plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowtel.delivery._exporter import TraceExporter
    from flowtel.delivery._pipeline import DeliveryPipeline
    from flowtel.delivery._store import TraceStore

__all__ = ["DESTINATION_FACTORIES", "LOCAL_EXPERIMENTS", "Destination", "create_destination", "destination_for", "with_pipelines"]

# kind -> "module:factory"; the factory takes keyword options and returns a Destination.
DESTINATION_FACTORIES = {
    "local": "flowtel.exporters.local:create_local_destination",
    "mlflow": "flowtel.exporters.mlflow:create_mlflow_destination",
    "otlp": "flowtel.exporters.otlp:create_otlp_destination",
    "otlp_metrics": "flowtel.exporters.otlp:create_otlp_metrics_destination",
}
# path of an embedded store -> its experiment table (also used by destinations that keep none)
LOCAL_EXPERIMENTS = "flowtel.exporters.local:experiment_registry"


@dataclass
class Destination:
    """An exporter, the pipeline in front of it, and its read side if it has one."""

    exporter: TraceExporter
    store: TraceStore | None = None
    pipeline: DeliveryPipeline | None = None


def create_destination(kind: str, **options: Any) -> Destination:
    """A built-in destination by kind (``"local"``, ``"mlflow"``, ``"otlp"``)."""
    module_name, _, attr = DESTINATION_FACTORIES[kind].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    result: Destination = factory(**options)
    return result


def destination_for(exporter: TraceExporter) -> Destination:
    """Wrap a user-supplied exporter; its read side (``exporter.store``) is used if it has one."""
    return Destination(exporter=exporter, store=getattr(exporter, "store", None))


def with_pipelines(destinations: list[Destination]) -> list[Destination]:
    """Give every destination without one a delivery pipeline configured from the environment."""
    from flowtel.delivery._pipeline import DeliveryOptions, DeliveryPipeline

    options = DeliveryOptions.from_env()
    for dest in destinations:
        if dest.pipeline is None:
            dest.pipeline = DeliveryPipeline(dest.exporter, options)
    return destinations
