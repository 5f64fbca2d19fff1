"""``flowtel`` command line: look at traces in the embedded store (or an MLflow server).

    flowtel traces list [--limit N] [--filter "status = 'ERROR'"]
    flowtel traces show TRACE_ID
    flowtel traces export TRACE_ID
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowtel.cli._push import add_push_commands
from flowtel.cli._ui import add_ui_commands
from flowtel.entities import Span, Trace

if TYPE_CHECKING:
    from flowtel.delivery._store import TraceStore

_PREVIEW_CHARS = 80


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI prints one clear line, not a traceback
        from flowtel._config import ConfigError
        from flowtel._exceptions import FlowtelException

        if isinstance(exc, (FlowtelException, ConfigError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowtel", description="Inspect flowtel traces.")
    parser.add_argument(
        "--store", help="path of the embedded store (default: $FLOWTEL_STORE_PATH or ./flowtel-traces.db)"
    )
    parser.add_argument("--tracking-uri", help="read from an MLflow server instead (http://host:port)")
    sub = parser.add_subparsers(dest="command")
    traces = sub.add_parser("traces", help="list, show and export traces")
    traces_sub = traces.add_subparsers(dest="action")

    listing = traces_sub.add_parser("list", help="newest traces first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--filter", dest="filter_string", help="MLflow filter, e.g. \"status = 'ERROR'\"")
    listing.add_argument("--experiment-id", action="append", dest="experiment_ids")
    listing.set_defaults(handler=_list)

    show = traces_sub.add_parser("show", help="the span tree of one trace")
    show.add_argument("trace_id", help="a trace id, or 'latest' for the newest trace")
    show.set_defaults(handler=_show)

    export = traces_sub.add_parser("export", help="one trace as JSON (Trace.to_dict)")
    export.add_argument("trace_id", help="a trace id, or 'latest' for the newest trace")
    export.set_defaults(handler=_export)
    add_push_commands(traces_sub)
    try:
        from flowtel.cli._spool import add_spool_commands
    except ImportError:
        pass
    else:
        add_spool_commands(sub)
    add_ui_commands(sub)
    return parser


def _configure(args: argparse.Namespace) -> TraceStore | None:
    from flowtel.tracing import _runtime

    if args.store:
        os.environ["FLOWTEL_STORE_PATH"] = args.store
    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    if not args.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        path = os.environ.get("FLOWTEL_STORE_PATH", "flowtel-traces.db")
        if not os.path.exists(path):
            print(f"No traces yet: the store {path!r} does not exist. Run some traced code first "
                  "(or pass --store PATH).", file=sys.stderr)
            return None
    store = _runtime.get_runtime().store
    return store


def _experiments(args: argparse.Namespace) -> list[str] | None:
    return getattr(args, "experiment_ids", None)


def _list(args: argparse.Namespace) -> int:
    store = _configure(args)
    if store is None:
        return 1
    experiments = _experiments(args) or _all_experiments(store)
    traces, _ = store.search_traces(
        experiment_ids=experiments, filter_string=args.filter_string, order_by=None,
        max_results=max(1, args.limit), page_token=None, include_spans=False,
    )
    if not traces:
        print("No traces found." + (f" (filter: {args.filter_string})" if args.filter_string else ""))
        return 0
    rows = [("TRACE ID", "NAME", "STATE", "DURATION", "TOKENS", "STARTED")]
    for t in traces:
        rows.append((
            t.info.trace_id,
            t.info.tags.get("mlflow.traceName", ""),
            t.info.state.value,
            _ms(t.info.execution_duration),
            _tokens(t.info.token_usage),
            _time(t.info.request_time),
        ))
    _print_table(rows)
    return 0


def _all_experiments(store: TraceStore) -> list[str] | None:
    list_ids = getattr(store, "experiment_ids", None)
    return list(list_ids()) if callable(list_ids) else None


def _show(args: argparse.Namespace) -> int:
    store = _configure(args)
    if store is None:
        return 1
    trace = _lookup(store, args.trace_id)
    if trace is None:
        return 1
    print(render_trace(trace))
    return 0


def _export(args: argparse.Namespace) -> int:
    store = _configure(args)
    if store is None:
        return 1
    trace = _lookup(store, args.trace_id)
    if trace is None:
        return 1
    print(json.dumps(trace.to_dict(), indent=2, ensure_ascii=False))
    return 0


def _lookup(store: TraceStore, trace_id: str) -> Trace | None:
    if trace_id == "latest":
        traces, _ = store.search_traces(
            experiment_ids=_all_experiments(store), filter_string=None, order_by=None,
            max_results=1, page_token=None, include_spans=False,
        )
        if not traces:
            print("No traces found.", file=sys.stderr)
            return None
        trace_id = traces[0].info.trace_id
    trace = store.get_trace(trace_id)
    if trace is None:
        print(f"error: no trace with id {trace_id!r}. `flowtel traces list` shows the ids.", file=sys.stderr)
    return trace


# -- rendering -----------------------------------------------------------------------------------
def render_trace(trace: Trace) -> str:
    """The trace as a header and an indented span tree with types, durations, status and IO."""
    info = trace.info
    lines = [
        f"Trace {info.trace_id}  {info.tags.get('mlflow.traceName', '')}",
        (
            f"  state: {info.state.value}   duration: {_ms(info.execution_duration)}   "
            f"started: {_time(info.request_time)}   tokens: {_tokens(info.token_usage)}"
        ),
    ]
    user_tags = {k: v for k, v in info.tags.items() if not k.startswith("mlflow.")}
    if user_tags:
        lines.append(f"  tags: {user_tags}")
    for key in ("mlflow.trace.session", "mlflow.trace.user"):
        if key in info.trace_metadata:
            lines.append(f"  {key.rsplit('.', 1)[-1]}: {info.trace_metadata[key]}")
    lines.append("")
    children: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in trace.data.spans}
    for span in trace.data.spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time_ns)
    for root in children.get(None, []):
        _render_span(root, children, "", True, lines, is_root=True)
    return "\n".join(lines)


def _render_span(span: Span, children: dict[str | None, list[Span]], prefix: str, last: bool,
                 lines: list[str], is_root: bool = False) -> None:
    branch = "" if is_root else ("└─ " if last else "├─ ")
    duration: float | None = None
    if span.end_time_ns is not None:
        duration = (span.end_time_ns - span.start_time_ns) / 1_000_000
    status = span.status.status_code.value
    mark = "✗" if status == "ERROR" else "✓"
    lines.append(f"{prefix}{branch}{mark} {span.name} [{span.span_type or 'UNKNOWN'}] {_ms(duration)}")
    inner = prefix + ("" if is_root else ("   " if last else "│  "))
    detail = inner + ("   " if not children.get(span.span_id) else "│  ")
    if span.inputs is not None:
        lines.append(f"{detail}in:  {_preview(span.inputs)}")
    if span.outputs is not None:
        lines.append(f"{detail}out: {_preview(span.outputs)}")
    if status == "ERROR":
        lines.append(f"{detail}error: {span.status.description}")
    kids = children.get(span.span_id, [])
    for i, child in enumerate(kids):
        _render_span(child, children, inner, i == len(kids) - 1, lines)


def _preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 1] + "…"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and value == 0:
        return "<1 ms"  # trace durations are whole milliseconds
    if value < 1:
        return f"{value:.2f} ms"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _tokens(usage: dict[str, int] | None) -> str:
    if not usage:
        return "-"
    return str(usage.get("total_tokens", usage.get("input_tokens", 0) + usage.get("output_tokens", 0)))


def _time(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    raise SystemExit(main())
