"""What every ``flowtel`` command shares: opening the store, one-line errors, formatting,
the table renderer and JSON-lines output."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from flowtel.entities import Trace, TraceMetadataKey

_PREVIEW_CHARS = 80


class CliError(Exception):
    """Bad input or a missing thing: printed as one ``error:`` line, exit status 1."""


# -- the store -----------------------------------------------------------------------------------
def open_store(args: argparse.Namespace) -> Any:
    """The store the options name: an MLflow server (``--tracking-uri`` / ``MLFLOW_TRACKING_URI``)
    or the embedded SQLite store (``--store`` / ``FLOWTEL_STORE_PATH``)."""
    from flowtel.tracing import _runtime

    if getattr(args, "store", None):
        os.environ["FLOWTEL_STORE_PATH"] = args.store
    if getattr(args, "tracking_uri", None):
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        path = os.environ.get("FLOWTEL_STORE_PATH", "flowtel-traces.db")
        if not os.path.exists(path):
            raise CliError(
                f"no traces yet: the store {path!r} does not exist. Run some traced code first "
                "(or pass --store PATH / --tracking-uri URL)."
            )
    return _runtime.get_runtime().store


def experiment_ids(args: argparse.Namespace, store: Any) -> list[str]:
    """``--experiment-id`` values; else every experiment of the embedded store; else the
    experiment of the environment (``MLFLOW_EXPERIMENT_ID`` / ``_NAME``, default ``0``)."""
    explicit = getattr(args, "experiment_ids", None)
    if explicit:
        return list(explicit)
    list_ids = getattr(store, "experiment_ids", None)
    if callable(list_ids):
        return list(list_ids())
    from flowtel.tracing import _runtime

    return [_runtime.get_runtime().experiment_id()]


def get_trace(store: Any, args: argparse.Namespace, trace_id: str) -> Trace:
    """The trace with this id (``latest``: the newest one); raises CliError when there is none."""
    if trace_id == "latest":
        traces, _ = store.search_traces(
            experiment_ids=experiment_ids(args, store), filter_string=None, order_by=None,
            max_results=1, page_token=None, include_spans=False,
        )
        if not traces:
            raise CliError("no traces found.")
        trace_id = traces[0].info.trace_id
    trace = store.get_trace(trace_id)
    if trace is None:
        raise CliError(f"no trace with id {trace_id!r}. `flowtel traces list` shows the ids.")
    return trace  # type: ignore[no-any-return]


# -- parsing -------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_ms(text: str, *, now: float | None = None) -> int:
    """``--since``: a duration back from now (``90s``, ``15m``, ``2h``, ``7d``, ``1w``) or an ISO
    date/time (``2026-01-31``, ``2026-01-31T12:00``; UTC unless it has an offset)."""
    match = _DURATION.match(text.strip().lower())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return int(((now if now is not None else time.time()) - seconds) * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"--since {text!r} is neither a duration (30m, 2h, 7d) nor an ISO date (2026-01-31T12:00)."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def and_filters(*clauses: str | None) -> str | None:
    parts = [c.strip() for c in clauses if c and c.strip()]
    return " AND ".join(f"({p})" if " OR " in p.upper() else p for p in parts) or None


# -- values of a trace ---------------------------------------------------------------------------
def trace_cost(trace: Trace) -> dict[str, float] | None:
    from flowtel.tracing._cost import cost_of

    return cost_of(trace.info.trace_metadata.get(TraceMetadataKey.COST))


def unpriced_spans(trace: Trace) -> int:
    from flowtel.tracing._cost import UNPRICED_SPANS_METADATA

    raw = trace.info.trace_metadata.get(UNPRICED_SPANS_METADATA)
    return int(raw) if raw and raw.isdigit() else 0


def trace_summary(trace: Trace) -> dict[str, Any]:
    """The stable JSON fields of one trace in ``--json`` output (and the MCP server)."""
    info = trace.info
    meta = info.trace_metadata
    return {
        "trace_id": info.trace_id,
        "name": info.tags.get("mlflow.traceName"),
        "state": info.state.value,
        "experiment_id": info.experiment_id,
        "request_time_ms": info.request_time,
        "started": iso_time(info.request_time),
        "duration_ms": info.execution_duration,
        "session_id": meta.get(TraceMetadataKey.TRACE_SESSION),
        "user_id": meta.get(TraceMetadataKey.TRACE_USER),
        "tokens": info.token_usage,
        "cost": trace_cost(trace),
        "unpriced_spans": unpriced_spans(trace),
        "tags": {k: v for k, v in info.tags.items() if not k.startswith("mlflow.")},
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
    }


# -- output --------------------------------------------------------------------------------------
def print_json_lines(objects: Iterable[dict[str, Any]]) -> None:
    for obj in objects:
        print(json.dumps(obj, ensure_ascii=False, default=str, sort_keys=True))


def print_table(rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns two spaces apart; the first row is the header."""
    if not rows:
        return
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


class Progress:
    """``done/total`` on stderr for long operations, only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None = None) -> None:
        self._label = label
        self._total = total
        self._done = 0
        self._shown = sys.stderr.isatty()

    def advance(self, count: int = 1) -> None:
        self._done += count
        if self._shown:
            total = f"/{self._total}" if self._total else ""
            print(f"\r{self._label}: {self._done}{total}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._shown and self._done:
            print(file=sys.stderr)


def preview(value: Any, limit: int = _PREVIEW_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and value == 0:
        return "<1 ms"  # trace durations are whole milliseconds
    if value < 1:
        return f"{value:.2f} ms"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def tokens(usage: dict[str, int] | None) -> str:
    if not usage:
        return "-"
    return str(usage.get("total_tokens", usage.get("input_tokens", 0) + usage.get("output_tokens", 0)))


def usd(cost: dict[str, float] | None, unpriced: int = 0) -> str:
    """``$0.0012``; ``?`` for a trace whose LLM spans could not be priced; ``-`` when none."""
    if cost is None:
        return "?" if unpriced else "-"
    total = cost.get("total_cost", 0.0)
    text = f"${total:.6f}".rstrip("0").rstrip(".") if total else "$0"
    return text + ("+?" if unpriced else "")


def local_time(ms_value: int) -> str:
    return datetime.fromtimestamp(ms_value / 1000).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms_value: int) -> str:
    return datetime.fromtimestamp(ms_value / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
