"""Bedrock requests and responses: ``invoke_model`` bodies, token usage and tool definitions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowtel.integrations._shared._normalize import function_tool, int_or_none, token_usage

INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"

__all__ = ["INVOCATION_METRICS", "body_usage", "converse_tools", "converse_usage", "header_usage", "json_body", "metrics_usage"]


def json_body(body: Any) -> Any:
    """An ``invoke_model`` request/response body as its JSON value (bytes or text); else as given."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(body)} bytes>"
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def converse_usage(usage: Any) -> dict[str, int] | None:
    """MLflow token usage from Converse's ``usage`` (``inputTokens``, ``cacheReadInputTokens``...)."""
    if not isinstance(usage, Mapping):
        return None
    return token_usage(
        usage.get("inputTokens"), usage.get("outputTokens"), usage.get("totalTokens"),
        cache_read=usage.get("cacheReadInputTokens"), cache_creation=usage.get("cacheWriteInputTokens"),
    )


def header_usage(result: Any) -> dict[str, int] | None:
    """Token counts Bedrock reports in ``x-amzn-bedrock-*-token-count`` response headers."""
    headers = result.get("ResponseMetadata", {}).get("HTTPHeaders", {}) if isinstance(result, Mapping) else {}
    if not isinstance(headers, Mapping):
        return None
    counts = [_int(headers.get(f"x-amzn-bedrock-{kind}-token-count")) for kind in ("input", "output")]
    return token_usage(*counts) if any(c is not None for c in counts) else None


def metrics_usage(metrics: Any) -> dict[str, int] | None:
    """Token usage from a stream's ``amazon-bedrock-invocationMetrics``."""
    if not isinstance(metrics, Mapping):
        return None
    return token_usage(metrics.get("inputTokenCount"), metrics.get("outputTokenCount"),
                       cache_read=metrics.get("cacheReadInputTokenCount"),
                       cache_creation=metrics.get("cacheWriteInputTokenCount"))


def body_usage(body: Any) -> dict[str, int] | None:
    """Token usage from an ``invoke_model`` response body of a known family."""
    if not isinstance(body, Mapping):
        return None
    metrics = body.get(INVOCATION_METRICS)  # a rebuilt stream: Bedrock's own count
    if isinstance(metrics, Mapping):
        return metrics_usage(metrics)
    usage = body.get("usage")
    if isinstance(usage, Mapping):  # Anthropic
        return token_usage(usage.get("input_tokens"), usage.get("output_tokens"),
                           cache_read=usage.get("cache_read_input_tokens"),
                           cache_creation=usage.get("cache_creation_input_tokens"))
    if "prompt_token_count" in body:  # Meta Llama
        return token_usage(body.get("prompt_token_count"), body.get("generation_token_count"))
    if "inputTextTokenCount" in body:  # Amazon Titan
        results = body.get("results")
        output = sum(int_or_none(r.get("tokenCount")) or 0 for r in results if isinstance(r, Mapping)) \
            if isinstance(results, list) and results else None
        return token_usage(body.get("inputTextTokenCount"), output)
    billed = body.get("meta", {}).get("billed_units") if isinstance(body.get("meta"), Mapping) else None
    if isinstance(billed, Mapping):  # Cohere
        return token_usage(billed.get("input_tokens"), billed.get("output_tokens"))
    return None


def converse_tools(tool_config: Any) -> list[dict[str, Any]]:
    """``mlflow.chat.tools`` from Converse's ``toolConfig.tools[].toolSpec``."""
    tools = tool_config.get("tools") if isinstance(tool_config, Mapping) else None
    parsed: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else ():
        spec = tool.get("toolSpec") if isinstance(tool, Mapping) else None
        if isinstance(spec, Mapping):
            schema = spec.get("inputSchema")
            parameters = schema.get("json") if isinstance(schema, Mapping) else None
            parsed.append(function_tool(spec.get("name"), spec.get("description"), parameters))
    return parsed


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
