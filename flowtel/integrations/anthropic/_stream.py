"""Anthropic streams: a ``Message`` rebuilt from raw stream events (text, tool_use JSON, thinking, usage)."""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._values import jsonable, parse_json_object

__all__ = ["MessageAccumulator"]


class MessageAccumulator:
    """Rebuilds a ``Message`` from raw stream events (text, tool_use JSON, thinking, usage)."""

    __slots__ = ("message", "blocks", "json")

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json: dict[int, list[str]] = {}

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            return self._delta(event.index, event.delta)
        if kind == "message_start":
            self.message = jsonable(event.message)
        elif kind == "content_block_start":
            self.blocks[event.index] = jsonable(event.content_block)
        elif kind == "content_block_stop":
            self._close_block(event.index)
        elif kind == "message_delta":
            self._message_delta(event)
        return False

    def _delta(self, index: int, delta: Any) -> bool:
        block = self.blocks.setdefault(index, {})
        kind = getattr(delta, "type", None)
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.text
        elif kind == "input_json_delta":
            self.json.setdefault(index, []).append(delta.partial_json)
            return bool(delta.partial_json)
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
        elif kind == "signature_delta":
            block["signature"] = delta.signature
            return False
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(jsonable(delta.citation))
        else:
            return False
        return True

    def _close_block(self, index: int) -> None:
        parts = self.json.pop(index, None)
        if parts is not None:
            self.blocks.setdefault(index, {})["input"] = parse_json_object("".join(parts))

    def _message_delta(self, event: Any) -> None:
        message = self.message if self.message is not None else {}
        self.message = message
        delta = event.delta
        for key in ("stop_reason", "stop_sequence"):
            value = getattr(delta, key, None)
            if value is not None:
                message[key] = value
        usage = getattr(event, "usage", None)
        if usage is not None:
            merged = dict(message.get("usage") or {})
            merged.update({k: v for k, v in jsonable(usage).items() if v is not None})
            message["usage"] = merged

    def result(self) -> dict[str, Any] | None:
        if self.message is None and not self.blocks:
            return None
        for index in list(self.json):
            self._close_block(index)
        message = dict(self.message or {})
        message["content"] = [self.blocks[i] for i in sorted(self.blocks)]
        return message
