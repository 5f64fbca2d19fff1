"""``flowtel sessions ...``: conversations (traces sharing ``mlflow.trace.session``)."""

from __future__ import annotations

import argparse
from typing import Any

from flowtel.cli._common import (
    CliError,
    Progress,
    and_filters,
    experiment_ids,
    iso_time,
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
from flowtel.entities import Trace, TraceMetadataKey

_PAGE_SIZE = 100
_SESSION_KEY = TraceMetadataKey.TRACE_SESSION


def add_session_commands(sub: Any) -> None:
    sessions = sub.add_parser("sessions", help="list conversations, show one turn by turn")
    sessions_sub = sessions.add_subparsers(dest="action", metavar="ACTION")

    listing = sessions_sub.add_parser("list", help="most recent sessions first")
    listing.add_argument("--limit", type=positive_int, default=20, help="sessions at most (default 20)")
    listing.add_argument("--since", help="only sessions with a turn since: 30m, 2h, 7d or an ISO date/time")
    listing.add_argument("--experiment-id", action="append", dest="experiment_ids")
    listing.add_argument("--json", action="store_true", help="one JSON object per line (stable fields)")
    listing.set_defaults(handler=list_sessions)

    show = sessions_sub.add_parser("show", help="a session's turns in order, with tokens, cost and latency")
    show.add_argument("session_id")
    show.add_argument("--experiment-id", action="append", dest="experiment_ids")
    show.add_argument("--json", action="store_true", help="the session and its turns as one JSON object")
    show.set_defaults(handler=show_session)


# -- reading -------------------------------------------------------------------------------------
def recent_session_ids(store: Any, args: argparse.Namespace, limit: int, since: int | None = None) -> list[str]:
    """Distinct session ids of the newest traces (started at or after ``since`` ms), newest first."""
    seen: dict[str, None] = {}
    token: str | None = None
    filter_string = and_filters(f"timestamp_ms >= {since}" if since is not None else None)
    experiments = experiment_ids(args, store)
    while len(seen) < limit:
        page, token = store.search_traces(
            experiment_ids=experiments, filter_string=filter_string, order_by=["timestamp_ms DESC"],
            max_results=_PAGE_SIZE, page_token=token, include_spans=False,
        )
        for trace in page:
            session_id = trace.info.trace_metadata.get(_SESSION_KEY)
            if session_id and session_id not in seen and len(seen) < limit:
                seen[session_id] = None
        if not token or not page:
            break
    return list(seen)


def session_traces(store: Any, args: argparse.Namespace, session_id: str) -> list[Trace]:
    """Every trace of the session, oldest first."""
    quoted = session_id.replace("\\", "\\\\").replace("'", "\\'")
    traces: list[Trace] = []
    token: str | None = None
    experiments = experiment_ids(args, store)
    while True:
        page, token = store.search_traces(
            experiment_ids=experiments, filter_string=f"metadata.`{_SESSION_KEY}` = '{quoted}'",
            order_by=["timestamp_ms ASC"], max_results=_PAGE_SIZE, page_token=token, include_spans=False,
        )
        traces.extend(page)
        if not token or not page:
            return traces


def session_summary(session_id: str, traces: list[Trace]) -> dict[str, Any]:
    """The stable JSON fields of one session."""
    usage: dict[str, int] = {}
    cost: dict[str, float] | None = None
    unpriced = 0
    for trace in traces:
        for key, value in (trace.info.token_usage or {}).items():
            usage[key] = usage.get(key, 0) + int(value)
        one = trace_cost(trace)
        if one is not None:
            cost = cost or {"input_cost": 0.0, "output_cost": 0.0, "total_cost": 0.0}
            for key in cost:
                cost[key] += float(one.get(key, 0.0))
        unpriced += unpriced_spans(trace)
    first = min(t.info.request_time for t in traces)
    last = max(t.info.request_time + (t.info.execution_duration or 0) for t in traces)
    users = {t.info.trace_metadata.get(TraceMetadataKey.TRACE_USER) for t in traces} - {None}
    return {
        "session_id": session_id,
        "turns": len(traces),
        "first_started": iso_time(first),
        "last_ended": iso_time(last),
        "first_request_time_ms": first,
        "latency_ms": sum(t.info.execution_duration or 0 for t in traces),
        "tokens": usage or None,
        "cost": cost,
        "unpriced_spans": unpriced,
        "user_ids": sorted(u for u in users if u),
        "errors": sum(1 for t in traces if t.info.state.value == "ERROR"),
    }


# -- commands ------------------------------------------------------------------------------------
def list_sessions(args: argparse.Namespace) -> int:
    since = since_ms(args.since) if args.since else None
    store = open_store(args)
    ids = recent_session_ids(store, args, args.limit, since)
    progress = Progress("loading sessions", len(ids))
    summaries = []
    try:
        for session_id in ids:
            traces = session_traces(store, args, session_id)
            if traces:
                summaries.append(session_summary(session_id, traces))
            progress.advance()
    finally:
        progress.close()
    if args.json:
        print_json_lines(summaries)
        return 0
    if not summaries:
        print("No sessions found. Sessions are traces with the mlflow.trace.session metadata "
              "(flowtel.update_current_trace(metadata={'mlflow.trace.session': ...})).")
        return 0
    rows: list[tuple[str, ...]] = [("SESSION", "TURNS", "ERRORS", "LATENCY", "TOKENS", "COST", "USER", "STARTED")]
    for s in summaries:
        rows.append((
            s["session_id"], str(s["turns"]), str(s["errors"]), ms(s["latency_ms"]), tokens(s["tokens"]),
            usd(s["cost"], s["unpriced_spans"]), ",".join(s["user_ids"]) or "-",
            local_time(s["first_request_time_ms"]),
        ))
    print_table(rows)
    return 0


def show_session(args: argparse.Namespace) -> int:
    store = open_store(args)
    traces = session_traces(store, args, args.session_id)
    if not traces:
        raise CliError(f"no session with id {args.session_id!r}. `flowtel sessions list` shows the ids.")
    if args.json:
        summary = session_summary(args.session_id, traces)
        summary["turns_detail"] = [
            dict(trace_summary(t), turn=i) for i, t in enumerate(traces, start=1)
        ]
        print_json_lines([summary])
        return 0
    summary = session_summary(args.session_id, traces)
    print(f"Session {args.session_id}  {summary['turns']} turn(s)   latency: {ms(summary['latency_ms'])}   "
          f"tokens: {tokens(summary['tokens'])}   cost: {usd(summary['cost'], summary['unpriced_spans'])}")
    print()
    rows: list[tuple[str, ...]] = [("#", "TRACE ID", "STATE", "LATENCY", "TOKENS", "COST", "STARTED", "REQUEST", "RESPONSE")]
    for i, t in enumerate(traces, start=1):
        rows.append((
            str(i), t.info.trace_id, t.info.state.value, ms(t.info.execution_duration),
            tokens(t.info.token_usage), usd(trace_cost(t), unpriced_spans(t)), local_time(t.info.request_time),
            preview(t.info.request_preview or "", 40), preview(t.info.response_preview or "", 40),
        ))
    print_table(rows)
    return 0
