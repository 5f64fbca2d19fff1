"""Delivery: the contracts between tracing and destinations, and the machinery between them.

- :class:`TraceExporter` / :class:`ExportResult` / :class:`ExportFailure`: what a destination
  implements to receive finished traces; :class:`TraceStore`: its read side, if it has one.
- :class:`Destination` and :func:`create_destination`: an exporter with its pipeline and store,
  and the registry of built-in destinations (found by import string).
- The delivery pipeline (queue, batching, retry, bisection of poisoned batches, durable spool)
  and the process lifecycle (exit drain, fork, multiprocessing children).

``flowtel.tracing`` imports this package, never ``flowtel.exporters``.
"""

from __future__ import annotations

from flowtel.delivery._destination import (
    Destination,
    create_destination,
    destination_for,
)
from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.delivery._store import TraceStore

__all__ = [
    "Destination",
    "ExportFailure",
    "ExportResult",
    "TraceExporter",
    "TraceStore",
    "create_destination",
    "destination_for",
]
