"""Gemini requests and responses: plain JSON, token usage and tool definitions, as MLflow records them."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from flowtel.integrations._shared._normalize import function_tool, token_usage
from flowtel.integrations._shared._values import field_of, jsonable

__all__ = ["gemini_tools", "gemini_usage", "plain"]


def plain(value: Any) -> Any:
    """A ``google-genai`` object as JSON data without its unset (None) fields; anything else as is."""
    to_json = getattr(value, "to_json_dict", None)
    if not callable(to_json) or isinstance(value, type):
        return jsonable(value)
    try:
        return to_json()
    except Exception:  # noqa: BLE001 - not JSON as a whole (Python functions as tools): recorded field by field
        try:
            return value.model_dump(exclude_none=True)
        except Exception:  # noqa: BLE001 - recorded as flowtel's encoder sees the object itself
            return value


def gemini_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from ``usage_metadata`` (input: prompt, output: candidates, as MLflow)."""
    if usage is None:
        return None
    return token_usage(
        field_of(usage, "prompt_token_count"), field_of(usage, "candidates_token_count"),
        field_of(usage, "total_token_count"),
        cache_read=field_of(usage, "cached_content_token_count"),
        reasoning=field_of(usage, "thoughts_token_count"),
    )


def gemini_tools(config: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from ``config.tools``: function declarations and Python functions."""
    tools = field_of(config, "tools")
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if callable(tool) and not hasattr(tool, "function_declarations"):
            doc = inspect.getdoc(tool)
            parsed.append(function_tool(getattr(tool, "__name__", str(tool)), doc.strip() if doc else None))
            continue
        for declaration in field_of(tool, "function_declarations") or ():
            parameters = field_of(declaration, "parameters") or field_of(declaration, "parameters_json_schema")
            parsed.append(function_tool(
                field_of(declaration, "name"), field_of(declaration, "description"),
                plain(parameters) if parameters is not None else None,
            ))
    return parsed
