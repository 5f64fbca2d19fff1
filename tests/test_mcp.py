"""``flowtel mcp``: the real MCP client library talks to the server in a subprocess over stdio,
against the embedded store and a real MLflow server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest

from tests.test_cli import ROOT, Backend, backend, local_backend, mlflow_backend  # noqa: F401 - fixtures

mcp = pytest.importorskip("mcp")
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

TOOLS = {"search_traces", "get_trace", "search_spans", "search_sessions", "get_session", "log_feedback"}


def _params(backend: Backend) -> Any:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "FLOWTEL_STORE_PATH", "MLFLOW_EXPERIMENT_ID")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(backend.env)
    return StdioServerParameters(command=sys.executable, args=["-m", "flowtel", "mcp"], env=env, cwd=str(ROOT))


async def _session_run(backend: Backend, calls: list[tuple[str, dict[str, Any]]]) -> tuple[set[str], list[Any]]:
    async with stdio_client(_params(backend)) as streams:
        read, write = streams[0], streams[1]
        async with mcp.ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            results = [await session.call_tool(name, arguments) for name, arguments in calls]
    return tools, results


def _data(result: Any) -> Any:
    assert not _is_error(result), result.content
    return json.loads(result.content[0].text)


def _is_error(result: Any) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))


def test_agent_searches_reads_and_assesses_traces(backend: Backend) -> None:
    ids = backend.trace_ids
    calls = [
        ("search_traces", {"limit": 10}),
        ("search_traces", {"filter": "status = 'ERROR'", "since": "1d"}),
        ("get_trace", {"trace_id": ids["first"]}),
        ("search_spans", {"trace_id": ids["first"], "span_type": "CHAT_MODEL"}),
        ("search_spans", {"trace_id": ids["first"], "text": "FIRST?"}),
        ("search_sessions", {}),
        ("get_session", {"session_id": "s-1"}),
        ("log_feedback", {"trace_id": ids["alone"], "name": "correct", "value": "false", "rationale": "wrong city"}),
        ("get_trace", {"trace_id": ids["alone"]}),
        ("get_trace", {"trace_id": "tr-00000000000000000000000000000000"}),
        ("search_traces", {"limit": 0}),
    ]
    tools, results = asyncio.run(_session_run(backend, calls))
    assert TOOLS <= tools

    listed = _data(results[0])["traces"]
    assert {t["trace_id"] for t in listed} == set(ids.values())
    assert [t["trace_id"] for t in _data(results[1])["traces"]] == [ids["failed"]]

    trace = _data(results[2])
    assert trace["cost"]["total_cost"] == pytest.approx(0.003)
    assert {s["name"] for s in trace["spans"]} == {"turn", "chat"}
    (llm,) = _data(results[3])["spans"]
    assert llm["name"] == "chat" and llm["cost"]["total_cost"] == pytest.approx(0.003)
    assert {s["name"] for s in _data(results[4])["spans"]} == {"turn", "chat"}

    (session,) = _data(results[5])["sessions"]
    assert session["session_id"] == "s-1" and session["turns"] == 2
    turns = _data(results[6])["turns_detail"]
    assert [t["trace_id"] for t in turns] == [ids["first"], ids["second"]]

    logged = _data(results[7])
    assert logged["value"] is False
    (assessment,) = _data(results[8])["assessments"]
    assert assessment["assessment_id"] == logged["assessment_id"]
    assert assessment["feedback"]["value"] is False and assessment["rationale"] == "wrong city"

    assert _is_error(results[9]) and "no trace with id" in results[9].content[0].text
    assert _is_error(results[10]) and "limit must be" in results[10].content[0].text
