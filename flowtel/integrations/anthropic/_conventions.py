"""Anthropic spans (``mlflow.message.format="anthropic"``) in GenAI semantic conventions.

The Messages API records ``system`` and ``messages`` of content blocks (text, tool_use, tool_result,
thinking, image) and a ``Message`` response.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._conventions import json_text
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["CONVENTIONS", "MESSAGES"]


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    looks_anthropic = (
        isinstance(outputs, dict) and outputs.get("type") == "message" and isinstance(outputs.get("content"), list)
    )
    return MESSAGES if claimed or looks_anthropic else None


def _finish_reasons(outputs: dict[str, Any]) -> list[str]:
    reason = outputs.get("stop_reason")
    return [reason] if isinstance(reason, str) and reason else []


def _tool_definition(tool: dict[str, Any]) -> Any:
    """``{"name", "description", "input_schema"}`` as a semconv function definition; None otherwise."""
    if "input_schema" not in tool:
        return None
    rest = {k: v for k, v in tool.items() if k != "input_schema"}
    return {"type": "function", **rest, "parameters": tool["input_schema"]}


def _message_inputs(inputs: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
    messages = inputs.get("messages")
    system = inputs.get("system")
    instructions = _parts(system) if system else None
    if not isinstance(messages, list):
        return instructions, None
    converted = []
    for message in messages:
        if isinstance(message, dict):
            parts = _parts(message.get("content"))
            role = message.get("role") or "user"
            if parts and all(p["type"] == "tool_call_response" for p in parts):
                role = "tool"
            converted.append({"role": role, "parts": parts})
    return instructions, converted


def _message_outputs(outputs: dict[str, Any]) -> list[Any] | None:
    if not isinstance(outputs.get("content"), list):
        return None
    return [{
        "role": outputs.get("role") or "assistant",
        "parts": _parts(outputs["content"]),
        "finish_reason": str(outputs.get("stop_reason") or ""),
    }]


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, list):
        return []
    parts = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind == "tool_use":
            parts.append({"type": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")})
        elif kind == "tool_result":
            parts.append({"type": "tool_call_response", "id": block.get("tool_use_id"), "response": block.get("content")})
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block.get("thinking", "")})
        elif kind == "image" and isinstance(block.get("source"), dict):
            source = block["source"]
            if source.get("type") == "base64":
                parts.append({"type": "blob", "modality": "image", "mime_type": source.get("media_type"), "content": source.get("data")})
            else:
                parts.append({"type": "uri", "modality": "image", "uri": source.get("url")})
        else:
            parts.append({"type": str(kind or "text"), "content": json_text(block)})
    return parts


MESSAGES = MessageConverter(_message_inputs, _message_outputs)
CONVENTIONS = GenAiConventions(_converter, _finish_reasons, _tool_definition)
