"""Gemini streams: the ``GenerateContentResponse`` rebuilt from its chunks.

Each chunk carries the next parts of each candidate: text pieces (thoughts marked ``thought``) are
joined, function calls kept whole; the last chunk's finish reason and usage win.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations.gemini._parse import plain

__all__ = ["GeminiAccumulator"]

_ENVELOPE = ("model_version", "response_id", "create_time", "prompt_feedback", "usage_metadata")


class GeminiAccumulator:
    """Rebuilds a ``GenerateContentResponse`` (as JSON data) from streamed chunks."""

    __slots__ = ("envelope", "candidates")

    def __init__(self) -> None:
        self.envelope: dict[str, Any] = {}
        self.candidates: dict[int, dict[str, Any]] = {}

    def add(self, chunk: Any) -> bool:
        data = plain(chunk)
        if not isinstance(data, dict):
            return False
        for key in _ENVELOPE:
            if data.get(key) is not None:
                self.envelope[key] = data[key]
        content = False
        for position, candidate in enumerate(data.get("candidates") or ()):
            if isinstance(candidate, dict):
                content = self._add_candidate(candidate.get("index", position), candidate) or content
        return content

    def _add_candidate(self, index: int, candidate: dict[str, Any]) -> bool:
        state = self.candidates.setdefault(index, {"content": {"role": "model", "parts": []}, "index": index})
        for key, value in candidate.items():
            if key not in ("content", "index") and value is not None:
                state[key] = value
        chunk_content = candidate.get("content") or {}
        if chunk_content.get("role"):
            state["content"]["role"] = chunk_content["role"]
        parts: list[dict[str, Any]] = state["content"]["parts"]
        content = False
        for part in chunk_content.get("parts") or ():
            if not isinstance(part, dict):
                continue
            last = parts[-1] if parts else None
            text = part.get("text")
            if isinstance(text, str) and last is not None and set(part) <= {"text", "thought"} \
                    and set(last) <= {"text", "thought"} and isinstance(last.get("text"), str) \
                    and bool(last.get("thought")) == bool(part.get("thought")):
                last["text"] += text
            else:
                parts.append(dict(part))
            content = content or bool(text) or "function_call" in part
        return content

    def result(self) -> dict[str, Any] | None:
        if not self.envelope and not self.candidates:
            return None
        return {"candidates": [self.candidates[i] for i in sorted(self.candidates)], **self.envelope}
