"""The exporter contract: a destination receives finished traces in batches."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowtel.entities import Trace


@dataclass(frozen=True)
class ExportFailure:
    """Why a trace was not delivered.

    Args:
        reason: Short machine-readable cause, e.g. ``"connection"``, ``"timeout"``, ``"http_503"``.
        retryable: Whether sending it again later may succeed.
        retry_after: Seconds the destination asked us to wait, if it said.
        message: Human-readable detail (never contains credentials).
    """

    reason: str
    retryable: bool
    retry_after: float | None = None
    message: str = ""


@dataclass
class ExportResult:
    """Outcome of one export call. ``failures`` maps trace id to why; empty means delivered."""

    failures: dict[str, ExportFailure] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @classmethod
    def all_failed(cls, traces: Sequence[Trace], failure: ExportFailure) -> ExportResult:
        return cls({t.info.trace_id: failure for t in traces})


class TraceExporter(abc.ABC):
    """A destination for finished traces.

    ``export`` is called from a delivery worker thread, never from the user's thread. It must
    not raise for delivery problems: it reports them per trace in the result.
    """

    name: str = "exporter"
    destination_key: str | None = None
    """Stable identity of where traces go, e.g. ``"mlflow:https://host:5000"``; never contains
    credentials. When set, the delivery pipeline keeps traces this destination cannot take yet
    in a durable spool on disk, keyed by this identity, and any process configured with the same
    destination replays them. ``None`` (in-memory, local store, console): no spool."""

    @abc.abstractmethod
    def export(self, traces: Sequence[Trace]) -> ExportResult:
        """Deliver ``traces``; return which ones failed and why."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def after_fork_in_child(self) -> None:
        """Called in a forked child, on its delivery worker, before the child's first export.

        Drop connections, sessions, channels and thread pools inherited from the parent: the
        parent keeps using them, and two processes writing to one socket corrupt each other's
        requests. Build them anew on the next export. Default: nothing to drop.
        """
        return

    def shutdown(self) -> None:
        return None
