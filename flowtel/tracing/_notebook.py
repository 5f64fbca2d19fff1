"""Notebook display: the traces a Jupyter cell produced, shown under the cell (as MLflow does).

:func:`enable_notebook_display` registers an IPython ``post_run_cell`` hook and a runtime
observer: every trace finished while a cell runs is collected (on the thread that ended it) and,
when the cell is done, displayed as the self-contained HTML of
:func:`flowtel.entities._html.traces_to_html` — with a link to ``flowtel ui`` when one is running
on the default data directory. Outside IPython it does nothing.

Also the place that knows where ``flowtel ui`` keeps its data and how to find a running one
(``server.json`` in the data directory), shared with the ``flowtel ui`` command.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtel.entities._html import traces_to_html
from flowtel.tracing import _runtime

if TYPE_CHECKING:
    from flowtel.entities import Trace

__all__ = ["default_ui_dir", "disable_notebook_display", "enable_notebook_display", "running_ui_url", "ui_links"]

_logger = logging.getLogger("flowtel")
MAX_TRACES_PER_CELL = 10
UI_STATE_FILE = "server.json"


def enable_notebook_display(*, max_traces: int = MAX_TRACES_PER_CELL) -> bool:
    """Show the traces each notebook cell produces under the cell. Idempotent.

    Args:
        max_traces: Traces displayed per cell at most: the first ``max_traces`` that finished are
            shown, and a note counts the others.

    Returns:
        ``True`` when running inside IPython (the hook is registered), ``False`` otherwise.
    """
    shell = _ipython()
    if shell is None:
        return False
    _display.max_traces = max(1, int(max_traces))
    if not _display.registered:
        shell.events.register("pre_run_cell", _display.pre_run_cell)
        shell.events.register("post_run_cell", _display.post_run_cell)
        _runtime.hand_off_observers.append(_display.collect)
        _display.registered = True
    return True


def disable_notebook_display() -> None:
    """Undo :func:`enable_notebook_display`. Idempotent."""
    if not _display.registered:
        return
    shell = _ipython()
    if shell is not None:
        for event, fn in (("pre_run_cell", _display.pre_run_cell), ("post_run_cell", _display.post_run_cell)):
            try:
                shell.events.unregister(event, fn)
            except ValueError:
                pass
    if _display.collect in _runtime.hand_off_observers:
        _runtime.hand_off_observers.remove(_display.collect)
    _display.registered = False


class _CellDisplay:
    def __init__(self) -> None:
        self.registered = False
        self.max_traces = MAX_TRACES_PER_CELL
        self._lock = threading.Lock()
        self._pending: list[Any] = []

    def collect(self, pending: Any) -> None:
        with self._lock:
            self._pending.append(pending)

    def pre_run_cell(self, *args: Any) -> None:
        with self._lock:
            self._pending.clear()

    def post_run_cell(self, *args: Any) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            traces: list[Trace] = [p.trace() for p in pending[: self.max_traces]]
            markup = traces_to_html(traces, ui_links=ui_links(traces))
            if len(pending) > self.max_traces:
                markup += f"<div>… {len(pending) - self.max_traces} more traces from this cell not shown</div>"
            from IPython.display import HTML, display

            display(HTML(markup))  # type: ignore[no-untyped-call]  # unannotated in IPython
        except Exception as exc:  # noqa: BLE001 - displaying must never break the user's notebook
            _logger.warning("flowtel: could not display the traces of this cell: %r", exc)


_display = _CellDisplay()


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


# -- where `flowtel ui` lives ------------------------------------------------------------------------
def default_ui_dir() -> Path | None:
    """``<user cache dir>/flowtel/ui`` (``$XDG_CACHE_HOME`` or ``~/.cache``), ``None`` without a home."""
    from flowtel.delivery._spool import default_spool_root

    root = default_spool_root()
    return None if root is None else root.parent / "ui"


def ui_links(traces: list[Trace], data_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Trace id -> its page in the running ``flowtel ui`` (none when no UI runs or the trace's
    experiment was not copied there yet)."""
    state = read_ui_state(data_dir)
    if state is None:
        return {}
    url = str(state.get("url") or "").rstrip("/")
    experiments = state.get("experiments") or {}
    links = {}
    for trace in traces:
        experiment = experiments.get(trace.info.experiment_id or "0")
        if url and experiment is not None:
            links[trace.info.trace_id] = f"{url}/#/experiments/{experiment}/traces?traceId={trace.info.trace_id}"
    return links


def running_ui_url(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """URL of the ``flowtel ui`` serving ``data_dir`` (default: :func:`default_ui_dir`), if it runs."""
    state = read_ui_state(data_dir)
    return None if state is None else str(state.get("url") or "") or None


def read_ui_state(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The ``server.json`` of a running ``flowtel ui`` (its process still alive), else ``None``."""
    directory = Path(data_dir) if data_dir is not None else default_ui_dir()
    if directory is None:
        return None
    try:
        state = json.loads((directory / UI_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _alive(state.get("pid")):
        return None
    return state


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
