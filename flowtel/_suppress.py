"""Instrumentation suppression: flowtel's own HTTP/gRPC calls are never traced.

OpenTelemetry instrumentations (requests, urllib3, httpx, grpc, ...) skip work while the context
carries the suppression key. Both spellings are set: the SDK's ``_SUPPRESS_INSTRUMENTATION_KEY``
and the plain string key that older contrib instrumentations read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context

__all__ = ["instrumentation_suppressed", "suppress_instrumentation"]

_SUPPRESS_KEYS: tuple[str, ...] = tuple(
    key
    for key in (getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None), "suppress_instrumentation")
    if key is not None
)


def suppress_instrumentation() -> Token[Context]:
    """Attach a context that suppresses instrumentation; the token for ``context.detach``.

    Also usable as a thread-pool ``initializer`` (the token is then simply dropped: the
    worker thread's context stays suppressed for its lifetime).
    """
    ctx = otel_context.get_current()
    for key in _SUPPRESS_KEYS:
        ctx = otel_context.set_value(key, True, ctx)
    return otel_context.attach(ctx)


@contextlib.contextmanager
def instrumentation_suppressed() -> Iterator[None]:
    """Run the block with instrumentation suppressed (restored afterwards)."""
    token = suppress_instrumentation()
    try:
        yield
    finally:
        otel_context.detach(token)
