"""``flowtel mcp``: an MCP server over stdio so coding agents (Claude Code, Codex, Cursor) can
read an app's traces and sessions and log feedback. Needs the ``mcp`` SDK (``flowtel[mcp]``).

Register it with an agent, e.g. ``claude mcp add flowtel -- flowtel mcp`` (add
``--tracking-uri http://host:5000`` or ``--store path.db`` to pick the store).
"""

from __future__ import annotations

import argparse
import functools
import importlib
from collections.abc import Callable
from typing import Any

from flowtel.cli._common import CliError, and_filters, get_trace, open_store, since_ms, trace_summary
from flowtel.cli._sessions import recent_session_ids, session_summary, session_traces
from flowtel.cli._traces import parse_value, search, span_summary

_INSTRUCTIONS = (
    "Traces of an LLM application recorded by flowtel (MLflow Tracing data model). Start with "
    "search_traces (newest first; MLflow filter syntax, e.g. \"status = 'ERROR'\" or "
    "\"tags.team = 'x'\"), then get_trace or search_spans for one trace. Sessions group the turns of a "
    "conversation. Costs are USD from the trace's mlflow.trace.cost; null cost with unpriced_spans > 0 "
    "means a model had no known price."
)
_MAX_RESULTS = 200


class TraceTools:
    """The tools, over the store the command line names (opened on first use)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = open_store(self._args)
        return self._store

    def search_traces(self, filter: str | None = None, since: str | None = None, limit: int = 20,  # noqa: A002
                      order_by: list[str] | None = None) -> dict[str, Any]:
        """Search traces, newest first. Returns one summary per trace (id, name, state, duration,
        tokens, cost in USD, session, tags, request/response previews).

        Args:
            filter: MLflow trace filter, e.g. "status = 'ERROR'", "tags.env = 'prod'",
                "metadata.`mlflow.trace.session` = 's-1'", "span.type = 'CHAT_MODEL'".
            since: Only traces started since: "30m", "2h", "7d" or an ISO date/time.
            limit: Traces at most (1 to 200).
            order_by: e.g. ["execution_time_ms DESC"]; default newest first.
        """
        limit = _bounded(limit)
        clause = f"timestamp_ms >= {since_ms(since)}" if since else None
        traces = search(self.store, self._args, filter_string=and_filters(filter, clause),
                        order_by=order_by, limit=limit)
        return {"traces": [trace_summary(t) for t in traces]}

    def get_trace(self, trace_id: str, max_value_chars: int = 2000) -> dict[str, Any]:
        """One trace with all its spans (type, status, duration, model, tokens, cost, inputs,
        outputs; long values cut to max_value_chars). trace_id may be "latest"."""
        trace = get_trace(self.store, self._args, trace_id)
        summary = trace_summary(trace)
        summary["spans"] = [_clipped(span_summary(s), max_value_chars) for s in trace.data.spans]
        summary["assessments"] = [a.to_dictionary() for a in trace.info.assessments]
        return summary

    def search_spans(self, trace_id: str, name: str | None = None, span_type: str | None = None,
                     status: str | None = None, text: str | None = None,
                     max_value_chars: int = 2000) -> dict[str, Any]:
        """Spans of one trace that match every given condition.

        Args:
            trace_id: The trace ("latest" for the newest).
            name: Substring of the span name (case-insensitive).
            span_type: e.g. LLM, CHAT_MODEL, TOOL, RETRIEVER, AGENT.
            status: OK or ERROR.
            text: Substring of the span's inputs or outputs (case-insensitive).
            max_value_chars: Inputs and outputs are cut to this many characters.
        """
        trace = get_trace(self.store, self._args, trace_id)
        found = []
        for span in trace.data.spans:
            row = span_summary(span)
            if name and name.lower() not in span.name.lower():
                continue
            if span_type and (row["span_type"] or "").upper() != span_type.upper():
                continue
            if status and row["status"] != status.upper():
                continue
            if text and text.lower() not in f"{row['inputs']!r} {row['outputs']!r}".lower():
                continue
            found.append(_clipped(row, max_value_chars))
        return {"trace_id": trace.info.trace_id, "spans": found}

    def search_sessions(self, limit: int = 20, since: str | None = None) -> dict[str, Any]:
        """Most recent sessions (conversations): turns, errors, latency, tokens, cost, users.

        Args:
            limit: Sessions at most (1 to 200).
            since: Only sessions with a turn since: "30m", "2h", "7d" or an ISO date/time.
        """
        start = since_ms(since) if since else None
        ids = recent_session_ids(self.store, self._args, _bounded(limit), start)
        sessions = [session_summary(i, traces) for i in ids if (traces := session_traces(self.store, self._args, i))]
        return {"sessions": sessions}

    def get_session(self, session_id: str) -> dict[str, Any]:
        """One session: its totals and every turn in order (trace summaries with previews)."""
        traces = session_traces(self.store, self._args, session_id)
        if not traces:
            raise CliError(f"no session with id {session_id!r}")
        summary = session_summary(session_id, traces)
        summary["turns_detail"] = [dict(trace_summary(t), turn=i) for i, t in enumerate(traces, start=1)]
        return summary

    def log_feedback(self, trace_id: str, name: str, value: Any, rationale: str | None = None,
                     expectation: bool = False, source_id: str = "coding-agent",
                     span_id: str | None = None) -> dict[str, Any]:
        """Log feedback (or, with expectation=true, an expected answer) on a trace.

        Args:
            trace_id: The trace.
            name: e.g. "correctness", "helpful".
            value: true/false, a number, a string or an object (a JSON string is decoded).
            rationale: Why (feedback only).
            expectation: Log ground truth instead of feedback.
            source_id: Who judged (default "coding-agent"; the source type is LLM_JUDGE).
            span_id: Attach to one span of the trace.
        """
        from flowtel.entities import AssessmentSource, Expectation, Feedback

        decoded = parse_value(value) if isinstance(value, str) else value
        source = AssessmentSource(source_type="LLM_JUDGE", source_id=source_id)
        assessment: Any
        if expectation:
            assessment = Expectation(name=name, value=decoded, source=source, span_id=span_id)
        else:
            assessment = Feedback(name=name, value=decoded, source=source, rationale=rationale, span_id=span_id)
        assessment.trace_id = trace_id
        if self.store.get_trace(trace_id) is None:
            raise CliError(f"no trace with id {trace_id!r}")
        created = self.store.create_assessment(assessment)
        return {"assessment_id": created.assessment_id, "trace_id": trace_id, "name": name, "value": decoded}


def build_server(args: argparse.Namespace) -> Any:
    """The MCP server with flowtel's tools (mcp 2's ``MCPServer``, or ``FastMCP`` of mcp 1)."""
    Server, ToolError = _sdk()
    server = Server(name="flowtel", instructions=_INSTRUCTIONS)
    tools = TraceTools(args)
    for fn in (tools.search_traces, tools.get_trace, tools.search_spans, tools.search_sessions,
               tools.get_session, tools.log_feedback):
        server.add_tool(_reporting(fn, ToolError), name=fn.__name__)
    return server


# mcp 2 renamed FastMCP to MCPServer; both have the same tool API.
_SDKS = (
    ("mcp.server.mcpserver", "MCPServer", "mcp.server.mcpserver.exceptions"),
    ("mcp.server.fastmcp", "FastMCP", "mcp.server.fastmcp.exceptions"),
)


def _sdk() -> tuple[Any, type[Exception]]:
    for server_module, server_class, errors_module in _SDKS:
        try:
            server = getattr(importlib.import_module(server_module), server_class)
            tool_error: type[Exception] = importlib.import_module(errors_module).ToolError
        except (ImportError, AttributeError):
            continue
        return server, tool_error
    raise CliError("`flowtel mcp` needs the MCP SDK: pip install 'flowtel[mcp]'")


def _reporting(fn: Callable[..., Any], tool_error: type[Exception]) -> Callable[..., Any]:
    """``fn`` with expected failures (bad input, missing trace, store errors) raised as the SDK's
    ToolError, whose message reaches the agent; anything else stays a crash the SDK logs."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        from flowtel._config import ConfigError
        from flowtel._exceptions import FlowtelException

        try:
            return fn(*args, **kwargs)
        except (CliError, FlowtelException, ConfigError, ValueError) as exc:
            raise tool_error(" ".join(str(exc).split())) from None

    return call


def serve(args: argparse.Namespace) -> int:
    """Run the server on stdin/stdout until the client disconnects (blocks)."""
    build_server(args).run("stdio")
    return 0


def _bounded(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_RESULTS:
        raise CliError(f"limit must be an integer from 1 to {_MAX_RESULTS}, got {limit!r}")
    return limit


def _clipped(row: dict[str, Any], limit: int) -> dict[str, Any]:
    import json

    for key in ("inputs", "outputs"):
        value = row.get(key)
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if len(text) > limit:
            row[key] = text[:limit] + f"… [{len(text) - limit} more characters]"
    return row
