"""The shapes every provider's figures are normalised to: MLflow token usage and tool definitions."""

from __future__ import annotations

from typing import Any

from flowtel.entities import TokenUsageKey

__all__ = ["add_usage", "function_tool", "int_or_none", "token_usage"]


def int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def token_usage(
    input_tokens: Any, output_tokens: Any, total_tokens: Any = None, *,
    cache_read: Any = None, cache_creation: Any = None, reasoning: Any = None,
) -> dict[str, int] | None:
    """The MLflow ``mlflow.chat.tokenUsage`` dict from a provider's figures (None when it has none).

    ``total_tokens``, when the provider does not give it, is input plus output.
    """
    usage: dict[str, int] = {}
    for key, value in (
        (TokenUsageKey.INPUT_TOKENS, input_tokens),
        (TokenUsageKey.OUTPUT_TOKENS, output_tokens),
        (TokenUsageKey.TOTAL_TOKENS, total_tokens),
        (TokenUsageKey.CACHE_READ_INPUT_TOKENS, cache_read),
        (TokenUsageKey.CACHE_CREATION_INPUT_TOKENS, cache_creation),
        (TokenUsageKey.REASONING_TOKENS, reasoning),
    ):
        number = int_or_none(value)
        if number is not None:
            usage[key] = number
    if not usage:
        return None
    if TokenUsageKey.TOTAL_TOKENS not in usage:
        usage[TokenUsageKey.TOTAL_TOKENS] = usage.get(TokenUsageKey.INPUT_TOKENS, 0) + usage.get(
            TokenUsageKey.OUTPUT_TOKENS, 0
        )
    return usage


def add_usage(total: dict[str, int] | None, usage: dict[str, int] | None) -> dict[str, int] | None:
    if usage is None:
        return total
    if total is None:
        return dict(usage)
    for key, value in usage.items():
        total[key] = total.get(key, 0) + value
    return total


def function_tool(name: Any, description: Any = None, parameters: Any = None) -> dict[str, Any]:
    """A ``mlflow.chat.tools`` entry: ``{"type": "function", "function": {name, description, parameters}}``."""
    function: dict[str, Any] = {"name": name}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}
