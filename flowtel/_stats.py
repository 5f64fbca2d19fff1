from __future__ import annotations

from typing import Any

from flowtel import _attachments
from flowtel._errors import internal_error_counts
from flowtel.tracing import _runtime


def get_delivery_stats() -> dict[str, Any]:
    """What happened to traces in this process, per destination.

    Thread-safe, no I/O. Returns a dict with:

    * ``destinations``, one dict each: ``queued`` (in memory, waiting) and ``queued_bytes``
      (estimated), ``in_flight`` (being exported or waiting for a retry), ``sent`` (delivered,
      including ``replayed`` ones from the spool), ``retried`` (re-sends after a retryable
      failure), ``spooled`` (written to the on-disk spool), ``spool_pending`` (waiting there
      now), ``dropped`` (reason -> count), ``state`` (``ok``, ``retrying``, ``unreachable``,
      ``stopped``) and ``spool_dir``;
    * ``sampled_out`` (not kept by sampling: by design, not a loss);
    * ``open_traces`` (in progress), ``dropped_open_traces`` (not recorded because too many
      traces were open at once), ``timed_out_traces`` (closed as ERROR by the trace timeout),
      ``late_spans`` (spans of a timed-out trace that arrived after it was closed);
    * ``dropped_attachments`` (media taken out of inputs/outputs but dropped because too many
      bytes of them waited for their traces to finish);
    * ``internal_errors`` (by place).
    """
    runtime = _runtime.peek_runtime()
    destinations = []
    open_traces = dropped_open = timed_out = late = sampled_out = 0
    if runtime is not None:
        for stats in runtime.delivery_stats():
            destinations.append({
                "destination": stats.destination,
                "queued": stats.queued,
                "queued_bytes": stats.queued_bytes,
                "in_flight": stats.in_flight,
                "sent": stats.sent,
                "retried": stats.retried,
                "spooled": stats.spooled,
                "replayed": stats.replayed,
                "spool_pending": stats.spool_pending,
                "dropped": dict(stats.dropped),
                "state": stats.state,
                "spool_dir": stats.spool_dir,
                "worker_restarts": stats.worker_restarts,
            })
        open_traces = runtime.assembler.open_trace_count()
        dropped_open = runtime.assembler.dropped_open_traces
        late = runtime.assembler.late_spans
        sampled_out = runtime.sampled_out
        timed_out = runtime.timeouts.closed if runtime.timeouts is not None else 0
    return {
        "destinations": destinations,
        "open_traces": open_traces,
        "dropped_open_traces": dropped_open,
        "timed_out_traces": timed_out,
        "late_spans": late,
        "sampled_out": sampled_out,
        "dropped_attachments": _attachments.dropped_count(),
        "internal_errors": internal_error_counts(),
    }
