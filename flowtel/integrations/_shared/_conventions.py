"""Chat messages in MLflow's standard (OpenAI-compatible) shape, as GenAI semantic conventions.

Messages follow the semconv "parts" model (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``). :data:`CONVENTIONS` is the reading of last resort
(``flowtel.tracing._providers.GENERIC_CONVENTIONS``): any span whose inputs carry ``messages`` or
whose outputs carry ``choices`` is read this way when no provider claims it. Providers that record
this shape (OpenAI Chat Completions, LangChain) build on these functions.
"""

from __future__ import annotations

import json
from typing import Any

from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = [
    "CHAT",
    "CONVENTIONS",
    "chat_finish_reasons",
    "chat_inputs",
    "chat_message",
    "chat_outputs",
    "chat_parts",
    "function_tool_definition",
    "json_text",
    "looks_like_chat",
    "parse_json",
    "uri_part",
]


def looks_like_chat(inputs: Any, outputs: Any) -> bool:
    """Inputs with a ``messages`` list or outputs with a ``choices`` list."""
    return (isinstance(inputs, dict) and isinstance(inputs.get("messages"), list)) or (
        isinstance(outputs, dict) and isinstance(outputs.get("choices"), list)
    )


def chat_inputs(inputs: dict[str, Any]) -> tuple[list[Any] | None, list[Any] | None]:
    messages = inputs.get("messages")
    if not isinstance(messages, list):
        return None, None
    system: list[Any] = []
    converted: list[Any] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer"):
            system.extend(chat_parts(message.get("content")))
        else:
            converted.append(chat_message(message))
    return system or None, converted


def chat_outputs(outputs: dict[str, Any]) -> list[Any] | None:
    choices = outputs.get("choices")
    if not isinstance(choices, list):
        return None
    result = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") or choice.get("delta") or {}
        converted = chat_message({"role": "assistant", **message} if isinstance(message, dict) else {})
        converted["finish_reason"] = choice.get("finish_reason") or ""
        result.append(converted)
    return result


def chat_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role") or "user"
    parts = chat_parts(message.get("content"))
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
            parts.append({
                "type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                "arguments": parse_json(function.get("arguments")),
            })
    if role == "tool":
        return {"role": "tool", "parts": [{
            "type": "tool_call_response", "id": message.get("tool_call_id"),
            "response": message.get("content"),
        }]}
    return {"role": role, "parts": parts}


def chat_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, list):
        return [{"type": "text", "content": json_text(content)}]
    parts = []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind in ("text", "input_text", "output_text"):
            parts.append({"type": "text", "content": item.get("text", "")})
        elif kind in ("image_url", "input_image"):
            url = item.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            parts.append(uri_part(url, "image"))
        elif kind == "refusal":
            parts.append({"type": "text", "content": item.get("refusal", "")})
        else:
            parts.append({"type": str(kind or "text"), "content": json_text(item)})
    return parts


def uri_part(url: Any, modality: str) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:") and "," in url:
        header, data = url.split(",", 1)
        mime = header[5:].split(";", 1)[0]
        return {"type": "blob", "modality": modality, "mime_type": mime or None, "content": data}
    return {"type": "uri", "modality": modality, "uri": url}


CHAT = MessageConverter(chat_inputs, chat_outputs)


def chat_finish_reasons(outputs: dict[str, Any]) -> list[str]:
    """``finish_reason`` of every choice."""
    choices = outputs.get("choices")
    if isinstance(choices, list):
        return [str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason")]
    return []


def function_tool_definition(tool: dict[str, Any]) -> Any:
    """``{"type", "function": {...}}`` (``mlflow.chat.tools``, OpenAI chat) flattened; None otherwise."""
    if isinstance(tool.get("function"), dict):
        return {"type": tool.get("type", "function"), **tool["function"]}
    return None


def parse_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    return CHAT if claimed or looks_like_chat(inputs, outputs) else None


CONVENTIONS = GenAiConventions(_converter, chat_finish_reasons, function_tool_definition)
