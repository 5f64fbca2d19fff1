"""Tracing for LangChain and LangGraph: ``flowtel.langchain.autolog()``.

A callback handler (:class:`FlowtelLangchainTracer`) is added to every LangChain run through
LangChain's own callback-manager configuration hook (``register_configure_hook``), so chains,
chat models, LLMs, tools, retrievers and agents -- and LangGraph graphs, which run on the same
callback system -- become one nested span tree, as with ``mlflow.langchain.autolog()``. Nothing is
monkey-patched; switching off removes the hook.

With the OpenAI or Anthropic integration also on, the provider request a chat model makes is not
recorded a second time: the chat-model span is the LLM call, and its tokens are counted once.

Nothing here imports ``langchain_core`` until the integration is installed, after the user
imported it. The package: ``_patch`` (the configure hook), ``_tracer`` (the callback handler),
``_parse`` (usage, tools), ``_conventions`` (GenAI semantic conventions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowtel.integrations import _registry

if TYPE_CHECKING:
    from flowtel.integrations.langchain._tracer import FlowtelLangchainTracer

__all__ = ["FlowtelLangchainTracer", "autolog"]

_NAME = "langchain"


def autolog(disable: bool = False, *, log_traces: bool = True, silent: bool = False) -> None:
    """Trace every LangChain run (and LangGraph graph) as a nested span tree.

    Idempotent; ``disable=True`` removes flowtel from LangChain's callback configuration. Lazy: if
    ``langchain_core`` is not imported yet, the handler is installed when it is. Runs started inside
    a ``@flowtel.trace`` function nest under it; runs started outside start their own trace.

    Args:
        disable: Switch the integration off.
        log_traces: MLflow-compatible; ``False`` is the same as ``disable=True``.
        silent: Do not warn when the installed ``langchain-core`` version is not supported.

    Raises:
        IntegrationNotInstalledError: ``langchain-core`` is not installed
            (``pip install 'flowtel[langchain]'``).
    """
    _registry.set_enabled(_NAME, not disable and log_traces, silent=silent)


def __getattr__(name: str) -> Any:
    if name == "FlowtelLangchainTracer":
        from flowtel.integrations.langchain._tracer import FlowtelLangchainTracer

        return FlowtelLangchainTracer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
