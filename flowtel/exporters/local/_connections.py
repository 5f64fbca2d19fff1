"""SQLite connections and transactions for one store file.

Concurrency: WAL journal, ``busy_timeout``, one short ``BEGIN IMMEDIATE`` transaction per write
call, bounded retry on ``SQLITE_BUSY``. Connections come from a small per-file pool, one
connection per concurrent caller, so a pool is safe to share between threads; several processes
may open the same file. A connection never crosses ``fork()``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from flowtel.exporters.local._sql import SQL_FUNCTIONS
from flowtel.exporters.local._store_errors import SchemaVersionError, StoreError

__all__ = ["ConnectionPool"]

_BUSY_TIMEOUT_S = 5.0  # SQLite waits this long for a lock before reporting SQLITE_BUSY
_BUSY_RETRIES = 3  # ...and we retry the whole transaction this many times on top
_MAX_IDLE_CONNECTIONS = 4

_T = TypeVar("_T")


class ConnectionPool:
    """Connections to one SQLite file (created with mode 0600, parents 0700), in WAL mode, with
    flowtel's SQL functions registered. Thread-safe.

    Raises:
        StoreError: The file cannot be created or opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._create_file()

    def run_write(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``body`` inside ``BEGIN IMMEDIATE ... COMMIT``, retrying when the file stays locked
        longer than the busy timeout (``body`` is re-run from scratch)."""
        for attempt in range(_BUSY_RETRIES + 1):
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = body(conn)
                        conn.execute("COMMIT")
                        return result
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                        raise self._wrap(exc) from exc
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def run_read(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``body`` in one read transaction (a consistent snapshot across its queries)."""
        for attempt in range(_BUSY_RETRIES + 1):
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN")
                    try:
                        return body(conn)
                    finally:
                        if conn.in_transaction:
                            conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                        raise self._wrap(exc) from exc
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def enable_wal(self) -> None:
        """Switch the file to WAL mode (persistent in the file).

        Raises:
            StoreError: Not a SQLite database, or WAL cannot be enabled.
        """
        with self._connection() as conn:
            self._refuse_foreign_file(conn)  # before WAL: never modify a file we refuse
            self._enable_wal(conn)

    def _refuse_foreign_file(self, conn: sqlite3.Connection) -> None:
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.OperationalError:
            return  # busy: _enable_wal retries, and the schema check under BEGIN IMMEDIATE decides
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a SQLite database: {exc}") from exc
        if tables and "meta" not in tables:
            raise SchemaVersionError(
                f"{self.path} is a SQLite database but not a flowtel trace store (tables: {sorted(tables)})."
            )

    def close(self) -> None:
        """Close the idle connections; later calls raise :class:`StoreError`. Idempotent.
        Calls still running in other threads finish on their own connection."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")  # refreshes planner statistics if worthwhile
            conn.close()

    def _create_file(self) -> None:
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass  # an existing store (or another process created it first): keep its mode
        except OSError as exc:
            raise StoreError(f"Cannot create the trace store file {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable on app crash, fast commits
            for name, n_args, fn in SQL_FUNCTIONS:
                conn.create_function(name, n_args, fn, deterministic=True)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the trace store {self.path}: {exc}") from exc
        return conn

    def _check_process(self) -> None:
        # A connection must not cross fork(): drop (never close) the parent's, which could
        # otherwise checkpoint or unlink the WAL under the parent's feet.
        if os.getpid() != self._pid:
            self._lock = threading.Lock()
            self._idle = []
            self._pid = os.getpid()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self._check_process()
        with self._lock:
            if self._closed:
                raise StoreError(f"The trace store {self.path} is closed.")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # only after an error inside a with-block: never reuse it mid-txn
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._lock:
            keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS and os.getpid() == self._pid
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            waited = _BUSY_TIMEOUT_S * (_BUSY_RETRIES + 1)
            return StoreError(f"The trace store {self.path} stayed locked by other writers for ~{waited:.0f}s: {exc}")
        return StoreError(f"Trace store {self.path} failed: {exc}")

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # journal_mode is persistent in the file; switching needs a moment without other writers.
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"Cannot enable WAL mode on {self.path} (journal_mode={mode}).")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                    raise self._wrap(exc) from exc
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} is not a SQLite database: {exc}") from exc


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message
