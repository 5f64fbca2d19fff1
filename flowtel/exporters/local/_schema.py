"""The local trace store's tables (schema version :data:`SCHEMA_VERSION`, recorded in ``meta``),
created on first open and checked on every open.

- ``traces``: one row per trace with indexed search columns (experiment, request time, duration,
  end time, state, name, client request id, run id) and the info JSON (without tags/assessments).
- ``tags`` (mutable), ``metadata`` (immutable, also inside the info JSON; the table is for search),
  ``assessments`` (one row per assessment with its search columns and its dict).
- ``spans``: one row per span with name/type/status columns and the span dict as JSON text
  (``content``), which ``span.content`` / ``trace.text`` search and ``get_trace`` rebuilds from.
  Content is not compressed: zlib (level 6) cut the file by 43% on realistic spans but halved
  write throughput and made content searches ~10x slower (they must inflate every span in Python
  instead of running SQLite's C LIKE/JSON functions on the text).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowtel.exporters.local._store_errors import SchemaVersionError

__all__ = ["SCHEMA_VERSION", "create_or_check_schema"]

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE traces (
        trace_id TEXT PRIMARY KEY NOT NULL,
        experiment_id TEXT,
        request_time INTEGER NOT NULL,
        execution_duration_ms INTEGER,
        end_time_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        trace_name TEXT,
        client_request_id TEXT,
        run_id TEXT,
        info_json TEXT NOT NULL)""",
    "CREATE INDEX traces_experiment_time ON traces (experiment_id, request_time DESC, trace_id)",
    "CREATE INDEX traces_time ON traces (request_time DESC, trace_id)",
    "CREATE INDEX traces_name ON traces (trace_name)",
    "CREATE INDEX traces_client_request_id ON traces (client_request_id)",
    "CREATE INDEX traces_run_id ON traces (run_id)",
    "CREATE TABLE tags (trace_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (trace_id, key))",
    "CREATE TABLE metadata (trace_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, UNIQUE (trace_id, key))",
    # content last: name/type/status filters then never read the (overflow) content pages
    """CREATE TABLE spans (
        trace_id TEXT NOT NULL,
        ord INTEGER NOT NULL,
        span_id TEXT NOT NULL,
        parent_span_id TEXT,
        name TEXT,
        type TEXT,
        status TEXT NOT NULL,
        start_time_ns INTEGER,
        content TEXT NOT NULL,
        UNIQUE (trace_id, ord))""",
    """CREATE TABLE assessments (
        assessment_id TEXT NOT NULL UNIQUE,
        trace_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        value_json TEXT NOT NULL,
        numeric_value REAL,
        valid INTEGER NOT NULL,
        body TEXT NOT NULL)""",
    "CREATE INDEX assessments_trace ON assessments (trace_id)",
)


# Made on first use (``CREATE TABLE IF NOT EXISTS``), so stores written by earlier versions need
# no migration.
ATTACHMENTS_TABLE = """CREATE TABLE IF NOT EXISTS attachments (
    trace_id TEXT NOT NULL, attachment_id TEXT NOT NULL, content_type TEXT NOT NULL, data BLOB NOT NULL,
    UNIQUE (trace_id, attachment_id))"""



def create_or_check_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in an empty file, or check the version of an existing store (inside the
    caller's write transaction).

    Raises:
        SchemaVersionError: A newer schema version, or a database that is not a trace store.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "meta" not in tables:
        if tables:
            raise SchemaVersionError(
                f"{path} is a SQLite database but not a flowtel trace store (tables: {sorted(tables)})."
            )
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row and str(row[0]).isdigit() else None
    if version is None or version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"The trace store {path} has schema version {row[0] if row else 'unknown'!s}; this flowtel "
            f"understands up to {SCHEMA_VERSION}. Upgrade flowtel or point it at another file."
        )
    # version < SCHEMA_VERSION: migrations go here when the schema changes.
