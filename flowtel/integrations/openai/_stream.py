"""OpenAI streams: the full response rebuilt from a stream's chunks or events."""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._chat_stream import ChatAccumulator
from flowtel.integrations._shared._values import jsonable

__all__ = ["ChatAccumulator", "CompletionAccumulator", "ResponsesAccumulator"]


class CompletionAccumulator:
    """Rebuilds a legacy ``text_completion`` from its chunks."""

    __slots__ = ("envelope", "texts", "finish", "usage")

    def __init__(self) -> None:
        self.envelope: dict[str, Any] = {}
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, Any] = {}
        self.usage: Any = None

    def add(self, chunk: Any) -> bool:
        for key in ("id", "created", "model", "system_fingerprint"):
            value = getattr(chunk, key, None)
            if value is not None:
                self.envelope[key] = value
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        content = False
        for choice in getattr(chunk, "choices", None) or ():
            if choice.text:
                self.texts.setdefault(choice.index, []).append(choice.text)
                content = True
            if choice.finish_reason is not None:
                self.finish[choice.index] = choice.finish_reason
        return content

    def result(self) -> dict[str, Any] | None:
        if not self.envelope:
            return None
        indexes = sorted(set(self.texts) | set(self.finish))
        return {
            **self.envelope,
            "object": "text_completion",
            "choices": [
                {"index": i, "text": "".join(self.texts.get(i, [])), "finish_reason": self.finish.get(i),
                 "logprobs": None}
                for i in indexes
            ],
            "usage": jsonable(self.usage),
        }


_RESPONSES_FINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_RESPONSES_CONTENT = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta", "response.refusal.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta",
})


class ResponsesAccumulator:
    """The Responses API's final ``response`` event, or a partial response from the items seen."""

    __slots__ = ("base", "final", "items")

    def __init__(self) -> None:
        self.base: Any = None
        self.final: Any = None
        self.items: list[Any] = []

    def add(self, event: Any) -> bool:
        kind = getattr(event, "type", None)
        if kind in _RESPONSES_FINAL:
            self.final = event.response
        elif kind in ("response.created", "response.in_progress"):
            self.base = event.response
        elif kind == "response.output_item.done":
            self.items.append(event.item)
        return kind in _RESPONSES_CONTENT

    def result(self) -> Any:
        if self.final is not None:
            return self.final
        if self.base is None:
            return None
        partial = jsonable(self.base)
        if isinstance(partial, dict):
            partial["output"] = [jsonable(item) for item in self.items]
        return partial
