"""Tracing for Amazon Bedrock through ``boto3``: ``flowtel.bedrock.autolog()``.

Records, like ``mlflow.bedrock.autolog()``, one span per ``bedrock-runtime`` call of ``converse`` /
``converse_stream`` (``CHAT_MODEL``, ``mlflow.message.format="bedrock"``) and ``invoke_model`` /
``invoke_model_with_response_stream`` (``CHAT_MODEL``, ``LLM`` or ``EMBEDDING`` by the request
body; Anthropic, Amazon Titan, Meta Llama and Cohere bodies read). Span name as MLflow's:
``BedrockRuntime.converse``...; inputs: the call's parameters (an ``invoke_model`` JSON ``body``
as its JSON value); outputs: the response without its HTTP metadata (a stream's rebuilt from its
events; an ``invoke_model`` body read, recorded, and handed back to the caller unread).
Attributes: ``mlflow.chat.tools`` (``toolConfig``), ``mlflow.llm.model`` (``modelId``),
``mlflow.llm.provider="bedrock"``, ``mlflow.chat.tokenUsage`` (with cache reads/writes where
reported; streamed ``invoke`` calls from ``amazon-bedrock-invocationMetrics``).

Every ``bedrock-runtime`` client is traced, whether it was created before or after ``autolog()``:
the wrapper sits on botocore's ``BaseClient._make_api_call`` and lets every other service's and
operation's calls through untouched. AWS credentials are never part of a call's parameters, so none
is recorded.

Nothing here imports ``boto3`` until the integration is installed, after the user imported it. The
package: ``_patch`` (the wrapper, the span of a call), ``_parse`` (bodies, usage, tools), ``_stream``
(rebuilding streamed responses), ``_conventions`` (GenAI semantic conventions).
"""

from __future__ import annotations

from flowtel.integrations import _registry

__all__ = ["autolog"]

_NAME = "bedrock"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every Bedrock runtime call (``converse``, ``converse_stream``, ``invoke_model``,
    ``invoke_model_with_response_stream``) of every ``boto3`` ``bedrock-runtime`` client.

    Idempotent; ``disable=True`` restores botocore's original method. Lazy: if ``boto3`` is not
    imported yet, it is patched when it is. Calls made inside a ``@flowtel.trace`` function nest
    under it.

    Args:
        disable: Switch the integration off and restore the original method.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``boto3`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``boto3`` is not installed (``pip install 'flowtel[bedrock]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)
