"""``flowtel traces ...``: list, show, export, delete, tag, untag, feedback."""

from __future__ import annotations

import argparse
import json
from typing import Any

from flowtel.cli._common import (
    CliError,
    Progress,
    and_filters,
    experiment_ids,
    get_trace,
    local_time,
    ms,
    open_store,
    positive_int,
    preview,
    print_json_lines,
    print_table,
    since_ms,
    tokens,
    trace_cost,
    trace_summary,
    unpriced_spans,
    usd,
)
from flowtel.entities import Span, Trace, TraceMetadataKey

_PAGE_SIZE = 100


def add_trace_commands(sub: Any) -> Any:
    """Add ``flowtel traces ...``; returns its sub-parser collection (``push`` adds itself there)."""
    traces = sub.add_parser("traces", help="list, show, export, delete, tag and assess traces")
    traces_sub = traces.add_subparsers(dest="action", metavar="ACTION")

    listing = traces_sub.add_parser("list", help="newest traces first")
    listing.add_argument("--limit", type=positive_int, default=20, help="traces at most (default 20)")
    listing.add_argument("--filter", dest="filter_string", help="MLflow filter, e.g. \"status = 'ERROR'\"")
    listing.add_argument("--since", help="only traces started since: 30m, 2h, 7d or an ISO date/time")
    listing.add_argument(
        "--order-by", action="append", dest="order_by",
        help="e.g. 'execution_time_ms DESC' (repeatable; default newest first)",
    )
    listing.add_argument("--experiment-id", action="append", dest="experiment_ids")
    listing.add_argument("--json", action="store_true", help="one JSON object per line (stable fields)")
    listing.set_defaults(handler=list_traces)

    show = traces_sub.add_parser("show", help="the span tree of one trace, with tokens and cost")
    show.add_argument("trace_id", help="a trace id, or 'latest' for the newest trace")
    show.add_argument("--experiment-id", action="append", dest="experiment_ids")
    show.add_argument("--json", action="store_true", help="the trace summary and its spans as one JSON object")
    show.set_defaults(handler=show_trace)

    export = traces_sub.add_parser("export", help="one trace as JSON (Trace.to_dict)")
    export.add_argument("trace_id", help="a trace id, or 'latest' for the newest trace")
    export.add_argument("--experiment-id", action="append", dest="experiment_ids")
    export.set_defaults(handler=export_trace)

    delete = traces_sub.add_parser("delete", help="delete traces by id, or all older than --before")
    delete.add_argument("trace_ids", nargs="*", metavar="TRACE_ID")
    delete.add_argument("--before", help="delete every trace started before: 30d, 2026-01-31, ...")
    delete.add_argument("--experiment-id", action="append", dest="experiment_ids")
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(handler=delete_traces)

    tag = traces_sub.add_parser("tag", help="set tags on a trace: KEY=VALUE ...")
    tag.add_argument("trace_id")
    tag.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    tag.set_defaults(handler=tag_trace)

    untag = traces_sub.add_parser("untag", help="remove tags from a trace")
    untag.add_argument("trace_id")
    untag.add_argument("keys", nargs="+", metavar="KEY")
    untag.set_defaults(handler=untag_trace)

    feedback = traces_sub.add_parser("feedback", help="log feedback (or --expectation) on a trace")
    feedback.add_argument("trace_id")
    feedback.add_argument("--name", default="feedback", help="assessment name (default 'feedback')")
    feedback.add_argument(
        "--value", required=True,
        help="JSON value (true, 0.8, \"good\", {...}); text that is not JSON is taken as a string",
    )
    feedback.add_argument("--rationale")
    feedback.add_argument("--source", default="HUMAN", help="HUMAN (default), LLM_JUDGE or CODE")
    feedback.add_argument("--source-id", default="flowtel-cli")
    feedback.add_argument("--span-id")
    feedback.add_argument("--expectation", action="store_true", help="log an expectation (ground truth)")
    feedback.add_argument("--json", action="store_true")
    feedback.set_defaults(handler=log_feedback)
    return traces_sub


# -- list ----------------------------------------------------------------------------------------
def search(store: Any, args: argparse.Namespace, *, filter_string: str | None, order_by: list[str] | None,
           limit: int, include_spans: bool = False) -> list[Trace]:
    """Up to ``limit`` traces, paging through the store."""
    found: list[Trace] = []
    token: str | None = None
    experiments = experiment_ids(args, store)
    progress = Progress("reading traces", limit) if limit > _PAGE_SIZE else None
    try:
        while len(found) < limit:
            page, token = store.search_traces(
                experiment_ids=experiments, filter_string=filter_string, order_by=order_by,
                max_results=min(_PAGE_SIZE, limit - len(found)), page_token=token, include_spans=include_spans,
            )
            found.extend(page)
            if progress is not None:
                progress.advance(len(page))
            if not token or not page:
                break
    finally:
        if progress is not None:
            progress.close()
    return found


def list_traces(args: argparse.Namespace) -> int:
    since = f"timestamp_ms >= {since_ms(args.since)}" if args.since else None
    filter_string = and_filters(args.filter_string, since)
    store = open_store(args)
    traces = search(store, args, filter_string=filter_string, order_by=args.order_by, limit=args.limit)
    if args.json:
        print_json_lines(trace_summary(t) for t in traces)
        return 0
    if not traces:
        print("No traces found." + (f" (filter: {filter_string})" if filter_string else ""))
        return 0
    rows: list[tuple[str, ...]] = [("TRACE ID", "NAME", "STATE", "DURATION", "TOKENS", "COST", "SESSION", "STARTED")]
    for t in traces:
        rows.append((
            t.info.trace_id,
            t.info.tags.get("mlflow.traceName", ""),
            t.info.state.value,
            ms(t.info.execution_duration),
            tokens(t.info.token_usage),
            usd(trace_cost(t), unpriced_spans(t)),
            t.info.trace_metadata.get(TraceMetadataKey.TRACE_SESSION, "-"),
            local_time(t.info.request_time),
        ))
    print_table(rows)
    return 0


# -- show / export -------------------------------------------------------------------------------
def show_trace(args: argparse.Namespace) -> int:
    trace = get_trace(open_store(args), args, args.trace_id)
    if args.json:
        summary = trace_summary(trace)
        summary["spans"] = [span_summary(s) for s in trace.data.spans]
        print_json_lines([summary])
        return 0
    print(render_trace(trace))
    return 0


def export_trace(args: argparse.Namespace) -> int:
    trace = get_trace(open_store(args), args, args.trace_id)
    print(json.dumps(trace.to_dict(), indent=2, ensure_ascii=False))
    return 0


def span_summary(span: Span) -> dict[str, Any]:
    from flowtel.tracing._cost import UNPRICED_ATTRIBUTE

    duration = None if span.end_time_ns is None else (span.end_time_ns - span.start_time_ns) / 1e6
    return {
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "span_type": span.span_type,
        "status": span.status.status_code.value,
        "start_time_ns": span.start_time_ns,
        "duration_ms": duration,
        "model": span.get_attribute("mlflow.llm.model"),
        "tokens": span.get_attribute("mlflow.chat.tokenUsage"),
        "cost": span.get_attribute("mlflow.llm.cost"),
        "unpriced": span.get_attribute(UNPRICED_ATTRIBUTE),
        "inputs": span.inputs,
        "outputs": span.outputs,
    }


def render_trace(trace: Trace) -> str:
    """The trace as a header and an indented span tree with types, durations, tokens, cost and IO."""
    info = trace.info
    lines = [
        f"Trace {info.trace_id}  {info.tags.get('mlflow.traceName', '')}",
        (
            f"  state: {info.state.value}   duration: {ms(info.execution_duration)}   "
            f"started: {local_time(info.request_time)}   tokens: {tokens(info.token_usage)}   "
            f"cost: {usd(trace_cost(trace), unpriced_spans(trace))}"
        ),
    ]
    user_tags = {k: v for k, v in info.tags.items() if not k.startswith("mlflow.")}
    if user_tags:
        lines.append(f"  tags: {user_tags}")
    for key in (TraceMetadataKey.TRACE_SESSION, TraceMetadataKey.TRACE_USER):
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
    from flowtel.tracing._cost import UNPRICED_ATTRIBUTE

    branch = "" if is_root else ("└─ " if last else "├─ ")
    duration: float | None = None
    if span.end_time_ns is not None:
        duration = (span.end_time_ns - span.start_time_ns) / 1_000_000
    status = span.status.status_code.value
    mark = "✗" if status == "ERROR" else "✓"
    extra = ""
    usage = span.get_attribute("mlflow.chat.tokenUsage")
    if isinstance(usage, dict):
        extra += f"  {tokens(usage)} tok"
    cost = span.get_attribute("mlflow.llm.cost")
    if isinstance(cost, dict):
        extra += f"  {usd(cost)}"
    elif span.get_attribute(UNPRICED_ATTRIBUTE):
        extra += "  unpriced"
    lines.append(f"{prefix}{branch}{mark} {span.name} [{span.span_type or 'UNKNOWN'}] {ms(duration)}{extra}")
    inner = prefix + ("" if is_root else ("   " if last else "│  "))
    detail = inner + ("   " if not children.get(span.span_id) else "│  ")
    if span.inputs is not None:
        lines.append(f"{detail}in:  {preview(span.inputs)}")
    if span.outputs is not None:
        lines.append(f"{detail}out: {preview(span.outputs)}")
    if status == "ERROR":
        lines.append(f"{detail}error: {span.status.description}")
    kids = children.get(span.span_id, [])
    for i, child in enumerate(kids):
        _render_span(child, children, inner, i == len(kids) - 1, lines)


# -- delete --------------------------------------------------------------------------------------
def delete_traces(args: argparse.Namespace) -> int:
    if bool(args.trace_ids) == bool(args.before):
        raise CliError("give trace ids or --before, not both (and not neither).")
    cutoff = since_ms(args.before) if args.before else None
    store = open_store(args)
    experiments = experiment_ids(args, store)
    progress = Progress("deleting", len(experiments))
    deleted = 0
    try:
        if cutoff is not None:
            for experiment in experiments:
                deleted += store.delete_traces(experiment, max_timestamp_millis=cutoff)
                progress.advance()
        else:
            by_experiment = _experiments_of(store, args.trace_ids)
            for experiment, ids in by_experiment.items():
                deleted += store.delete_traces(experiment, trace_ids=ids)
                progress.advance()
    finally:
        progress.close()
    if args.json:
        print_json_lines([{"deleted": deleted}])
    else:
        print(f"Deleted {deleted} trace(s).")
    return 0


def _experiments_of(store: Any, trace_ids: list[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for trace_id in trace_ids:
        info = _trace_info(store, trace_id)
        grouped.setdefault(str(info.experiment_id), []).append(trace_id)
    return grouped


def _trace_info(store: Any, trace_id: str) -> Any:
    get_info = getattr(store, "get_trace_info", None)
    trace = None
    if callable(get_info):
        info = get_info(trace_id)
        if info is not None:
            return info
    else:
        trace = store.get_trace(trace_id)
    if trace is None:
        raise CliError(f"no trace with id {trace_id!r}. `flowtel traces list` shows the ids.")
    return trace.info


# -- tags ----------------------------------------------------------------------------------------
def tag_trace(args: argparse.Namespace) -> int:
    pairs = []
    for item in args.tags:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"tag {item!r} is not KEY=VALUE.")
        pairs.append((key.strip(), value))
    store = open_store(args)
    _trace_info(store, args.trace_id)
    for key, value in pairs:
        store.set_trace_tag(args.trace_id, key, value)
    print(f"Tagged {args.trace_id}: " + ", ".join(f"{k}={v}" for k, v in pairs))
    return 0


def untag_trace(args: argparse.Namespace) -> int:
    store = open_store(args)
    _trace_info(store, args.trace_id)
    for key in args.keys:
        store.delete_trace_tag(args.trace_id, key)
    print(f"Removed from {args.trace_id}: " + ", ".join(args.keys))
    return 0


# -- assessments ---------------------------------------------------------------------------------
def log_feedback(args: argparse.Namespace) -> int:
    from flowtel.entities import AssessmentSource, Expectation, Feedback

    value = parse_value(args.value)
    try:
        source = AssessmentSource(source_type=args.source, source_id=args.source_id)
    except Exception as exc:  # noqa: BLE001 - any invalid source is the user's input: one line
        raise CliError(f"--source {args.source!r}: {exc}") from None
    if args.expectation:
        assessment: Any = Expectation(name=args.name, value=value, source=source, span_id=args.span_id)
    else:
        assessment = Feedback(name=args.name, value=value, source=source, rationale=args.rationale,
                              span_id=args.span_id)
    assessment.trace_id = args.trace_id
    store = open_store(args)
    _trace_info(store, args.trace_id)
    created = store.create_assessment(assessment)
    if args.json:
        print_json_lines([{"assessment_id": created.assessment_id, "trace_id": args.trace_id,
                           "name": args.name, "value": value}])
    else:
        kind = "expectation" if args.expectation else "feedback"
        print(f"Logged {kind} {args.name}={json.dumps(value)} on {args.trace_id} ({created.assessment_id}).")
    return 0


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
