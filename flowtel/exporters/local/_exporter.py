"""The embedded local store as a destination: an exporter writing into a SQLite file, and the
read side serving get_trace / search_traces / tags / assessments from it."""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowtel._attachments import attachments_of
from flowtel._exceptions import FlowtelException
from flowtel.delivery import Destination
from flowtel.delivery import _lifecycle as lifecycle
from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.delivery._store import TraceStore
from flowtel.entities import Trace

# Imported here, when the destination is created, not lazily on a worker: a fork in the middle
# of that import would leave the child a half-initialised module.
from flowtel.exporters.local._store import InvalidTraceError, SqliteTraceStore

if TYPE_CHECKING:
    from flowtel.entities import Assessment

# Every call into SQLite runs inside this gate: a fork waits until no thread is inside SQLite,
# whose own mutexes a child would otherwise inherit locked (and hang on at its first write).
_SQLITE_GATE = lifecycle.ForkGate()
_STORES: weakref.WeakSet[LocalTraceStore] = weakref.WeakSet()
# Connections inherited through fork are never used, closed or garbage collected in the child:
# closing would checkpoint or unlink the parent's WAL, and may wait on a mutex held at fork time.
_INHERITED: list[object] = []


def create_local_destination(path: str | os.PathLike[str]) -> Destination:
    store = LocalTraceStore(path)
    return Destination(exporter=LocalStoreExporter(store), store=store)


class LocalTraceStore(TraceStore):
    """Reads and modifies traces in the embedded SQLite store. Opens the file on first use.

    Thread-safe; several processes may use the same file at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db: SqliteTraceStore | None = None
        self._lock = threading.Lock()
        _STORES.add(self)

    def _open(self) -> SqliteTraceStore:
        if self._db is None:
            with self._lock:
                if self._db is None:
                    self._db = SqliteTraceStore(self.path)
        return self._db

    def write(self, traces: Sequence[Trace]) -> None:
        rows = [t.to_dict() for t in traces]
        with _SQLITE_GATE.section():
            db = self._open()
            db.write_traces(rows)
            for trace in traces:
                attachments = attachments_of(trace)
                if attachments:
                    db.write_attachments(trace.info.trace_id, [
                        (a.attachment_id, a.content_type, a.data) for a in attachments.values()
                    ])

    def get_attachment(self, trace_id: str, attachment_id: str) -> tuple[str, bytes] | None:
        """``(content_type, bytes)`` of an attachment of a stored trace (its ``mlflow-attachment://``
        reference names the id), or None."""
        result: tuple[str, bytes] | None = self._call(lambda db: db.get_attachment(trace_id, attachment_id))
        return result

    def _after_fork_in_child(self) -> None:
        if self._db is not None:
            _INHERITED.append(self._db)
        self._db = None
        self._lock = threading.Lock()

    def get_trace(self, trace_id: str) -> Trace | None:
        data = self._call(lambda db: db.get_trace(trace_id))
        return Trace.from_dict(data) if data is not None else None

    def search_traces(self, *, experiment_ids: list[str] | None, filter_string: str | None,
                      order_by: list[str] | None, max_results: int, page_token: str | None,
                      include_spans: bool) -> tuple[list[Trace], str | None]:
        dicts, token = self._call(
            lambda db: db.search_traces(experiment_ids, filter_string, order_by, max_results,
                                        page_token, include_spans)
        )
        return [Trace.from_dict(d) for d in dicts], token

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        self._call(lambda db: db.set_trace_tag(trace_id, key, value))

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        self._call(lambda db: db.delete_trace_tag(trace_id, key))

    def create_assessment(self, assessment: Assessment) -> Assessment:
        from flowtel.entities import Assessment as AssessmentCls

        created = self._call(lambda db: db.create_assessment(assessment.to_dictionary()))
        return AssessmentCls.from_dictionary(created)

    def get_assessment(self, trace_id: str, assessment_id: str) -> Assessment:
        from flowtel.entities import Assessment as AssessmentCls

        return AssessmentCls.from_dictionary(self._call(lambda db: db.get_assessment(trace_id, assessment_id)))

    def update_assessment(self, trace_id: str, assessment_id: str, changes: dict[str, Any]) -> Assessment:
        from flowtel.entities import Assessment as AssessmentCls

        updated = self._call(lambda db: db.update_assessment(trace_id, assessment_id, changes))
        return AssessmentCls.from_dictionary(updated)

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        self._call(lambda db: db.delete_assessment(trace_id, assessment_id))

    def delete_traces(self, experiment_id: str, trace_ids: list[str] | None = None,
                      max_timestamp_millis: int | None = None) -> int:
        return int(self._call(lambda db: db.delete_traces(experiment_id, trace_ids, max_timestamp_millis)) or 0)

    def close(self) -> None:
        if self._db is not None:
            with _SQLITE_GATE.section():
                self._db.close()
            self._db = None

    def _call(self, fn: Any) -> Any:
        try:
            with _SQLITE_GATE.section():
                return fn(self._open())
        except FlowtelException:
            raise  # store and filter errors already carry MLflow-style codes and clear messages
        except sqlite3.Error as exc:
            raise FlowtelException(f"Embedded store {self.path!r} failed: {exc}") from None


class LocalStoreExporter(TraceExporter):
    """Writes traces into the embedded store (a SQLite file), one transaction per batch.

    Args:
        path: The store file (default: ``FLOWTEL_STORE_PATH``, ``./flowtel-traces.db``), or an
            open :class:`LocalTraceStore`.
    """

    name = "local"

    def __init__(self, path: str | os.PathLike[str] | LocalTraceStore | None = None) -> None:
        if isinstance(path, LocalTraceStore):
            self.store = path
        else:
            from flowtel import _config

            self.store = LocalTraceStore(path if path is not None else _config.FLOWTEL_STORE_PATH.get())

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        try:
            self.store.write(traces)
        except InvalidTraceError as exc:
            # The valid traces of the batch are stored; the invalid ones will never be.
            return ExportResult({
                trace_id: ExportFailure("invalid_trace", retryable=False, message=reason)
                for trace_id, reason in exc.failures.items()
            })
        except (OverflowError, ValueError, TypeError, UnicodeError, sqlite3.InterfaceError,
                sqlite3.IntegrityError, sqlite3.DataError, RecursionError) as exc:
            # Data no retry will fix (a timestamp past 2262 overflows INTEGER, a lone surrogate
            # cannot be encoded): refused for good, so the pipeline bisects the batch and stores
            # every trace but the poisoned one.
            return ExportResult.all_failed(
                traces, ExportFailure("invalid_trace", retryable=False, message=f"{type(exc).__name__}: {exc}")
            )
        except Exception as exc:  # noqa: BLE001 - disk full, locked, permissions: reported per trace
            return ExportResult.all_failed(
                traces, ExportFailure("local_store_error", retryable=True, message=str(exc))
            )
        return ExportResult()

    def shutdown(self) -> None:
        self.store.close()


def _forget_inherited_stores() -> None:
    for store in list(_STORES):
        store._after_fork_in_child()


lifecycle.on_fork_child(_forget_inherited_stores)
