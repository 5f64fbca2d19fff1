"""Gemini spans (``mlflow.message.format="gemini"``) in GenAI semantic conventions.

Inputs: ``contents`` (a string, parts, or ``Content`` s of ``role`` and ``parts``: text, thought,
function_call, function_response, inline_data, file_data) and ``config.system_instruction``;
outputs: ``candidates`` of ``content`` and ``finish_reason``. Keys are read in the SDK's snake_case
and the REST API's camelCase alike.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._conventions import function_tool_definition, json_text, uri_part
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["CONVENTIONS", "GENERATE_CONTENT"]


def _get(mapping: Any, snake: str) -> Any:
    if not isinstance(mapping, dict):
        return None
    if snake in mapping:
        return mapping[snake]
    head, *rest = snake.split("_")
    return mapping.get(head + "".join(word.title() for word in rest))


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    looks_gemini = isinstance(outputs, dict) and isinstance(outputs.get("candidates"), list)
    return GENERATE_CONTENT if claimed or looks_gemini else None


def _finish_reasons(outputs: dict[str, Any]) -> list[str]:
    reasons = [_get(c, "finish_reason") for c in outputs.get("candidates") or () if isinstance(c, dict)]
    return [str(r) for r in reasons if r]


def _parts(parts: Any) -> list[dict[str, Any]]:
    if isinstance(parts, (str, dict)):
        parts = [parts]
    converted: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, str):
            converted.append({"type": "text", "content": part})
        elif not isinstance(part, dict):
            continue
        elif isinstance(part.get("text"), str):
            converted.append({"type": "reasoning" if part.get("thought") else "text", "content": part["text"]})
        elif isinstance(_get(part, "function_call"), dict):
            call = _get(part, "function_call")
            converted.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                              "arguments": call.get("args")})
        elif isinstance(_get(part, "function_response"), dict):
            answer = _get(part, "function_response")
            converted.append({"type": "tool_call_response", "id": answer.get("id"), "response": answer.get("response")})
        elif isinstance(_get(part, "inline_data"), dict):
            blob = _get(part, "inline_data")
            converted.append({"type": "blob", "modality": str(_get(blob, "mime_type") or "").split("/")[0] or "image",
                              "mime_type": _get(blob, "mime_type"), "content": blob.get("data")})
        elif isinstance(_get(part, "file_data"), dict):
            converted.append(uri_part(_get(_get(part, "file_data"), "file_uri"), "image"))
        else:
            converted.append({"type": "text", "content": json_text(part)})
    return converted


def _message(content: Any) -> dict[str, Any]:
    if not isinstance(content, dict) or "parts" not in content:
        return {"role": "user", "parts": _parts(content)}
    role = content.get("role") or "user"
    parts = _parts(content.get("parts"))
    if parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    return {"role": "assistant" if role == "model" else role, "parts": parts}


def _inputs(inputs: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
    system = _get(inputs.get("config"), "system_instruction")
    system_parts = _message(system)["parts"] if system is not None else None
    contents = inputs.get("contents")
    if contents is None:
        return system_parts, None
    if isinstance(contents, list) and contents and all(isinstance(c, dict) and "parts" in c for c in contents):
        return system_parts, [_message(c) for c in contents]
    return system_parts, [_message(contents)]  # a string, or a list of parts: one user message


def _outputs(outputs: dict[str, Any]) -> list[Any] | None:
    candidates = outputs.get("candidates")
    if not isinstance(candidates, list):
        return None
    messages = []
    for candidate in candidates:
        if isinstance(candidate, dict):
            message = _message(candidate.get("content") or {"role": "model", "parts": []})
            message["role"] = "assistant"
            message["finish_reason"] = str(_get(candidate, "finish_reason") or "")
            messages.append(message)
    return messages


GENERATE_CONTENT = MessageConverter(_inputs, _outputs)
CONVENTIONS = GenAiConventions(_converter, _finish_reasons, function_tool_definition)  # tools: recorded in the standard shape
