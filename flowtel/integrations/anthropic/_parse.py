"""Anthropic request and response shapes: token usage and tool definitions, as MLflow records them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowtel.integrations._shared._normalize import function_tool, int_or_none, token_usage
from flowtel.integrations._shared._values import field_of

__all__ = ["anthropic_tools", "anthropic_usage"]


def anthropic_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from an Anthropic ``usage``.

    Anthropic's ``input_tokens`` excludes cached tokens; like MLflow, the recorded input (and total)
    includes cache reads and writes so the figure is comparable with other providers.
    """
    if usage is None:
        return None
    cache_read = int_or_none(field_of(usage, "cache_read_input_tokens"))
    cache_creation = int_or_none(field_of(usage, "cache_creation_input_tokens"))
    input_tokens = int_or_none(field_of(usage, "input_tokens"))
    output_tokens = int_or_none(field_of(usage, "output_tokens"))
    if input_tokens is not None:
        input_tokens += (cache_read or 0) + (cache_creation or 0)
    result = token_usage(
        input_tokens, output_tokens, cache_read=cache_read, cache_creation=cache_creation,
        reasoning=field_of(field_of(usage, "output_tokens_details"), "thinking_tokens"),
    )
    above_1h = int_or_none(field_of(field_of(usage, "cache_creation"), "ephemeral_1h_input_tokens"))
    if result is not None and above_1h:
        result["cache_creation_input_tokens_above_1hr"] = above_1h
    return result


def anthropic_tools(tools: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from Anthropic tool definitions (``input_schema`` -> ``parameters``)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    return [
        function_tool(tool.get("name") or tool.get("type"), tool.get("description"), tool.get("input_schema"))
        for tool in tools
        if isinstance(tool, Mapping)
    ]
