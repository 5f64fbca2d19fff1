"""Tracing for ``litellm``: ``flowtel.litellm.autolog()``.

Records one span per call of ``litellm.completion`` / ``acompletion`` (``CHAT_MODEL``) and
``litellm.embedding`` / ``aembedding`` (``EMBEDDING``), streaming or not. Span name as MLflow's
LiteLLM logger: ``litellm-completion``, ``litellm-acompletion``, ``litellm-embedding``...; inputs:
the call's arguments with credentials (``api_key``, headers) redacted; outputs: the OpenAI-shaped
``ModelResponse`` (a stream's is rebuilt from its chunks). Attributes:
``mlflow.message.format="litellm"``, ``mlflow.chat.tools``, ``mlflow.llm.model``,
``mlflow.llm.provider`` (LiteLLM's provider: ``openai``, ``anthropic``, ``groq``...),
``mlflow.chat.tokenUsage`` (with cache and reasoning tokens where reported).

LiteLLM calls a provider's SDK underneath for some providers (the ``openai`` SDK for OpenAI, Azure
and OpenAI-compatible services): with ``flowtel.openai.autolog()`` on too, that is the same LLM
call seen one layer down and is not recorded again, so the call is one span, its tokens counted once.

Nothing here imports ``litellm`` until the integration is installed, after the user imported it.
The functions are wrapped where users call them, on the ``litellm`` module: a reference taken with
``from litellm import completion`` before ``autolog()`` is not traced. The package: ``_patch``
(wrapped functions, the span of a call), ``_parse`` (usage, tools, provider), ``_conventions``
(GenAI semantic conventions); streamed chunks are rebuilt by the shared OpenAI-shaped accumulator.
"""

from __future__ import annotations

from flowtel.integrations import _registry

__all__ = ["autolog"]

_NAME = "litellm"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every LiteLLM ``completion`` / ``acompletion`` / ``embedding`` / ``aembedding`` call.

    Idempotent; ``disable=True`` restores the original functions. Lazy: if ``litellm`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function nest
    under it.

    Args:
        disable: Switch the integration off and restore the original functions.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``litellm`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``litellm`` is not installed (``pip install 'flowtel[litellm]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)
