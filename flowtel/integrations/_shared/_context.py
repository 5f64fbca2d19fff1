"""Tracing state as integrations see it, and "one LLM call, one LLM span".

An integration that opens an LLM span marks the context (:func:`llm_call_scope`); a provider
integration called inside it records nothing (:func:`llm_call_active`). LangChain's chat-model span
therefore suppresses the OpenAI span of the same request, and its tokens are counted once.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from flowtel.entities import LiveSpan, NoOpSpan
from flowtel.tracing import _engine

__all__ = ["encode", "llm_call_active", "llm_call_reset", "llm_call_scope", "tracing_on"]


# -- tracing state -------------------------------------------------------------------------------
def encode(key: str, value: Any) -> str:
    """The JSON text flowtel records for ``value`` under ``key`` (its encoder and capture policy)."""
    return _engine.encode(key, value)


def tracing_on() -> bool:
    """Whether a span started now would be recorded (globally enabled and not scoped off)."""
    return _engine.tracing_on()


# -- one LLM call, one LLM span ------------------------------------------------------------------
_LLM_CALL: contextvars.ContextVar[LiveSpan | NoOpSpan | None] = contextvars.ContextVar(
    "flowtel_llm_call", default=None
)


def llm_call_active() -> bool:
    """True inside an LLM span opened by an integration that is still running.

    A provider SDK call made there is the same LLM call seen one layer down, so it is not
    recorded again. A span that already ended (a context that leaked past its end) does not count.
    """
    span = _LLM_CALL.get()
    return span is not None and cast(Any, span._span).is_recording()


def llm_call_scope(span: LiveSpan | NoOpSpan) -> contextvars.Token[LiveSpan | NoOpSpan | None]:
    """Mark the current context as inside the LLM call ``span``; undo with :func:`llm_call_reset`."""
    return _LLM_CALL.set(span)


def llm_call_reset(token: contextvars.Token[LiveSpan | NoOpSpan | None]) -> None:
    try:
        _LLM_CALL.reset(token)
    except ValueError:  # a token from another context (callbacks split across threads/tasks);
        pass  # the liveness check in llm_call_active makes a stale mark harmless
