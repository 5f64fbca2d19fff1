"""Bedrock streams: the response rebuilt from ``converse_stream`` events or from the model chunks of
``invoke_model_with_response_stream`` (Anthropic, Amazon Titan, Meta Llama, Cohere)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flowtel.integrations._shared._values import parse_json_object
from flowtel.integrations.bedrock._parse import INVOCATION_METRICS, json_body

__all__ = ["ConverseAccumulator", "EventIterator", "InvokeAccumulator"]


class EventIterator:
    """botocore's ``EventStream`` as an iterator (it only has ``__iter__``), closing the stream with it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._events: Iterator[Any] = iter(stream)

    def __iter__(self) -> EventIterator:
        return self

    def __next__(self) -> Any:
        return next(self._events)

    def close(self) -> None:
        self.stream.close()


class ConverseAccumulator:
    """Rebuilds a ``converse`` response (message, stop reason, usage, metrics) from its events."""

    __slots__ = ("role", "blocks", "stop_reason", "metadata")

    def __init__(self) -> None:
        self.role = "assistant"
        self.blocks: dict[int, dict[str, Any]] = {}
        self.stop_reason: Any = None
        self.metadata: dict[str, Any] = {}

    def add(self, event: Any) -> bool:
        if not isinstance(event, dict):
            return False
        if "messageStart" in event:
            self.role = event["messageStart"].get("role") or self.role
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if isinstance(tool, dict):
                self._block(start.get("contentBlockIndex", 0)).update(kind="toolUse", tool=dict(tool))
        elif "contentBlockDelta" in event:
            return self._delta(event["contentBlockDelta"])
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.metadata.update(event["metadata"])
        return False

    def _block(self, index: int) -> dict[str, Any]:
        return self.blocks.setdefault(index, {"kind": "text", "parts": []})

    def _delta(self, body: dict[str, Any]) -> bool:
        block = self._block(body.get("contentBlockIndex", 0))
        delta = body.get("delta") or {}
        if "text" in delta:
            block["parts"].append(delta["text"])
        elif "toolUse" in delta:
            block["kind"] = "toolUse"
            block["parts"].append(delta["toolUse"].get("input", ""))
        elif "reasoningContent" in delta:
            block["kind"] = "reasoning"
            block["parts"].append(delta["reasoningContent"].get("text") or "")
        else:
            return False
        return True

    def result(self) -> dict[str, Any] | None:
        if not self.blocks and self.stop_reason is None and not self.metadata:
            return None
        content: list[dict[str, Any]] = []
        for index in sorted(self.blocks):
            block = self.blocks[index]
            if not block["parts"] and "tool" not in block:
                continue  # only deltas this botocore cannot parse (newer block kinds): nothing to show
            text = "".join(block["parts"])
            if block["kind"] == "toolUse":
                content.append({"toolUse": {**block.get("tool", {}), "input": parse_json_object(text)}})
            elif block["kind"] == "reasoning":
                content.append({"reasoningContent": {"reasoningText": {"text": text}}})
            else:
                content.append({"text": text})
        result: dict[str, Any] = {"output": {"message": {"role": self.role, "content": content}},
                                  "stopReason": self.stop_reason}
        result.update(self.metadata)
        return result


_TEXT_KEYS = (("outputText", "titan"), ("generation", "llama"), ("text", "cohere"), ("completion", "text"))


class InvokeAccumulator:
    """Rebuilds an ``invoke_model`` body from ``invoke_model_with_response_stream`` chunks: the
    family's non-streamed shape where it is known, the chunks' text otherwise."""

    __slots__ = ("family", "texts", "last", "message", "blocks", "metrics")

    def __init__(self) -> None:
        self.family: str | None = None
        self.texts: list[str] = []
        self.last: dict[str, Any] = {}
        self.message: dict[str, Any] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.metrics: Any = None

    def add(self, event: Any) -> bool:
        chunk = event.get("chunk") if isinstance(event, dict) else None
        payload = json_body(chunk.get("bytes")) if isinstance(chunk, dict) else None
        if not isinstance(payload, dict):
            return False
        if payload.get(INVOCATION_METRICS) is not None:
            self.metrics = payload[INVOCATION_METRICS]
        self.last = payload
        if isinstance(payload.get("type"), str):
            self.family = "anthropic"
            return self._anthropic(payload)
        for key, family in _TEXT_KEYS:
            if isinstance(payload.get(key), str):
                self.family = self.family or family
                if not payload.get("is_finished"):  # Cohere repeats the whole text at the end
                    self.texts.append(payload[key])
                return bool(payload[key])
        return False

    def _anthropic(self, payload: dict[str, Any]) -> bool:
        kind = payload["type"]
        if kind == "message_start":
            self.message = dict(payload.get("message") or {})
        elif kind == "content_block_start":
            self.blocks[payload.get("index", 0)] = dict(payload.get("content_block") or {"type": "text", "text": ""})
        elif kind == "content_block_delta":
            block = self.blocks.setdefault(payload.get("index", 0), {"type": "text", "text": ""})
            delta = payload.get("delta") or {}
            if "text" in delta:
                block["text"] = block.get("text", "") + delta["text"]
            elif "partial_json" in delta:
                block["partial_json"] = block.get("partial_json", "") + delta["partial_json"]
            elif "thinking" in delta:
                block["thinking"] = block.get("thinking", "") + delta["thinking"]
            return True
        elif kind == "message_delta":
            self.message.update(payload.get("delta") or {})
            usage = self.message.setdefault("usage", {})
            if isinstance(usage, dict):
                usage.update(payload.get("usage") or {})
        return False

    def result(self) -> Any:
        body = self._body()
        if isinstance(body, dict) and self.metrics is not None:
            body[INVOCATION_METRICS] = self.metrics
        return body

    def _body(self) -> Any:
        if self.family == "anthropic":
            content = []
            for index in sorted(self.blocks):
                block = dict(self.blocks[index])
                if "partial_json" in block:
                    block["input"] = parse_json_object(block.pop("partial_json"))
                content.append(block)
            return {**self.message, "content": content}
        if self.family is None:
            return None
        text = "".join(self.texts)
        if self.family == "titan":
            return {"results": [{"outputText": text, "completionReason": self.last.get("completionReason")}]}
        if self.family == "llama":
            return {"generation": text, "stop_reason": self.last.get("stop_reason")}
        if self.family == "cohere":
            return {"text": text, "finish_reason": self.last.get("finish_reason")}
        return {"completion": text}
