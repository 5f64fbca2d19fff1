"""Calls that choose where traces go: :func:`set_tracking_uri` and :func:`set_experiment`.

They sit above the runtime (they rebuild it or ask its store), so that the tracking URI and the
experiment state below stay free of it.
"""

from __future__ import annotations

from typing import Any

from flowtel._exceptions import InvalidParameterError
from flowtel.entities import Experiment
from flowtel.tracing import _experiments, _runtime, _tracking

__all__ = ["set_experiment", "set_tracking_uri"]


def set_tracking_uri(uri: str | None) -> None:
    """Send traces to an MLflow tracking server (``http(s)://host:port``); None or "" for the
    embedded local store. Raises ConfigError for a URI flowtel cannot serve."""
    validated = _tracking.validate_tracking_uri(uri or "")
    changed = (validated or "") != (_tracking.current_or_none() or "")
    _tracking.override(validated or "")
    if changed:
        _experiments.on_tracking_uri_change()
    _runtime.reset()


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None,
                   trace_location: Any = None) -> Experiment:
    """Make an experiment the destination of traces started from now on.

    By name, the experiment is created when it does not exist. Blocks on the tracking store
    (an HTTP round trip or two for an MLflow server). Thread-safe; the choice is per process and
    is cleared when :func:`flowtel.set_tracking_uri` changes the destination.

    Args:
        experiment_name: Name of the experiment (created when missing).
        experiment_id: Id of an existing experiment.
        trace_location: MLflow's Databricks Unity Catalog trace location; not supported
            (flowtel writes to MLflow servers, OTLP and its embedded store).

    Returns:
        The active :class:`Experiment`.

    Raises:
        InvalidParameterError: neither or both arguments given, or the experiment is deleted.
        FlowtelException: no experiment with that id, or the store cannot be reached.
    """
    if trace_location is not None:
        raise InvalidParameterError(
            "set_experiment(trace_location=...) routes traces to Databricks Unity Catalog tables, which "
            "flowtel does not write to; use an MLflow server, OTLP or the embedded store."
        )
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidParameterError("Must specify exactly one of: `experiment_id` or `experiment_name`.")
    registry = _experiments.registry_for(_runtime.get_runtime().store)
    if experiment_name is not None:
        experiment = _experiments.get_or_create(registry, str(experiment_name))
    else:
        experiment = _experiments.get_by_id(registry, str(experiment_id))
    _experiments.check_active(experiment)
    _experiments.activate(registry, experiment)
    return experiment
