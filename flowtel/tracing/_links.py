"""What a new trace is linked to, as MLflow records it: the run (``mlflow.sourceRun``), the
LoggedModel (``mlflow.modelId``) and where it is routed (``set_destination`` locations).

Read on the user's thread when a trace starts, so everything here is a dictionary or
context-variable lookup: ``mlflow`` is consulted only when the program already imported it (a
trace made inside ``mlflow.start_run()`` or after ``mlflow.set_active_model()``), never imported.
The environment variables are read once per runtime (``flowtel.tracing.reset()`` rereads them).

Precedence of the experiment, as in MLflow: an explicit ``trace_destination`` / ``experiment_id``
on the span, then :func:`set_location` (context-local first, then global), then the active
MLflow run's experiment (when ``mlflow`` and flowtel share the tracking URI), then
``set_experiment`` and the environment.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import TYPE_CHECKING, Any

from flowtel import _config
from flowtel._errors import report_internal_error
from flowtel.entities import TraceMetadataKey

if TYPE_CHECKING:
    from flowtel.tracing._processor import TraceRecord

__all__ = ["active_model_id", "apply_on_root_start", "clear_locations", "experiment_id_of_location",
           "forget_environment", "reset", "set_active_model", "set_location", "source_run"]

_MLFLOW_FLUENT = "mlflow.tracking.fluent"

# -- routing (set_destination with an MLflow location) ---------------------------------------------
_global_location: str | None = None
_context_location: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "flowtel_trace_location", default=None
)


def experiment_id_of_location(location: Any) -> str | None:
    """The experiment id of an MLflow trace location object (``MlflowExperimentLocation``, the
    deprecated ``MlflowExperiment`` destination, flowtel's ``TraceLocation``), else None."""
    experiment_id = getattr(location, "experiment_id", None)
    if experiment_id is None:
        nested = getattr(location, "mlflow_experiment", None)
        experiment_id = getattr(nested, "experiment_id", None)
    return None if experiment_id is None else str(experiment_id)


def set_location(experiment_id: str, *, context_local: bool) -> None:
    """Route traces started from now on (in this context only when ``context_local``)."""
    global _global_location, _context_locations_used
    if context_local:
        _context_location.set(experiment_id)
        _context_locations_used = True  # for good: other contexts may hold one
    else:
        _global_location = experiment_id
    _recompute_idle()


def clear_locations() -> None:
    global _global_location
    _global_location = None
    _context_location.set(None)
    _recompute_idle()


def _routed_experiment_id() -> str | None:
    return _context_location.get() or _global_location


# -- the active model ----------------------------------------------------------------------------
_active_model: str | None = None
_env_cache: dict[str, str | None] | None = None
_context_locations_used = False  # set_location(context_local=True) was ever called

# -- the fast path ---------------------------------------------------------------------------------
idle = False
"""True while nothing here can link a trace except ``mlflow`` itself (callers check
``_MLFLOW_FLUENT in sys.modules`` too): no location, no active model, the environment read and
empty. Lets the runtime skip :func:`apply_on_root_start` with one global read per trace.
Recomputed from the state under a lock by every writer of that state, so it is never stale."""
_idle_lock = threading.RLock()  # reentrant: the environment is read on the user's thread


def _recompute_idle() -> None:
    global idle
    with _idle_lock:
        env = _env_cache
        idle = (env is not None and not env["any"] and _active_model is None
                and _global_location is None and not _context_locations_used)


def set_active_model(model_id: str | None) -> None:
    """Link traces started from now on to this LoggedModel id (``None`` clears it)."""
    global _active_model
    _active_model = None if model_id is None else str(model_id)
    _recompute_idle()


def _env() -> dict[str, str | None]:
    global _env_cache
    env = _env_cache
    if env is None:
        run = _config.MLFLOW_RUN_ID.get() or None
        model = _config.MLFLOW_ACTIVE_MODEL_ID.get() or _config._MLFLOW_ACTIVE_MODEL_ID.get() or None
        env = _env_cache = {"run": run, "model": model, "any": run or model}
        _recompute_idle()
    return env


def forget_environment() -> None:
    """Read the environment variables again for the next trace (a new runtime)."""
    global _env_cache
    _env_cache = None
    _recompute_idle()


def reset() -> None:
    """Forget the active model, the routing and the environment read (``flowtel.tracing.reset()``)."""
    global _active_model
    _active_model = None
    forget_environment()
    clear_locations()


def source_run() -> tuple[str, str | None] | None:
    """``(run_id, experiment_id)`` of the active MLflow run (``experiment_id`` None when only
    ``MLFLOW_RUN_ID`` names it), or None."""
    fluent = sys.modules.get(_MLFLOW_FLUENT)
    if fluent is not None:
        try:
            # All threads, as MLflow does: a run started on the main thread covers worker threads.
            run = fluent._get_latest_active_run()
        except Exception as exc:  # noqa: BLE001 - a changed mlflow must not break the traced call
            report_internal_error("reading the active mlflow run", exc)
            run = None
        if run is not None:
            return str(run.info.run_id), str(run.info.experiment_id)
    run_id = _env()["run"]
    return (run_id, None) if run_id else None


def active_model_id() -> str | None:
    """The active LoggedModel: ``flowtel.tracing.set_active_model``, mlflow's active model (when
    mlflow is imported), ``MLFLOW_ACTIVE_MODEL_ID``."""
    if _active_model is not None:
        return _active_model
    fluent = sys.modules.get(_MLFLOW_FLUENT)
    if fluent is not None:
        try:
            model_id = fluent._get_active_model_id_global()
        except Exception as exc:  # noqa: BLE001 - a changed mlflow must not break the traced call
            report_internal_error("reading the active mlflow model", exc)
            model_id = None
        if model_id:
            return str(model_id)
    return _env()["model"]


# -- applied to a new trace ------------------------------------------------------------------------
def apply_on_root_start(record: TraceRecord) -> None:
    """Record run, model and routed experiment on a trace that just started (user's thread)."""
    routed = _context_location.get() or _global_location
    if routed is not None and record.experiment_id is None:
        record.experiment_id = routed
    env = _env_cache if _env_cache is not None else _env()
    if _active_model is None and not env["any"] and _MLFLOW_FLUENT not in sys.modules:
        return  # the common case: no mlflow, no run or model configured
    run = source_run()
    if run is not None:
        run_id, run_experiment = run
        record.metadata[TraceMetadataKey.SOURCE_RUN] = run_id
        if run_experiment is not None and record.experiment_id is None and _same_tracking_uri():
            record.experiment_id = run_experiment
    model_id = active_model_id()
    if model_id is not None:
        record.metadata[TraceMetadataKey.MODEL_ID] = model_id


def _same_tracking_uri() -> bool:
    """The run's experiment id means something only on the server ``mlflow`` itself talks to."""
    try:
        import mlflow  # already imported: source_run() found its active run

        from flowtel.tracing._tracking import resolve_tracking_uri

        ours = resolve_tracking_uri()
        return ours is not None and ours.rstrip("/") == str(mlflow.get_tracking_uri()).rstrip("/")
    except Exception as exc:  # noqa: BLE001 - a changed mlflow must not break the traced call
        report_internal_error("comparing tracking URIs with mlflow", exc)
        return False
