"""Sessions: traces grouped by their ``mlflow.trace.session`` metadata (MLflow's search_sessions)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from flowtel._exceptions import InvalidParameterError
from flowtel.entities import TraceMetadataKey
from flowtel.tracing import _runtime
from flowtel.tracing._engine import READ_FLUSH_TIMEOUT_S, trace_store
from flowtel.tracing._fluent import search_traces

if TYPE_CHECKING:
    from flowtel.entities import Trace

__all__ = ["Session", "search_sessions"]

_PAGE_SIZE = 100
_MAX_THREADS = 8


class Session:
    """Traces sharing one session id, oldest first. Iterable and indexable like a list.

    Args:
        traces: The traces of the session.
    """

    def __init__(self, traces: list[Trace]) -> None:
        self._traces = traces

    @property
    def id(self) -> str | None:
        """The session id (``mlflow.trace.session`` metadata)."""
        if not self._traces:
            return None
        return self._traces[0].info.trace_metadata.get(TraceMetadataKey.TRACE_SESSION)

    @property
    def traces(self) -> list[Trace]:
        return self._traces

    def __iter__(self) -> Iterator[Trace]:
        return iter(self._traces)

    def __len__(self) -> int:
        return len(self._traces)

    def __getitem__(self, index: int) -> Trace:
        return self._traces[index]

    def __repr__(self) -> str:
        return f"Session(id={self.id!r})"


def search_sessions(
    max_results: int = 100,
    run_id: str | None = None,
    model_id: str | None = None,
    include_spans: bool = True,
    locations: list[str] | None = None,
) -> list[Session]:
    """Complete sessions, most recent first (by their newest trace).

    Session ids are collected from the newest traces until ``max_results`` distinct ones are
    found; then every trace of each session is fetched (oldest first). Blocks on the store.

    Args:
        max_results: Sessions at most (default 100).
        run_id: Only traces linked to this run.
        model_id: Only traces of this model.
        include_spans: Load span data (False is faster).
        locations: Experiment ids to search (default: the active experiment).

    Raises:
        FlowtelException: the store failed or a parameter is invalid.
    """
    if max_results is None or max_results <= 0:
        raise InvalidParameterError(f"max_results must be a positive integer, got {max_results!r}.")
    if locations is not None and not isinstance(locations, list):
        raise InvalidParameterError(f"locations must be a list of experiment ids, got {locations!r}.")
    session_ids = _recent_session_ids(max_results, run_id, model_id, locations)
    if not session_ids:
        return []

    def fetch(session_id: str) -> list[Trace]:
        traces: list[Trace] = search_traces(
            filter_string=f"metadata.`{TraceMetadataKey.TRACE_SESSION}` = '{_quote(session_id)}'",
            order_by=["timestamp_ms ASC"], include_spans=include_spans, run_id=run_id,
            return_type="list", model_id=model_id, locations=locations, flush=False,
        )
        return traces

    with ThreadPoolExecutor(min(len(session_ids), _MAX_THREADS), thread_name_prefix="flowtel-sessions") as pool:
        return [Session(traces) for traces in pool.map(fetch, session_ids) if traces]


def _recent_session_ids(max_results: int, run_id: str | None, model_id: str | None,
                        locations: list[str] | None) -> list[str]:
    """Distinct session ids of the newest traces, newest first, at most ``max_results``; pages
    through trace infos only until enough are found."""
    runtime = _runtime.get_runtime()
    runtime.flush(READ_FLUSH_TIMEOUT_S)
    clauses = [f"metadata.`{key}` = '{_quote(value)}'" for key, value in (
        (TraceMetadataKey.SOURCE_RUN, run_id), (TraceMetadataKey.MODEL_ID, model_id)) if value]
    seen: dict[str, None] = {}
    token: str | None = None
    while len(seen) < max_results:
        page, token = trace_store().search_traces(
            experiment_ids=list(locations or []) or [runtime.experiment_id()],
            filter_string=" AND ".join(clauses) or None, order_by=["timestamp_ms DESC"],
            max_results=_PAGE_SIZE, page_token=token, include_spans=False,
        )
        for trace in page:
            session_id = trace.info.trace_metadata.get(TraceMetadataKey.TRACE_SESSION)
            if session_id and session_id not in seen and len(seen) < max_results:
                seen[session_id] = None
        if not token:
            break
    return list(seen)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")
