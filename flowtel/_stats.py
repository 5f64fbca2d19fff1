from __future__ import annotations

from typing import Any

from flowtel.tracing import _runtime
from flowtel.tracing._errors import internal_error_counts


def get_delivery_stats() -> dict[str, Any]:
    """What happened to traces in this process, per destination.

    Returns a dict with ``destinations`` (each: queued, in_flight, sent, retried, spooled,
    dropped by reason), ``open_traces`` (in progress), ``dropped_open_traces`` (not recorded
    because too many traces were open at once) and ``internal_errors`` (by place).
    """
    runtime = _runtime.peek_runtime()
    destinations = []
    open_traces = dropped_open = 0
    if runtime is not None:
        for stats in runtime.delivery_stats():
            destinations.append({
                "destination": stats.destination,
                "queued": stats.queued,
                "in_flight": stats.in_flight,
                "sent": stats.sent,
                "retried": stats.retried,
                "spooled": stats.spooled,
                "dropped": dict(stats.dropped),
            })
        open_traces = runtime.assembler.open_trace_count()
        dropped_open = runtime.assembler.dropped_open_traces
    return {
        "destinations": destinations,
        "open_traces": open_traces,
        "dropped_open_traces": dropped_open,
        "internal_errors": internal_error_counts(),
    }
