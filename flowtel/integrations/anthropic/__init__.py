"""Tracing for the ``anthropic`` SDK: ``flowtel.anthropic.autolog()``.

Records one ``CHAT_MODEL`` span per call of ``messages.create`` (also with ``stream=True``),
``messages.stream()`` (the ``MessageStreamManager`` context manager: ``text_stream``,
``get_final_message()``...) and ``messages.parse``, on ``client.messages`` and
``client.beta.messages``, sync and async. Span name as MLflow's: ``Messages.create``,
``AsyncMessages.create``, ``Messages.stream``...; inputs: the keyword arguments with credentials
redacted; outputs: the ``Message`` (a stream's is rebuilt from its events: text, ``tool_use`` input
JSON, thinking, usage). Attributes: ``mlflow.message.format="anthropic"``, ``mlflow.chat.tools``,
``mlflow.llm.model``, ``mlflow.llm.provider="anthropic"``, ``mlflow.chat.tokenUsage`` (input
including cache reads/writes, like MLflow).

Nothing here imports ``anthropic`` until the integration is installed, after the user imported it.
The package: ``_patch`` (wrapped methods, the span of a call, ``messages.stream()``), ``_parse``
(usage, tools), ``_stream`` (rebuilding a streamed ``Message``), ``_conventions`` (GenAI semantic
conventions).
"""

from __future__ import annotations

from flowtel.integrations import _registry

__all__ = ["autolog"]

_NAME = "anthropic"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every Anthropic Messages API call: create (streaming or not), stream(), parse.

    Idempotent; ``disable=True`` restores the SDK's original methods. Lazy: if ``anthropic`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function (or a
    LangChain run) nest under it; a call made inside a LangChain chat-model span is that span's
    request and is not recorded a second time.

    Args:
        disable: Switch the integration off and restore the original methods.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``anthropic`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``anthropic`` is not installed
            (``pip install 'flowtel[anthropic]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)
