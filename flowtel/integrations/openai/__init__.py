"""Tracing for the ``openai`` SDK: ``flowtel.openai.autolog()``.

Records, like ``mlflow.openai.autolog()``, one span per call of

* ``chat.completions.create`` / ``parse`` (``CHAT_MODEL``; ``.stream()`` goes through ``create``),
* ``responses.create`` / ``parse`` (``CHAT_MODEL``; ``.stream()`` goes through ``create``),
* ``completions.create`` (legacy, ``LLM``) and ``embeddings.create`` (``EMBEDDING``),

sync and async, streaming or not. Span name: the resource class (``Completions``, ``Responses``,
``Embeddings``, ``AsyncCompletions``...). Inputs: the call's keyword arguments with credentials
redacted; each one except ``messages``/``input`` is also its own attribute (as MLflow does).
Outputs: the response (a stream's is rebuilt from its chunks). Attributes:
``mlflow.message.format="openai"``, ``mlflow.chat.tools``, ``mlflow.llm.model`` (the response's
model), ``mlflow.llm.provider`` (from the client's ``base_url``: ``groq``, ``ollama``, ``deepseek``,
``mistral``, ``together_ai``, ``fireworks_ai``, ``openrouter``, ``xai``, ``azure``, ``vllm``,
``lm_studio``..., else ``openai``; see :func:`register_provider`), ``mlflow.chat.tokenUsage``.

The OpenAI Agents SDK (``openai-agents``) is traced by the same switch, as in MLflow: one trace per
``Runner.run`` / ``run_sync`` / ``run_streamed`` with ``AGENT`` spans per agent, the model calls as
the ``CHAT_MODEL`` spans above (one per call), ``TOOL`` spans for function tools, handoff and
guardrail spans; nested under the caller's ``@flowtel.trace`` span (``_agents``).

Nothing here imports ``openai`` until the integration is installed, after the user imported it.
The package: ``_patch`` (wrapped methods, the span of a call), ``_parse`` (usage, tools), ``_stream``
(rebuilding streamed responses), ``_conventions`` (GenAI semantic conventions).
"""

from __future__ import annotations

from flowtel.integrations import _registry
from flowtel.integrations.openai._base_url import register_provider, reset_providers

__all__ = ["autolog", "register_provider", "reset_providers"]

_NAME = "openai"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every OpenAI SDK call (chat completions, Responses, completions, embeddings).

    Idempotent; ``disable=True`` restores the SDK's original methods. Lazy: if ``openai`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function (or a
    LangChain run) nest under it; a call made inside a LangChain chat-model span is that span's
    request and is not recorded a second time.

    Args:
        disable: Switch the integration off and restore the original methods.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``openai`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``openai`` is not installed (``pip install 'flowtel[openai]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)
