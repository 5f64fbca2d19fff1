"""Tracing for the ``google-genai`` SDK (Gemini): ``flowtel.gemini.autolog()``.

Records, like ``mlflow.gemini.autolog()``, one span per call of ``client.models.generate_content``
/ ``generate_content_stream`` (``CHAT_MODEL``) and ``embed_content`` (``EMBEDDING``), and their
``client.aio`` twins. Chats (``client.chats.create(...).send_message`` / ``send_message_stream``)
go through these methods and are recorded by them, one span per turn with the whole history as
``contents``. Span name as MLflow's: ``Models.generate_content``, ``AsyncModels.generate_content_stream``...;
inputs: ``model``, ``contents``, ``config`` (credentials redacted); outputs: the
``GenerateContentResponse`` (a stream's rebuilt from its chunks: text, thoughts, function calls).
Attributes: ``mlflow.message.format="gemini"``, ``mlflow.chat.tools`` (function declarations and
Python functions), ``mlflow.llm.model``, ``mlflow.llm.provider`` (``gemini``, or ``vertex_ai`` for
Vertex AI clients), ``mlflow.chat.tokenUsage`` (cached and thinking tokens where reported).

With automatic function calling (Python functions as tools) the SDK runs the tool loop inside one
``generate_content`` call: it is one span, the tools' own spans (``@flowtel.trace``) nest under it,
and its usage is the final response's.

Nothing here imports ``google.genai`` until the integration is installed, after the user imported
it. The package: ``_patch`` (wrapped methods, the span of a call), ``_parse`` (usage, tools,
responses as JSON), ``_stream`` (rebuilding streamed responses), ``_conventions`` (GenAI semantic
conventions).
"""

from __future__ import annotations

from flowtel.integrations import _registry

__all__ = ["autolog"]

_NAME = "gemini"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every ``google-genai`` generate/stream/embed call, sync and async (``client.aio``).

    Idempotent; ``disable=True`` restores the SDK's original methods. Lazy: if ``google.genai`` is
    not imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function nest
    under it.

    Args:
        disable: Switch the integration off and restore the original methods.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``google-genai`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``google-genai`` is not installed (``pip install 'flowtel[gemini]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)
