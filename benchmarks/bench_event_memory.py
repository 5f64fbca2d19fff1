"""RSS growth while a destination is stalled and traces carry large streamed-chunk events.

The queue's byte budget (FLOWTEL_MAX_QUEUED_BYTES) must bound real memory: traces past it are
dropped and counted, not held. Prints the RSS growth against the budget.

    python benchmarks/bench_event_memory.py [--traces 80] [--event-mb 1] [--budget-mb 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
from collections.abc import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=80)
    parser.add_argument("--event-mb", type=float, default=1.0)
    parser.add_argument("--budget-mb", type=float, default=2.0)
    args = parser.parse_args()
    os.environ["FLOWTEL_MAX_QUEUED_BYTES"] = str(int(args.budget_mb * 1e6))
    os.environ["FLOWTEL_SPOOL_ENABLED"] = "false"

    import flowtel
    from flowtel.delivery._exporter import ExportResult, TraceExporter
    from flowtel.entities import Trace
    from flowtel.tracing import _runtime

    release = threading.Event()

    class Stalled(TraceExporter):
        name = "stalled"

        def export(self, traces: Sequence[Trace]) -> ExportResult:
            release.wait()
            return ExportResult()

    _runtime.set_destinations([_runtime.Destination(exporter=Stalled())])
    chunk = "x" * int(args.event_mb * 1e6)
    gc.collect()
    before = rss_mb()
    for i in range(args.traces):
        with flowtel.start_span(f"stream-{i}") as span:
            span.add_event(flowtel.SpanEvent("mlflow.chunk.item", attributes={"mlflow.chunk.value": chunk + str(i)}))
    gc.collect()
    grown = rss_mb() - before
    stats = flowtel.get_delivery_stats()["destinations"][0]
    release.set()
    flowtel.flush(30)
    print(f"traces={args.traces} event={args.event_mb} MB budget={args.budget_mb} MB: "
          f"RSS grew {grown:.1f} MB; queued {stats['queued']} + in flight {stats['in_flight']}, "
          f"dropped {stats['dropped']}")


if __name__ == "__main__":
    main()
