"""Request-scoped tracing control (``flowtel.tracing.context``), carried in a ContextVar so it
follows the current request across ``await`` and into tasks, and never leaks into other requests."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flowtel.entities import TraceMetadataKey


@dataclass(frozen=True)
class Scope:
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


EMPTY = Scope()
current: contextvars.ContextVar[Scope] = contextvars.ContextVar("flowtel_scope", default=EMPTY)


@contextmanager
def context(
    metadata: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    enabled: bool | None = None,
    session_id: str | list[str] | None = None,
    user: str | None = None,
) -> Iterator[None]:
    """Scope tracing settings to the code inside the ``with`` block (this request only).

    Nested blocks add to (and override) the outer one. Traces started inside get the tags and
    metadata; ``enabled=False`` records nothing inside the block, for this request only. Safe
    across threads and asyncio tasks: a task or a thread started with a copied context sees
    the settings at the time it was created. Same parameters (and order) as
    ``mlflow.tracing.context``; a list ``session_id`` is a hierarchical session (MLflow 3.18),
    recorded as a compact JSON array.
    """
    outer = current.get()
    merged_meta = dict(outer.metadata)
    merged_meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    if session_id is not None:
        merged_meta[TraceMetadataKey.TRACE_SESSION] = (
            json.dumps([str(s) for s in session_id], separators=(",", ":"), ensure_ascii=False)
            if isinstance(session_id, (list, tuple)) else str(session_id)
        )
    if user is not None:
        merged_meta[TraceMetadataKey.TRACE_USER] = str(user)
    merged_tags = dict(outer.tags)
    merged_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    scope = Scope(
        enabled=outer.enabled if enabled is None else bool(enabled),
        tags=merged_tags,
        metadata=merged_meta,
    )
    token = current.set(scope)
    try:
        yield
    finally:
        current.reset(token)
