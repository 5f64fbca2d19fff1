"""The embedded local store: a SQLite file with MLflow's filter grammar, and its experiments."""

from __future__ import annotations

from flowtel.exporters.local._experiments import (
    LocalExperimentRegistry,
    experiment_registry,
)
from flowtel.exporters.local._exporter import (
    LocalStoreExporter,
    LocalTraceStore,
    create_local_destination,
)

__all__ = [
    "LocalExperimentRegistry",
    "LocalStoreExporter",
    "LocalTraceStore",
    "create_local_destination",
    "experiment_registry",
]
