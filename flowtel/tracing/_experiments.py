"""The active experiment: ``set_experiment``, ``MLFLOW_EXPERIMENT_NAME`` / ``MLFLOW_EXPERIMENT_ID``.

Precedence for a new trace (as in MLflow): an explicit ``trace_destination`` / ``experiment_id``
on the span, then :func:`set_experiment`, then ``MLFLOW_EXPERIMENT_NAME``, then
``MLFLOW_EXPERIMENT_ID``, then the default experiment ``"0"``.

:func:`set_experiment` talks to the store at once (it is configuration: a missing or deleted
experiment is an error right there). The environment variables are resolved lazily, on the
delivery worker (through ``Runtime.experiment_id_resolver``), never on the traced call; a name
is looked up (and created when missing) once per store and cached. When the server cannot be
reached the trace carries a placeholder id that the MLflow exporter resolves before sending, so
such a trace is retried, not misfiled.

Experiments live in whichever store the tracking URI selects: the MLflow server's experiments,
or, for the embedded store, a small SQLite table next to the store file
(``<FLOWTEL_STORE_PATH>.experiments``) with the default experiment ``"0"`` named ``Default``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flowtel.tracing import _config
from flowtel.tracing._exceptions import FlowtelException, InvalidParameterError

if TYPE_CHECKING:
    from flowtel.tracing._processor import TraceRecord
    from flowtel.tracing._runtime import Runtime

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "UNRESOLVED_EXPERIMENT_PREFIX",
    "Experiment",
    "ExperimentRegistry",
    "resolve_default_experiment_id",
    "resolve_experiment_name",
    "set_experiment",
]

_logger = logging.getLogger("flowtel")
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
UNRESOLVED_EXPERIMENT_PREFIX = "flowtel-unresolved-experiment:"
_RETRY_LOOKUP_AFTER_S = 5.0


@dataclass(frozen=True)
class Experiment:
    """An experiment, as returned by :func:`flowtel.set_experiment`.

    Args:
        experiment_id: The experiment id (a string).
        name: The experiment name.
        artifact_location: Where the server stores its artifacts, if it said.
        lifecycle_stage: ``"active"`` or ``"deleted"``.
        tags: Experiment tags.
        creation_time: Epoch milliseconds, if known.
        last_update_time: Epoch milliseconds, if known.
    """

    experiment_id: str
    name: str
    artifact_location: str | None = None
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@runtime_checkable
class ExperimentRegistry(Protocol):
    """Where experiments are looked up and created (an MLflow server, or the local table)."""

    registry_key: str

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def create_experiment(self, name: str) -> str: ...


# -- public API ----------------------------------------------------------------------------------
def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make an experiment the destination of traces started from now on.

    By name, the experiment is created when it does not exist. Blocks on the tracking store
    (an HTTP round trip or two for an MLflow server). Thread-safe; the choice is per process and
    is cleared when :func:`flowtel.set_tracking_uri` changes the destination.

    Args:
        experiment_name: Name of the experiment (created when missing).
        experiment_id: Id of an existing experiment.

    Returns:
        The active :class:`Experiment`.

    Raises:
        InvalidParameterError: neither or both arguments given, or the experiment is deleted.
        FlowtelException: no experiment with that id, or the store cannot be reached.
    """
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidParameterError("Must specify exactly one of: `experiment_id` or `experiment_name`.")
    registry = current_registry()
    if experiment_name is not None:
        experiment = _get_or_create(registry, str(experiment_name))
    else:
        experiment = _get_by_id(registry, str(experiment_id))
    _check_active(experiment)
    with _lock:
        global _active
        _active = (registry.registry_key, experiment.experiment_id)
    return experiment


def get_active_experiment_id() -> str | None:
    """The experiment chosen with :func:`set_experiment`, if any (no I/O)."""
    active = _active
    return active[1] if active is not None else None


def on_root_start(record: TraceRecord) -> None:
    """Pin the set_experiment() choice on a new trace (user's thread: a field copy, no I/O)."""
    active = _active
    if active is not None and record.experiment_id is None:
        record.experiment_id = active[1]


def on_tracking_uri_change() -> None:
    """Experiment ids belong to a store: a new tracking URI forgets the set_experiment() choice."""
    if reset():
        _logger.warning(
            "set_tracking_uri() changed the destination; the experiment chosen with "
            "set_experiment() belongs to the previous one and is no longer active. Call "
            "flowtel.set_experiment() again after set_tracking_uri()."
        )


def reset() -> bool:
    """Forget the set_experiment() choice and the name cache; True if a choice was active."""
    global _active
    with _lock:
        had, _active = _active is not None, None
        _name_cache.clear()
        _last_failure.clear()
    return had


def resolve_default_experiment_id(runtime: Runtime | None = None) -> str:
    """The experiment of a trace that did not name one. Runs on the delivery worker.

    May look ``MLFLOW_EXPERIMENT_NAME`` up on ``runtime``'s store (the one the trace is
    delivered to; once, then cached). Never raises: when the store cannot answer, returns a
    placeholder the MLflow exporter resolves later.
    """
    active = _active
    if active is not None:
        return active[1]
    name = _config.MLFLOW_EXPERIMENT_NAME.get()
    if name:
        return _resolve_env_name(name, runtime)
    return _config.MLFLOW_EXPERIMENT_ID.get() or DEFAULT_EXPERIMENT_ID


def resolve_experiment_name(registry: ExperimentRegistry, name: str) -> str:
    """Id of the experiment called ``name`` on ``registry`` (created when missing), cached.

    Raises:
        FlowtelException: the store cannot be reached, or the experiment is deleted.
    """
    key = (registry.registry_key, name)
    cached = _name_cache.get(key)
    if cached is not None:
        return cached
    experiment = _get_or_create(registry, name)
    _check_active(experiment)
    _name_cache[key] = experiment.experiment_id
    return experiment.experiment_id


# -- internals -----------------------------------------------------------------------------------
_lock = threading.Lock()
_active: tuple[str, str] | None = None
_name_cache: dict[tuple[str, str], str] = {}
_last_failure: dict[str, float] = {}


def _resolve_env_name(name: str, runtime: Runtime | None) -> str:
    unresolved = UNRESOLVED_EXPERIMENT_PREFIX + name
    if time.monotonic() - _last_failure.get(name, -1e9) < _RETRY_LOOKUP_AFTER_S:
        return unresolved  # the store just failed: do not stall every trace on it
    try:
        return resolve_experiment_name(current_registry(runtime), name)
    except FlowtelException as exc:
        _last_failure[name] = time.monotonic()
        _logger.warning(
            "MLFLOW_EXPERIMENT_NAME=%r could not be resolved yet (%s); traces wait for it.",
            name, exc.message,
        )
        return unresolved


def _get_or_create(registry: ExperimentRegistry, name: str) -> Experiment:
    experiment = registry.get_experiment_by_name(name)
    if experiment is not None:
        return experiment
    _logger.info("Experiment with name '%s' does not exist. Creating a new experiment.", name)
    experiment_id = registry.create_experiment(name)
    return registry.get_experiment(experiment_id) or Experiment(experiment_id=experiment_id, name=name)


def _get_by_id(registry: ExperimentRegistry, experiment_id: str) -> Experiment:
    experiment = registry.get_experiment(experiment_id)
    if experiment is None:
        raise FlowtelException(
            f"Experiment with ID '{experiment_id}' does not exist.", "RESOURCE_DOES_NOT_EXIST", 404
        )
    return experiment


def _check_active(experiment: Experiment) -> None:
    if experiment.lifecycle_stage != "active":
        raise InvalidParameterError(
            f"Cannot set a deleted experiment {experiment.name!r} as the active experiment. "
            "You can restore the experiment, or permanently delete the experiment to create a new one."
        )


def current_registry(runtime: Runtime | None = None) -> ExperimentRegistry:
    """The experiment registry of ``runtime``'s destination (default: the current runtime)."""
    from flowtel.tracing import _runtime

    store: Any = (runtime or _runtime.get_runtime()).store
    if isinstance(store, ExperimentRegistry):
        return store
    path = getattr(store, "path", None)
    if path is None:
        path = _config.FLOWTEL_STORE_PATH.get()
    return _local_registry(os.fspath(path))


_local_registries: dict[str, LocalExperimentRegistry] = {}


def _local_registry(store_path: str) -> LocalExperimentRegistry:
    with _lock:
        registry = _local_registries.get(store_path)
        if registry is None:
            registry = _local_registries[store_path] = LocalExperimentRegistry(store_path + ".experiments")
        return registry


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
