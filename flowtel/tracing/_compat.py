"""MLflow tracing helpers a switching user calls by name: chat tools on a span, run links,
the active model and hierarchical sessions (``mlflow.tracing.*`` / ``MlflowClient`` /
``mlflow.genai``), with MLflow's signatures and wire format."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowtel._exceptions import FlowtelException, InvalidParameterError
from flowtel.entities._constants import SpanAttributeKey
from flowtel.tracing import _links, _runtime

__all__ = ["SESSION_HIERARCHY_TAG", "clear_active_model", "link_traces_to_run", "set_active_model",
           "set_session_hierarchy", "set_span_chat_tools"]

SESSION_HIERARCHY_TAG = "mlflow.experiment.sessionHierarchy"
_MAX_LINKED_TRACES = 100


def set_span_chat_tools(span: Any, tools: list[Any]) -> None:
    """Record the tools available to a chat model on ``span`` (``mlflow.chat.tools``), which the
    MLflow UI shows next to the conversation.

    Args:
        span: A :class:`~flowtel.LiveSpan` (a :class:`~flowtel.NoOpSpan` ignores it).
        tools: OpenAI-style tool definitions, ``{"type": "function", "function": {"name": ...,
            "description": ..., "parameters": {...}}}``, as dicts or pydantic models.

    Raises:
        InvalidParameterError: ``tools`` is not a list of such definitions.
    """
    if not isinstance(tools, list):
        raise InvalidParameterError(f"Invalid tools type {type(tools)}. Expected a list of ChatTool.")
    span.set_attribute(SpanAttributeKey.CHAT_TOOLS, [_tool_dict(tool) for tool in tools])


def _tool_dict(tool: Any) -> dict[str, Any]:
    if hasattr(tool, "model_dump"):
        tool = tool.model_dump(exclude_unset=True)
    if not isinstance(tool, Mapping) or tool.get("type") != "function":
        raise InvalidParameterError(f"Invalid tool {tool!r}: expected {{'type': 'function', 'function': {{...}}}}.")
    function = tool.get("function")
    if function is not None and not (isinstance(function, Mapping) and isinstance(function.get("name"), str)):
        raise InvalidParameterError(f"Invalid tool {tool!r}: 'function' needs a string 'name'.")
    return dict(tool)


def link_traces_to_run(trace_ids: list[str], run_id: str) -> None:
    """Link existing traces to an MLflow run, as ``MlflowClient.link_traces_to_run`` does, so
    ``search_traces(run_id=run_id)`` (flowtel's or MLflow's) finds them. Blocks on the server.

    Raises:
        InvalidParameterError: more than 100 trace ids.
        FlowtelException: the destination keeps no run links (the embedded store), or the
            server refused.
    """
    if len(trace_ids) > _MAX_LINKED_TRACES:
        raise InvalidParameterError(f"Cannot link more than {_MAX_LINKED_TRACES} traces to a run at once.")
    link = getattr(_runtime.get_runtime().store, "link_traces_to_run", None)
    if link is None:
        raise FlowtelException(
            "Linking traces to a run needs an MLflow tracking server (MLFLOW_TRACKING_URI); "
            "the embedded store keeps no runs. Traces started inside a run are linked anyway "
            "(mlflow.sourceRun)."
        )
    link(list(trace_ids), str(run_id))


def set_active_model(name: str | None = None, model_id: str | None = None) -> None:
    """Link traces started from now on to an MLflow LoggedModel (``mlflow.modelId``), as
    ``mlflow.set_active_model(model_id=...)``. Traces also pick up mlflow's own active model
    and ``MLFLOW_ACTIVE_MODEL_ID``. No I/O.

    Raises:
        InvalidParameterError: no ``model_id`` (creating a LoggedModel by ``name`` is
            ``mlflow.set_active_model(name=...)``'s job; flowtel then picks it up by itself).
    """
    if model_id is None:
        raise InvalidParameterError(
            "flowtel.tracing.set_active_model() needs model_id=...; to create a LoggedModel by name use "
            f"mlflow.set_active_model(name={name!r}), which flowtel then follows."
        )
    _links.set_active_model(str(model_id))


def clear_active_model() -> None:
    """Stop linking new traces to the model set with :func:`set_active_model`."""
    _links.set_active_model(None)


def set_session_hierarchy(levels: list[str], experiment_id: str | None = None) -> None:
    """Declare the levels of hierarchical session ids (MLflow 3.18), outermost first, on an
    experiment (default: the current one), e.g. ``["trip", "episode", "turn"]``; traces then
    carry ``session_id=["trip-2", "ep-2", "turn-5"]`` (``update_current_trace`` or
    ``flowtel.tracing.context``). Blocks on the server.

    Raises:
        InvalidParameterError: ``levels`` is not a non-empty list of unique non-empty names.
        FlowtelException: the destination keeps no experiment tags (the embedded store).
    """
    if (
        not isinstance(levels, list)
        or not levels
        or not all(isinstance(level, str) and level for level in levels)
        or len(set(levels)) != len(levels)
    ):
        raise InvalidParameterError(
            f"`levels` must be a non-empty list of unique, non-empty level names, got {levels!r}."
        )
    runtime = _runtime.get_runtime()
    set_tag = getattr(runtime.store, "set_experiment_tag", None)
    if set_tag is None:
        raise FlowtelException(
            "Session hierarchies are experiment tags of an MLflow tracking server "
            "(MLFLOW_TRACKING_URI); the embedded store keeps none."
        )
    value = json.dumps({"version": 1, "levels": [{"name": level} for level in levels]},
                       separators=(",", ":"), ensure_ascii=False)
    set_tag(experiment_id or runtime.experiment_id(), SESSION_HIERARCHY_TAG, value)
