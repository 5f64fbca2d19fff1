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

import importlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from flowtel import _config
from flowtel._exceptions import ConfigError, FlowtelException, InvalidParameterError
from flowtel.delivery._destination import LOCAL_EXPERIMENTS
from flowtel.delivery._store import ExperimentRegistry
from flowtel.entities import Experiment

if TYPE_CHECKING:
    from flowtel.tracing._processor import TraceRecord

__all__ = [
    "DEFAULT_EXPERIMENT_ID",
    "UNRESOLVED_EXPERIMENT_PREFIX",
    "Experiment",
    "ExperimentRegistry",
    "registry_for",
    "resolve_default_experiment_id",
    "resolve_experiment_name",
]

_logger = logging.getLogger("flowtel")
DEFAULT_EXPERIMENT_ID = "0"
UNRESOLVED_EXPERIMENT_PREFIX = "flowtel-unresolved-experiment:"
_RETRY_LOOKUP_AFTER_S = 5.0


# -- state ---------------------------------------------------------------------------------------
def activate(registry: ExperimentRegistry, experiment: Experiment) -> None:
    """Make ``experiment`` (of ``registry``) the destination of traces started from now on."""
    global _active
    with _lock:
        _active = (registry.registry_key, experiment.experiment_id)


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


def resolve_default_experiment_id(store: object) -> str:
    """The experiment of a trace that did not name one. Runs on the delivery worker.

    May look ``MLFLOW_EXPERIMENT_NAME`` up on ``store`` (the one the trace is
    delivered to; once, then cached). Never raises: when the store cannot answer, returns a
    placeholder the MLflow exporter resolves later.
    """
    active = _active
    if active is not None:
        return active[1]
    name = _config.MLFLOW_EXPERIMENT_NAME.get()
    if name:
        return _resolve_env_name(name, store)
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
    experiment = get_or_create(registry, name)
    check_active(experiment)
    _name_cache[key] = experiment.experiment_id
    return experiment.experiment_id


# -- internals -----------------------------------------------------------------------------------
_lock = threading.Lock()
_active: tuple[str, str] | None = None
_name_cache: dict[tuple[str, str], str] = {}
_last_failure: dict[str, float] = {}


def _resolve_env_name(name: str, store: object) -> str:
    unresolved = UNRESOLVED_EXPERIMENT_PREFIX + name
    if time.monotonic() - _last_failure.get(name, -1e9) < _RETRY_LOOKUP_AFTER_S:
        return unresolved  # the store just failed: do not stall every trace on it
    try:
        return resolve_experiment_name(registry_for(store), name)
    except ConfigError:
        raise  # configuration, not an unreachable store: no placeholder
    except FlowtelException as exc:
        _last_failure[name] = time.monotonic()
        _logger.warning(
            "MLFLOW_EXPERIMENT_NAME=%r could not be resolved yet (%s); traces wait for it.",
            name, exc.message,
        )
        return unresolved


def get_or_create(registry: ExperimentRegistry, name: str) -> Experiment:
    experiment = registry.get_experiment_by_name(name)
    if experiment is not None:
        return experiment
    _logger.info("Experiment with name '%s' does not exist. Creating a new experiment.", name)
    experiment_id = registry.create_experiment(name)
    return registry.get_experiment(experiment_id) or Experiment(experiment_id=experiment_id, name=name)


def get_by_id(registry: ExperimentRegistry, experiment_id: str) -> Experiment:
    experiment = registry.get_experiment(experiment_id)
    if experiment is None:
        raise FlowtelException(
            f"Experiment with ID '{experiment_id}' does not exist.", "RESOURCE_DOES_NOT_EXIST", 404
        )
    return experiment


def check_active(experiment: Experiment) -> None:
    if experiment.lifecycle_stage != "active":
        raise InvalidParameterError(
            f"Cannot set a deleted experiment {experiment.name!r} as the active experiment. "
            "You can restore the experiment, or permanently delete the experiment to create a new one."
        )


def registry_for(store: object) -> ExperimentRegistry:
    """The experiment registry of a destination's read side: the store itself when it keeps
    experiments (an MLflow server), else the embedded store's experiment table (at the store's
    path, or ``FLOWTEL_STORE_PATH`` for destinations without one)."""
    if isinstance(store, ExperimentRegistry):
        return store
    path = getattr(store, "path", None)
    if path is None:
        path = _config.FLOWTEL_STORE_PATH.get()
    module_name, _, attr = LOCAL_EXPERIMENTS.partition(":")
    registry: ExperimentRegistry = getattr(importlib.import_module(module_name), attr)(os.fspath(path))
    return registry
