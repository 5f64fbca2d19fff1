"""Helpers for the delivery suite: route traces to one exporter, make traces, check arrivals."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import flowtel
from flowtel.delivery._pipeline import DeliveryPipeline
from flowtel.exporters import TraceExporter
from flowtel.tracing import _runtime
from tests._servers.otlp_receivers import OtlpReceiver

REPO_ROOT = Path(__file__).resolve().parents[2]
SPANS_PER_TRACE = 10


def route_to(exporter: TraceExporter) -> DeliveryPipeline:
    """Make ``exporter`` the only destination (with the environment's delivery options)."""
    _runtime.set_destinations([_runtime.Destination(exporter=exporter)])
    pipeline = _runtime.get_runtime().destinations[0].pipeline
    assert pipeline is not None
    return pipeline


def make_traces(n: int, *, name: str = "request", spans: int = SPANS_PER_TRACE) -> list[str]:
    """Record ``n`` traces of ``spans`` spans each (a root and its children); their ids."""
    ids = []
    for i in range(n):
        with flowtel.start_span(name) as root:
            root.set_inputs({"i": i})
            for j in range(spans - 1):
                with flowtel.start_span(f"step-{j}") as child:
                    child.set_outputs(j)
        ids.append(root.trace_id)
    return ids


def otlp_id(trace_id: str) -> str:
    """flowtel ``tr-<hex>`` id -> OTLP hex trace id."""
    return trace_id.removeprefix("tr-")


def assert_received_exactly(receiver: OtlpReceiver, trace_ids: list[str], spans: int = SPANS_PER_TRACE) -> None:
    """Each trace arrived, whole, exactly once; nothing else arrived."""
    received = receiver.traces()
    expected = {otlp_id(t) for t in trace_ids}
    assert set(received) == expected, (
        f"missing {len(expected - set(received))}, unexpected {len(set(received) - expected)}"
    )
    for trace_id, trace_spans in received.items():
        span_ids = Counter(s.span_id for s in trace_spans)
        duplicated = [s for s, n in span_ids.items() if n > 1]
        assert not duplicated, f"trace {trace_id} arrived more than once"
        assert len(trace_spans) == spans, f"trace {trace_id} arrived with {len(trace_spans)} of {spans} spans"


def stats() -> dict[str, Any]:
    """``get_delivery_stats()`` of the single destination."""
    (destination,) = flowtel.get_delivery_stats()["destinations"]
    return destination


def run_python(code: str, *, env: dict[str, str], timeout: float = 60.0, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT, env=child_env(env), capture_output=True, text=True, timeout=timeout, check=False, **kwargs,
    )


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWTEL_", "MLFLOW_", "OTEL_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env
