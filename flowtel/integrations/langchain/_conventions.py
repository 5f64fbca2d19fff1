"""LangChain spans (``mlflow.message.format="langchain"``) in GenAI semantic conventions.

Chat-model and LLM spans record their response as MLflow's standard chat shape (``choices``), read
by ``flowtel.integrations._shared._conventions``; their inputs (message lists, prompts) stay as
MLflow records them.
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
    del claimed  # LangChain's spans have no shape of their own: chat-shaped or not read at all
    return CHAT if looks_like_chat(inputs, outputs) else None


CONVENTIONS = GenAiConventions(_converter, chat_finish_reasons, function_tool_definition)
