"""Experiments of the embedded store: a name -> id table in a small SQLite file beside it."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from flowtel._exceptions import FlowtelException, InvalidParameterError
from flowtel.entities import Experiment

__all__ = ["LocalExperimentRegistry", "experiment_registry"]

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
_lock = threading.Lock()


def experiment_registry(store_path: str) -> LocalExperimentRegistry:
    """The experiment table of the embedded store at ``store_path`` (one object per path)."""
    with _lock:
        registry = _local_registries.get(store_path)
        if registry is None:
            registry = _local_registries[store_path] = LocalExperimentRegistry(store_path + ".experiments")
        return registry


_local_registries: dict[str, LocalExperimentRegistry] = {}


class LocalExperimentRegistry:
    """Experiments of the embedded store: a name -> id table in its own small SQLite file.

    Ids count up from 1; ``"0"`` is the default experiment ``Default``. Safe across threads and
    processes (SQLite transactions).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.registry_key = f"local:{os.path.abspath(path)}"

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        row = self._query("SELECT * FROM experiments WHERE experiment_id = ?", (str(experiment_id),))
        return _experiment_from_row(row)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return _experiment_from_row(self._query("SELECT * FROM experiments WHERE name = ?", (name,)))

    def create_experiment(self, name: str) -> str:
        if not name:
            raise InvalidParameterError("Invalid experiment name: ''.")
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT experiment_id FROM experiments WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return str(row[0])
            next_id = conn.execute(
                "SELECT COALESCE(MAX(CAST(experiment_id AS INTEGER)), 0) + 1 FROM experiments"
            ).fetchone()[0]
            conn.execute(_INSERT, (str(next_id), name, _now_ms()))
            return str(next_id)

    def _query(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._connect() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def _connect(self) -> _ClosingConnection:
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            conn.execute(_SCHEMA)
            conn.execute(_INSERT_DEFAULT, (DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, _now_ms()))
        except (sqlite3.Error, OSError) as exc:
            raise FlowtelException(f"Cannot open the experiment table {self.path}: {exc}") from None
        return _ClosingConnection(conn)


class _ClosingConnection:
    """``with`` closes the connection (sqlite3's own context manager only ends transactions)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._conn.close()


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS experiments (experiment_id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
    "lifecycle_stage TEXT NOT NULL DEFAULT 'active', creation_time INTEGER)"
)
_INSERT = "INSERT INTO experiments (experiment_id, name, creation_time) VALUES (?, ?, ?)"
_INSERT_DEFAULT = _INSERT.replace("INSERT", "INSERT OR IGNORE")


def _experiment_from_row(row: tuple[Any, ...] | None) -> Experiment | None:
    if row is None:
        return None
    experiment_id, name, stage, created = row
    return Experiment(str(experiment_id), str(name), None, str(stage), {}, created, created)


def _now_ms() -> int:
    return int(time.time() * 1000)
