"""LiteLLM streams: ``CustomStreamWrapper`` yields OpenAI-shaped ``ModelResponseStream`` chunks,
rebuilt into a ``chat.completion`` by the shared accumulator."""

from __future__ import annotations

from flowtel.integrations._shared._chat_stream import ChatAccumulator

__all__ = ["ChatAccumulator"]
