"""The statements that read and write the store's tables, each run inside the caller's
transaction (see :class:`flowtel.exporters.local._connections.ConnectionPool`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from flowtel.exporters.local._rows import (
    INFO_KEY_ORDER,
    PreparedTrace,
    order_keys,
    render_assessment,
)
from flowtel.exporters.local._schema import ATTACHMENTS_TABLE
from flowtel.exporters.local._sql import chunks, placeholders
from flowtel.exporters.local._store_errors import AssessmentNotFoundError, TraceNotFoundError

__all__ = [
    "INSERT_ASSESSMENT",
    "delete_ids",
    "existing_ids",
    "load_assessment",
    "load_infos",
    "load_spans",
    "require_trace",
    "set_valid",
    "write_prepared",
]

INSERT_ASSESSMENT = (
    "INSERT INTO assessments (assessment_id, trace_id, kind, name, value_json, numeric_value, valid, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_ASSESSMENT = (
    INSERT_ASSESSMENT + " ON CONFLICT (assessment_id) DO UPDATE SET trace_id = excluded.trace_id, "
    "kind = excluded.kind, name = excluded.name, value_json = excluded.value_json, "
    "numeric_value = excluded.numeric_value, valid = excluded.valid, body = excluded.body"
)
_UPSERT_TRACE = (
    "INSERT INTO traces (trace_id, experiment_id, request_time, execution_duration_ms, end_time_ms, state, "
    "trace_name, client_request_id, run_id, info_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (trace_id) DO UPDATE SET experiment_id = excluded.experiment_id, "
    "request_time = excluded.request_time, execution_duration_ms = excluded.execution_duration_ms, "
    "end_time_ms = excluded.end_time_ms, state = excluded.state, "
    # tags are merged, so the name tag of an earlier write survives unless this write has one
    "trace_name = COALESCE(excluded.trace_name, traces.trace_name), "
    "client_request_id = excluded.client_request_id, run_id = excluded.run_id, info_json = excluded.info_json"
)


def write_prepared(conn: sqlite3.Connection, traces: Sequence[PreparedTrace]) -> None:
    ids = [(t.trace_id,) for t in traces]
    conn.executemany(_UPSERT_TRACE, [t.trace_row for t in traces])
    conn.executemany("DELETE FROM spans WHERE trace_id = ?", ids)
    conn.executemany("DELETE FROM metadata WHERE trace_id = ?", ids)
    conn.executemany(
        "INSERT INTO spans (trace_id, ord, span_id, parent_span_id, name, type, status, start_time_ns, content) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [row for t in traces for row in t.spans],
    )
    conn.executemany(
        "INSERT INTO metadata (trace_id, key, value) VALUES (?, ?, ?)", [r for t in traces for r in t.metadata]
    )
    conn.executemany(
        "INSERT INTO tags (trace_id, key, value) VALUES (?, ?, ?) "
        "ON CONFLICT (trace_id, key) DO UPDATE SET value = excluded.value",
        [r for t in traces for r in t.tags],
    )
    conn.executemany(_UPSERT_ASSESSMENT, [a.row() for t in traces for a in t.assessments])


def require_trace(conn: sqlite3.Connection, trace_id: str) -> None:
    if conn.execute("SELECT 1 FROM traces WHERE trace_id = ?", (trace_id,)).fetchone() is None:
        raise TraceNotFoundError(trace_id)


def set_valid(conn: sqlite3.Connection, trace_id: str, assessment_id: str, valid: bool, must_exist: bool) -> None:
    cursor = conn.execute(
        "UPDATE assessments SET valid = ? WHERE trace_id = ? AND assessment_id = ?",
        (int(valid), trace_id, assessment_id),
    )
    if must_exist and cursor.rowcount == 0:
        raise AssessmentNotFoundError(trace_id, assessment_id)


def existing_ids(conn: sqlite3.Connection, experiment_id: str, trace_ids: list[str]) -> list[str]:
    found: list[str] = []
    for chunk in chunks(trace_ids):
        found.extend(
            r[0]
            for r in conn.execute(
                f"SELECT trace_id FROM traces WHERE experiment_id = ? AND trace_id IN ({placeholders(len(chunk))})",
                (experiment_id, *chunk),
            )
        )
    return found


def delete_ids(conn: sqlite3.Connection, trace_ids: list[str]) -> None:
    for chunk in chunks(trace_ids):
        marks = placeholders(len(chunk))
        for table in ("spans", "tags", "metadata", "assessments", "traces"):
            conn.execute(f"DELETE FROM {table} WHERE trace_id IN ({marks})", chunk)
        conn.execute(ATTACHMENTS_TABLE)  # made on first use; a trace's attachments go with it
        conn.execute(f"DELETE FROM attachments WHERE trace_id IN ({marks})", chunk)


def load_infos(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Info dicts (with current tags and assessments) for these ids; unknown ids are absent."""
    infos: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, str]] = {}
    assessments: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks(list(trace_ids)):
        marks = placeholders(len(chunk))
        rows = conn.execute(f"SELECT trace_id, info_json FROM traces WHERE trace_id IN ({marks})", chunk)
        infos.update((trace_id, json.loads(info_json)) for trace_id, info_json in rows)
        for trace_id, key, value in conn.execute(
            f"SELECT trace_id, key, value FROM tags WHERE trace_id IN ({marks}) ORDER BY rowid", chunk
        ):
            tags.setdefault(trace_id, {})[key] = value
        for trace_id, body, valid in conn.execute(
            f"SELECT trace_id, body, valid FROM assessments WHERE trace_id IN ({marks}) ORDER BY rowid", chunk
        ):
            assessments.setdefault(trace_id, []).append(render_assessment(body, valid))
    for trace_id, info in infos.items():
        if trace_id in assessments:
            info["assessments"] = assessments[trace_id]
        if trace_id in tags:
            info["tags"] = tags[trace_id]
        infos[trace_id] = order_keys(info, INFO_KEY_ORDER)
    return infos


def load_spans(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    texts: dict[str, list[str]] = {trace_id: [] for trace_id in trace_ids}
    for chunk in chunks(list(trace_ids)):
        marks = placeholders(len(chunk))
        for trace_id, content in conn.execute(
            f"SELECT trace_id, content FROM spans WHERE trace_id IN ({marks}) ORDER BY trace_id, ord", chunk
        ):
            texts[trace_id].append(content)
    # one json.loads per trace instead of one per span
    return {trace_id: json.loads("[" + ",".join(parts) + "]") for trace_id, parts in texts.items()}


def load_assessment(conn: sqlite3.Connection, trace_id: str, assessment_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT body, valid FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id)
    ).fetchone()
    if row is None:
        require_trace(conn, trace_id)
        raise AssessmentNotFoundError(trace_id, assessment_id)
    return render_assessment(row[0], row[1])

