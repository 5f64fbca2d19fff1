"""LiteLLM responses: token usage, tool definitions and the provider, as MLflow records them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flowtel.integrations._shared._normalize import function_tool, token_usage
from flowtel.integrations._shared._values import field_of

__all__ = ["litellm_provider", "litellm_tools", "litellm_usage", "response_provider"]


def litellm_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from LiteLLM's OpenAI-shaped ``Usage`` (with Anthropic's cache fields)."""
    if usage is None:
        return None
    cache_read = field_of(field_of(usage, "prompt_tokens_details"), "cached_tokens")
    if cache_read is None:
        cache_read = field_of(usage, "cache_read_input_tokens")
    return token_usage(
        field_of(usage, "prompt_tokens"), field_of(usage, "completion_tokens"), field_of(usage, "total_tokens"),
        cache_read=cache_read,
        cache_creation=field_of(usage, "cache_creation_input_tokens"),
        reasoning=field_of(field_of(usage, "completion_tokens_details"), "reasoning_tokens"),
    )


def litellm_tools(tools: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from OpenAI-shaped tool definitions (LiteLLM's input format)."""
    if not isinstance(tools, Iterable) or isinstance(tools, (str, bytes, Mapping)):
        return []
    parsed: list[dict[str, Any]] = []
    for tool in tools:
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        if isinstance(function, Mapping):
            parsed.append(function_tool(function.get("name"), function.get("description"), function.get("parameters")))
        else:
            parsed.append(function_tool(tool.get("name") or tool.get("type")))
    return parsed


def litellm_provider(litellm: Any, model: Any, kwargs: Mapping[str, Any]) -> str | None:
    """LiteLLM's provider for ``model`` (``openai/gpt-4o`` -> ``openai``), without any network call."""
    explicit = kwargs.get("custom_llm_provider")
    if isinstance(explicit, str) and explicit:
        return explicit
    if not isinstance(model, str):
        return None
    try:
        found = litellm.get_llm_provider(model=model, api_base=kwargs.get("api_base"))
    except Exception:  # noqa: BLE001 - an unknown model: LiteLLM raises for it itself, recorded then
        return model.split("/", 1)[0] if "/" in model else None
    provider = found[1] if isinstance(found, tuple) and len(found) > 1 else None
    return provider if isinstance(provider, str) and provider else None


def response_provider(response: Any) -> str | None:
    """The provider LiteLLM says answered (``_hidden_params["custom_llm_provider"]``)."""
    hidden = getattr(response, "_hidden_params", None)
    provider = hidden.get("custom_llm_provider") if isinstance(hidden, Mapping) else None
    return provider if isinstance(provider, str) and provider else None
