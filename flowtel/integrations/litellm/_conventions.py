"""LiteLLM spans (``mlflow.message.format="litellm"``) in GenAI semantic conventions.

LiteLLM speaks the OpenAI chat shape whatever the provider: ``messages`` in, ``choices`` out, read
by ``flowtel.integrations._shared._conventions``.
"""

from __future__ import annotations

from typing import Any

from flowtel.integrations._shared._conventions import (
    CHAT,
    chat_finish_reasons,
    function_tool_definition,
    looks_like_chat,
)
from flowtel.tracing._providers import GenAiConventions, MessageConverter

__all__ = ["CONVENTIONS"]


def _converter(inputs: Any, outputs: Any, claimed: bool) -> MessageConverter | None:
    # unclaimed chat-shaped spans are the generic reading's; claimed ones are read the same way
    return CHAT if claimed and looks_like_chat(inputs, outputs) else None


CONVENTIONS = GenAiConventions(_converter, chat_finish_reasons, function_tool_definition)
