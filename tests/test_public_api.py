"""The public surface is curated: a sorted ``__all__``, every name importable, and the mlflow
tracing names a user of ``mlflow.trace`` expects."""

from __future__ import annotations

import subprocess
import sys

import flowtel

MLFLOW_TRACING_NAMES = {
    "trace", "start_span", "start_span_no_context", "get_current_active_span", "get_active_trace_id",
    "get_last_active_trace_id", "update_current_trace", "set_trace_tag", "delete_trace_tag",
    "get_trace", "search_traces", "add_trace", "log_trace", "flush_trace_async_logging",
    "set_tracking_uri", "get_tracking_uri", "is_tracking_uri_set", "LiveSpan", "NoOpSpan",
    "SpanType", "Trace", "TraceInfo", "TraceData",
}


def test_all_is_sorted_and_importable() -> None:
    names = [n for n in flowtel.__all__ if n != "__version__"]
    assert names == sorted(names, key=lambda n: (n[0].islower(), n))
    for name in flowtel.__all__:
        assert getattr(flowtel, name) is not None, name


def test_mlflow_tracing_names_are_there() -> None:
    assert MLFLOW_TRACING_NAMES <= set(flowtel.__all__)


def test_import_flowtel_imports_no_optional_library() -> None:
    code = (
        "import sys, flowtel\n"
        "heavy = [m for m in ('openai', 'anthropic', 'langchain_core', 'pandas', 'numpy', 'mlflow', 'pydantic')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
