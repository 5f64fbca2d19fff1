"""Installing flowtel's callback handler into every LangChain run (``register_configure_hook``).

Nothing is monkey-patched; :func:`uninstall` removes the hook. Nothing here imports
``langchain_core`` until :func:`install` runs, after the user imported it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowtel.integrations.langchain._tracer import FlowtelLangchainTracer

__all__ = ["install", "uninstall"]


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


def install() -> None:
    from langchain_core.tracers.context import register_configure_hook

    from flowtel.integrations.langchain._tracer import FlowtelLangchainTracer

    global _registered
    with _lock:
        if not _registered:
            register_configure_hook(_switch, inheritable=True)  # type: ignore[arg-type]
            _registered = True
        _switch.handler = FlowtelLangchainTracer()


def uninstall() -> None:
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
