"""LangChain's shapes: ``usage_metadata`` token usage, and tool definitions in any provider's shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowtel.integrations._shared._normalize import token_usage
from flowtel.integrations._shared._values import field_of
from flowtel.integrations.anthropic._parse import anthropic_tools
from flowtel.integrations.openai._parse import openai_tools

__all__ = ["any_tools", "langchain_usage"]


def langchain_usage(usage_metadata: Any) -> dict[str, int] | None:
    """MLflow token usage from LangChain's ``usage_metadata`` (input already includes cache)."""
    if not usage_metadata:
        return None
    input_details = field_of(usage_metadata, "input_token_details")
    output_details = field_of(usage_metadata, "output_token_details")
    return token_usage(
        field_of(usage_metadata, "input_tokens"), field_of(usage_metadata, "output_tokens"),
        field_of(usage_metadata, "total_tokens"),
        cache_read=field_of(input_details, "cache_read"),
        cache_creation=field_of(input_details, "cache_creation"),
        reasoning=field_of(output_details, "reasoning"),
    )


def any_tools(tools: Any) -> list[dict[str, Any]]:
    """Tool definitions in OpenAI or Anthropic shape (LangChain passes either)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        if "input_schema" in tool:
            parsed.extend(anthropic_tools([tool]))
        else:
            parsed.extend(openai_tools([tool]))
    return parsed
