"""OpenAI spans (``mlflow.message.format="openai"``) in GenAI semantic conventions.

Chat Completions record MLflow's standard chat shape (``flowtel.integrations._shared._conventions``);
the Responses API records ``input`` / ``instructions`` and ``output`` items, read here.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._conventions import (
    CHAT,
    chat_finish_reasons,
    chat_parts,
    function_tool_definition,
    parse_json,
)
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["CONVENTIONS", "RESPONSES"]


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    if isinstance(inputs, dict) and "input" in inputs and "messages" not in inputs:
        return RESPONSES
    if claimed or (isinstance(outputs, dict) and isinstance(outputs.get("choices"), list)):
        return CHAT
    return None


def _finish_reasons(outputs: dict[str, Any]) -> list[str]:
    if isinstance(outputs.get("choices"), list):
        return chat_finish_reasons(outputs)
    status = outputs.get("status")  # Responses
    return [status] if isinstance(status, str) and status else []


def _responses_inputs(inputs: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
    items = inputs.get("input")
    system = [{"type": "text", "content": inputs["instructions"]}] if isinstance(inputs.get("instructions"), str) else None
    if isinstance(items, str):
        return system, [{"role": "user", "parts": [{"type": "text", "content": items}]}]
    if not isinstance(items, list):
        return system, None
    return system, [_responses_item(item, default_role="user") for item in items if isinstance(item, dict)]


def _responses_outputs(outputs: dict[str, Any]) -> list[Any] | None:
    items = outputs.get("output")
    if not isinstance(items, list):
        return None
    parts: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            parts.extend(_responses_item(item, default_role="assistant")["parts"])
    return [{"role": "assistant", "parts": parts, "finish_reason": str(outputs.get("status") or "")}]


def _responses_item(item: dict[str, Any], *, default_role: str) -> dict[str, Any]:
    kind = item.get("type")
    if kind == "function_call":
        return {"role": "assistant", "parts": [{
            "type": "tool_call", "id": item.get("call_id"), "name": item.get("name"),
            "arguments": parse_json(item.get("arguments")),
        }]}
    if kind == "function_call_output":
        return {"role": "tool", "parts": [{
            "type": "tool_call_response", "id": item.get("call_id"), "response": item.get("output"),
        }]}
    if kind == "reasoning":
        summary = item.get("summary") or []
        text = "".join(s.get("text", "") for s in summary if isinstance(s, dict))
        return {"role": "assistant", "parts": [{"type": "reasoning", "content": text}]}
    return {"role": item.get("role") or default_role, "parts": chat_parts(item.get("content"))}


RESPONSES = MessageConverter(_responses_inputs, _responses_outputs)
CONVENTIONS = GenAiConventions(_converter, _finish_reasons, function_tool_definition)
