"""Tracing for LangChain and LangGraph: ``flowtel.langchain.autolog()``.

A callback handler (:class:`FlowtelLangchainTracer`) is added to every LangChain run through
LangChain's own callback-manager configuration hook (``register_configure_hook``), so chains,
chat models, LLMs, tools, retrievers and agents -- and LangGraph graphs, which run on the same
callback system -- become one nested span tree, as with ``mlflow.langchain.autolog()``. Nothing is
monkey-patched; switching off removes the hook.

With the OpenAI or Anthropic integration also on, the provider request a chat model makes is not
recorded a second time: the chat-model span is the LLM call, and its tokens are counted once.

Nothing here imports ``langchain_core`` until the integration is installed, after the user
imported it.
"""

from __future__ import annotations

import threading
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


# -- install --------------------------------------------------------------------------------------
class _HandlerSwitch:
    """Stands where LangChain's configure hook expects a ``ContextVar``: it only calls ``get()``.

    Returns the process-wide handler while the integration is on, so every thread and task sees it
    (a real ``ContextVar`` would only reach contexts copied after it was set).
    """

    __slots__ = ("handler",)

    def __init__(self) -> None:
        self.handler: FlowtelLangchainTracer | None = None

    def get(self, default: Any = None) -> FlowtelLangchainTracer | None:
        return self.handler if self.handler is not None else default


_switch = _HandlerSwitch()
_lock = threading.Lock()
_registered = False


def _install() -> None:
    from langchain_core.tracers.context import register_configure_hook

    from flowtel.integrations.langchain._tracer import FlowtelLangchainTracer

    global _registered
    with _lock:
        if not _registered:
            register_configure_hook(_switch, inheritable=True)  # type: ignore[arg-type]
            _registered = True
        _switch.handler = FlowtelLangchainTracer()


def _uninstall() -> None:
    global _registered
    with _lock:
        _switch.handler = None
        hooks, entry = _hooks(), _hook_entry()
        if hooks is not None and entry is not None:
            hooks.remove(entry)  # leave LangChain's configuration as we found it
            _registered = False


def _hooks() -> list[Any] | None:
    try:
        from langchain_core.tracers import context
    except ImportError:
        return None
    hooks = getattr(context, "_configure_hooks", None)
    return hooks if isinstance(hooks, list) else None


def _hook_entry() -> Any:
    for entry in _hooks() or ():
        if isinstance(entry, tuple) and entry and entry[0] is _switch:
            return entry
    return None
