"""Bedrock spans (``mlflow.message.format="bedrock"``) in GenAI semantic conventions.

Converse records ``system`` and ``messages`` of content blocks (``text``, ``toolUse``,
``toolResult``, ``reasoningContent``, ``image``) and an ``output.message`` response.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._conventions import function_tool_definition, json_text
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["CONVENTIONS", "CONVERSE"]


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    looks_converse = isinstance(outputs, dict) and isinstance(outputs.get("output"), dict) \
        and "message" in outputs["output"]
    return CONVERSE if claimed or looks_converse else None


def _finish_reasons(outputs: dict[str, Any]) -> list[str]:
    reason = outputs.get("stopReason")
    return [reason] if isinstance(reason, str) and reason else []


def _parts(blocks: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            parts.append({"type": "text", "content": block["text"]})
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            parts.append({"type": "tool_call", "id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": use.get("input")})
        elif isinstance(block.get("toolResult"), dict):
            answer = block["toolResult"]
            parts.append({"type": "tool_call_response", "id": answer.get("toolUseId"), "response": answer.get("content")})
        elif isinstance(block.get("reasoningContent"), dict):
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            parts.append({"type": "reasoning", "content": text or ""})
        else:
            parts.append({"type": "text", "content": json_text(block)})
    return parts


def _message(message: Any) -> dict[str, Any]:
    message = message if isinstance(message, dict) else {}
    parts = _parts(message.get("content"))
    role = message.get("role") or "user"
    if parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    return {"role": role, "parts": parts}


def _inputs(inputs: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
    system = _parts(inputs.get("system")) or None
    messages = inputs.get("messages")
    return system, [_message(m) for m in messages] if isinstance(messages, list) else None


def _outputs(outputs: dict[str, Any]) -> list[Any] | None:
    output = outputs.get("output")
    if not isinstance(output, dict):
        return None
    message = _message(output.get("message"))
    message["role"] = "assistant"
    message["finish_reason"] = str(outputs.get("stopReason") or "")
    return [message]


CONVERSE = MessageConverter(_inputs, _outputs)
CONVENTIONS = GenAiConventions(_converter, _finish_reasons, function_tool_definition)
