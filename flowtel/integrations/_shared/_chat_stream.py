"""Streams in the OpenAI chat-completions shape (``chat.completion.chunk``), which the OpenAI SDK and
every library speaking that shape (LiteLLM's ``ModelResponseStream``) yield: the completion rebuilt."""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._values import jsonable

__all__ = ["ChatAccumulator"]


class ChatAccumulator:
    """Rebuilds a ``chat.completion`` from ``chat.completion.chunk`` s (text, tool-call deltas, usage)."""

    __slots__ = ("envelope", "choices", "usage")

    def __init__(self) -> None:
        self.envelope: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> bool:
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            value = getattr(chunk, key, None)
            if value is not None:
                self.envelope[key] = value
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
        content = False
        for choice in getattr(chunk, "choices", None) or ():
            content = self._add_choice(choice) or content
        return content

    def _add_choice(self, choice: Any) -> bool:
        state = self.choices.get(choice.index)
        if state is None:
            state = self.choices[choice.index] = {
                "role": "assistant", "content": [], "refusal": [], "tool_calls": {}, "finish_reason": None,
            }
        if choice.finish_reason is not None:
            state["finish_reason"] = choice.finish_reason
        delta = choice.delta
        if delta is None:
            return False
        content = False
        if delta.role:
            state["role"] = delta.role
        if delta.content:
            state["content"].append(delta.content)
            content = True
        if getattr(delta, "refusal", None):
            state["refusal"].append(delta.refusal)
            content = True
        for call in delta.tool_calls or ():
            slot = state["tool_calls"].get(call.index)
            if slot is None:
                slot = state["tool_calls"][call.index] = {"id": None, "type": "function", "name": "", "arguments": []}
            if call.id:
                slot["id"] = call.id
            function = call.function
            if function is not None:
                if function.name:
                    slot["name"] = function.name
                if function.arguments:
                    slot["arguments"].append(function.arguments)
            content = True
        return content

    def result(self) -> dict[str, Any] | None:
        if not self.envelope and not self.choices:
            return None
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {
                "role": state["role"],
                "content": "".join(state["content"]) if state["content"] else None,
                "refusal": "".join(state["refusal"]) if state["refusal"] else None,
            }
            if state["tool_calls"]:
                message["tool_calls"] = [
                    {"id": slot["id"], "type": slot["type"],
                     "function": {"name": slot["name"], "arguments": "".join(slot["arguments"])}}
                    for _, slot in sorted(state["tool_calls"].items())
                ]
            choices.append({"index": index, "message": message, "finish_reason": state["finish_reason"],
                            "logprobs": None})
        return {
            "id": self.envelope.get("id"),
            "object": "chat.completion",
            "created": self.envelope.get("created"),
            "model": self.envelope.get("model"),
            "choices": choices,
            "system_fingerprint": self.envelope.get("system_fingerprint"),
            "service_tier": self.envelope.get("service_tier"),
            "usage": jsonable(self.usage),
        }
