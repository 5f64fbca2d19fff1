"""OpenAI request and response shapes: token usage and tool definitions, as MLflow records them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowtel.integrations._shared._normalize import function_tool, token_usage
from flowtel.integrations._shared._values import field_of

__all__ = ["openai_tools", "openai_usage"]


def openai_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from an OpenAI ``usage`` (chat/completions, Responses or embeddings)."""
    if usage is None:
        return None
    if field_of(usage, "prompt_tokens") is not None or field_of(usage, "completion_tokens") is not None:
        return token_usage(
            field_of(usage, "prompt_tokens"), field_of(usage, "completion_tokens"), field_of(usage, "total_tokens"),
            cache_read=field_of(field_of(usage, "prompt_tokens_details"), "cached_tokens"),
            reasoning=field_of(field_of(usage, "completion_tokens_details"), "reasoning_tokens"),
        )
    return token_usage(
        field_of(usage, "input_tokens"), field_of(usage, "output_tokens"), field_of(usage, "total_tokens"),
        cache_read=field_of(field_of(usage, "input_tokens_details"), "cached_tokens"),
        reasoning=field_of(field_of(usage, "output_tokens_details"), "reasoning_tokens"),
    )


def openai_tools(tools: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from OpenAI chat or Responses tool definitions (built-ins by type name)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        kind = tool.get("type", "function")
        function = tool.get("function")
        if isinstance(function, Mapping):
            parsed.append(function_tool(function.get("name"), function.get("description"), function.get("parameters")))
        elif kind == "function":
            parsed.append(function_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
        else:
            parsed.append(function_tool(tool.get("name") or kind))
    return parsed
