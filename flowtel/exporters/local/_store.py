"""The embedded trace store: one SQLite file, the default destination when nothing is configured.

Traces go in and come out in MLflow's ``Trace.to_dict()`` form, so what is stored here reads back
in MLflow (and MLflow's JSON reads back here). Searching uses MLflow's filter grammar
(:mod:`flowtel.exporters.local._filter`), translated to SQL.

Rooms: :mod:`~flowtel.exporters.local._schema` (tables, version check),
:mod:`~flowtel.exporters.local._connections` (connection pool, transactions, lock retry),
:mod:`~flowtel.exporters.local._rows` (dict validation/normalisation and rendering),
:mod:`~flowtel.exporters.local._sql` (filter AST -> SQL), :mod:`~flowtel.exporters.local._tables`
(the statements run inside a transaction), :mod:`~flowtel.exporters.local._store_errors`.
This module is the read/write API over them.

Layout (schema version :data:`SCHEMA_VERSION`, recorded in ``meta``):

- ``traces``: one row per trace with indexed search columns (experiment, request time, duration,
  end time, state, name, client request id, run id) and the info JSON (without tags/assessments).
- ``tags`` (mutable), ``metadata`` (immutable, also inside the info JSON; the table is for search),
  ``assessments`` (one row per assessment with its search columns and its dict).
- ``spans``: one row per span with name/type/status columns and the span dict as JSON text
  (``content``), which ``span.content`` / ``trace.text`` search and ``get_trace`` rebuilds from.
  Content is not compressed: zlib (level 6) cut the file by 43% on realistic spans but halved
  write throughput and made content searches ~10x slower (they must inflate every span in Python
  instead of running SQLite's C LIKE/JSON functions on the text).

Concurrency: WAL journal, ``busy_timeout``, one short ``BEGIN IMMEDIATE`` transaction per write
call (a whole ``write_traces`` batch is one transaction), bounded retry on ``SQLITE_BUSY``.
Connections come from a small per-store pool, one connection per concurrent caller, so a store is
safe to share between threads; several processes may open the same file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowtel.exporters.local import _filter as flt
from flowtel.exporters.local._connections import ConnectionPool
from flowtel.exporters.local._rows import (
    ASSESSMENT_KEY_ORDER,
    PreparedTrace,
    apply_assessment_changes,
    current_time_ms,
    dumps,
    failure_key,
    normalize_assessment,
    order_keys,
    prepare_assessment,
    prepare_trace,
    render_assessment,
    safe_text,
)
from flowtel.exporters.local._schema import ATTACHMENTS_TABLE, SCHEMA_VERSION, create_or_check_schema
from flowtel.exporters.local._sql import order_sql, where_sql
from flowtel.exporters.local._store_errors import (
    AssessmentNotFoundError,
    InvalidArgumentError,
    InvalidTraceError,
    SchemaVersionError,
    StoreError,
    TagNotFoundError,
    TraceNotFoundError,
)
from flowtel.exporters.local._tables import (
    INSERT_ASSESSMENT,
    delete_ids,
    existing_ids,
    load_assessment,
    load_infos,
    load_spans,
    require_trace,
    set_valid,
    write_prepared,
)

__all__ = [
    "AssessmentNotFoundError",
    "InvalidArgumentError",
    "InvalidTraceError",
    "SCHEMA_VERSION",
    "SchemaVersionError",
    "SqliteTraceStore",
    "StoreError",
    "TagNotFoundError",
    "TraceNotFoundError",
]

MAX_RESULTS_LIMIT = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
_UPDATABLE_ASSESSMENT_FIELDS = frozenset({"assessment_name", "feedback", "expectation", "rationale", "metadata"})


class SqliteTraceStore:
    """Traces in one SQLite file, read and written as MLflow ``Trace.to_dict()`` dicts.

    Every public method is thread-safe, and several processes may use the same file at once.
    Writes are single short transactions; readers never block writers (WAL).

    Args:
        path: The database file. Missing parent directories are created (mode 0700); a new file
            is created with mode 0600.

    Raises:
        SchemaVersionError: The file was written by a newer flowtel or is not a flowtel store.
        StoreError: The file cannot be opened (not a database, permissions, ...).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise InvalidArgumentError(f"SqliteTraceStore needs a file path, got {str(path)!r}.")
        self._pool = ConnectionPool(Path(path).expanduser().absolute())
        self._pool.enable_wal()
        self._pool.run_write(lambda conn: create_or_check_schema(conn, self._pool.path))

    @property
    def path(self) -> Path:
        """The database file."""
        return self._pool.path

    # -- writing --

    def write_traces(self, trace_dicts: Sequence[Mapping[str, Any]]) -> None:
        """Store traces given as ``Trace.to_dict()`` dicts, in one transaction.

        Upsert: a trace id that is already stored has its info, metadata and spans replaced, so a
        retried delivery is harmless. Tags and assessments are merged (written values win), so
        annotations made after the first write survive a rewrite. Thread- and process-safe.

        Args:
            trace_dicts: The traces.

        Raises:
            InvalidTraceError: Some dicts were malformed; all the others were stored.
            StoreError: The database failed (nothing of this batch was stored).
        """
        now = current_time_ms()
        prepared: list[PreparedTrace] = []
        failures: dict[str, str] = {}
        for index, trace in enumerate(trace_dicts):
            try:
                prepared.append(prepare_trace(trace, now))
            except (ValueError, TypeError) as exc:
                failures[failure_key(trace, index)] = str(exc)
        # the same id twice in one batch: the last copy wins (as if written one after the other)
        unique = list({t.trace_id: t for t in prepared}.values())
        if unique:
            self._pool.run_write(lambda conn: write_prepared(conn, unique))
        if failures:
            raise InvalidTraceError(failures, written=len(unique))

    def write_attachments(self, trace_id: str, attachments: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep a trace's attachments ``(id, content_type, bytes)`` (upsert). The table is made on
        first use, so stores written by earlier versions need no migration."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(ATTACHMENTS_TABLE)
            conn.executemany(
                "INSERT OR REPLACE INTO attachments (trace_id, attachment_id, content_type, data) VALUES (?, ?, ?, ?)",
                [(trace_id, key, content_type, data) for key, content_type, data in attachments],
            )

        self._pool.run_write(write)

    def get_attachment(self, trace_id: str, attachment_id: str) -> tuple[str, bytes] | None:
        def body(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'attachments'").fetchone()
            if exists is None:
                return None
            row = conn.execute(
                "SELECT content_type, data FROM attachments WHERE trace_id = ? AND attachment_id = ?",
                (trace_id, attachment_id),
            ).fetchone()
            return None if row is None else (str(row[0]), bytes(row[1]))

        result: tuple[str, bytes] | None = self._pool.run_read(body)
        return result

    # -- reading --

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as a ``Trace.to_dict()`` dict, or None. Thread-safe."""

        def body(conn: sqlite3.Connection) -> dict[str, Any] | None:
            infos = load_infos(conn, [trace_id])
            if trace_id not in infos:
                return None
            return {"info": infos[trace_id], "data": {"spans": load_spans(conn, [trace_id])[trace_id]}}

        return self._pool.run_read(body)

    def get_trace_info(self, trace_id: str) -> dict[str, Any] | None:
        """The trace's ``TraceInfo.to_dict()`` dict (with current tags and assessments), or None.
        Thread-safe."""
        return self._pool.run_read(lambda conn: load_infos(conn, [trace_id]).get(trace_id))

    def search_traces(
        self,
        experiment_ids: Sequence[str] | None = None,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 100,
        page_token: str | None = None,
        include_spans: bool = True,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Search with MLflow's filter grammar and ordering. Thread-safe.

        Args:
            experiment_ids: Only traces of these experiments; None searches every trace.
            filter_string: e.g. ``"trace.status = 'ERROR' AND tags.env = 'prod'"``.
            order_by: e.g. ``["timestamp_ms DESC"]``; always followed by ``timestamp_ms DESC,
                request_id ASC`` tie-breakers unless those keys are given.
            max_results: Page size, 1..50000.
            page_token: ``next_page_token`` of the previous page (opaque; base64 of
                ``{"offset": N}`` as in MLflow).
            include_spans: Load ``data.spans``; when False it is an empty list.

        Returns:
            ``(traces, next_page_token)``: ``Trace.to_dict()`` dicts, and a token when more
            results exist (else None).

        Raises:
            InvalidFilterError: Bad filter_string / order_by.
            InvalidArgumentError: Bad max_results / page_token.
        """
        if isinstance(experiment_ids, str):
            raise InvalidArgumentError(f"experiment_ids must be a list of ids, got the string {experiment_ids!r}.")
        ast = flt.parse_filter(filter_string)
        orders = flt.parse_order_by(order_by)
        limit = _validate_max_results(max_results)
        offset = _decode_page_token(page_token)
        where, where_params = where_sql(ast, None if experiment_ids is None else [str(e) for e in experiment_ids])
        order, order_params = order_sql(orders)
        sql = f"SELECT t.trace_id FROM traces t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        params = [*where_params, *order_params, limit + 1, offset]

        def body(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], str | None]:
            ids = [row[0] for row in conn.execute(sql, params)]
            page = ids[:limit]
            infos = load_infos(conn, page)
            spans = load_spans(conn, page) if include_spans else {}
            traces = [{"info": infos[i], "data": {"spans": spans.get(i, [])}} for i in page if i in infos]
            return traces, (_encode_page_token(offset + limit) if len(ids) > limit else None)

        return self._pool.run_read(body)

    def count(self, experiment_id: str | None = None) -> int:
        """Number of stored traces (of one experiment if given). Thread-safe."""

        def body(conn: sqlite3.Connection) -> int:
            if experiment_id is None:
                return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            row = conn.execute("SELECT count(*) FROM traces WHERE experiment_id = ?", (str(experiment_id),)).fetchone()
            return int(row[0])

        return self._pool.run_read(body)

    # -- tags --

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Set (or overwrite) a tag. Setting ``mlflow.traceName`` renames the trace. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            InvalidArgumentError: key/value are not strings or the key is empty.
        """
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgumentError(f"Tag key must be a non-empty str and value a str; got {key!r}={value!r}.")
        key, value = safe_text(key), safe_text(value)

        def body(conn: sqlite3.Connection) -> None:
            require_trace(conn, trace_id)
            conn.execute(
                "INSERT INTO tags (trace_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (trace_id, key) DO UPDATE SET value = excluded.value",
                (trace_id, key, value),
            )
            if key == flt.TRACE_NAME_TAG:
                conn.execute("UPDATE traces SET trace_name = ? WHERE trace_id = ?", (value, trace_id))

        self._pool.run_write(body)

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        """Delete a tag. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            TagNotFoundError: The trace has no such tag (a ``KeyError``).
        """

        def body(conn: sqlite3.Connection) -> None:
            require_trace(conn, trace_id)
            if conn.execute("DELETE FROM tags WHERE trace_id = ? AND key = ?", (trace_id, key)).rowcount == 0:
                raise TagNotFoundError(trace_id, key)
            if key == flt.TRACE_NAME_TAG:
                conn.execute("UPDATE traces SET trace_name = NULL WHERE trace_id = ?", (trace_id,))

        self._pool.run_write(body)

    # -- assessments --

    def create_assessment(self, assessment_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Add an assessment (``Assessment.to_dictionary()`` form) to the trace named by its
        ``trace_id``. Thread-safe.

        Assigns ``assessment_id`` (``a-<32 hex>``) unless given, and create/last-update times
        unless given. If ``overrides`` names another assessment of the trace, that one becomes
        ``valid: false``.

        Returns:
            The stored assessment, as MLflow renders it (numbers as doubles, ``valid: true``).

        Raises:
            TraceNotFoundError: No such trace.
            AssessmentNotFoundError: ``overrides`` names an unknown assessment.
            InvalidArgumentError: Malformed dict, or the assessment id is taken.
        """
        trace_id = assessment_dict.get("trace_id") if isinstance(assessment_dict, Mapping) else None
        if not isinstance(trace_id, str) or not trace_id:
            raise InvalidArgumentError("The assessment needs a str 'trace_id'.")
        try:
            body = normalize_assessment(assessment_dict, trace_id, current_time_ms())
        except ValueError as exc:
            raise InvalidArgumentError(f"Invalid assessment: {exc}") from exc
        body.setdefault("assessment_id", "a-" + uuid.uuid4().hex)
        prepared = prepare_assessment(order_keys(body, ASSESSMENT_KEY_ORDER), valid=True)

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            require_trace(conn, trace_id)
            if prepared.body.get("overrides"):
                set_valid(conn, trace_id, prepared.body["overrides"], False, must_exist=True)
            try:
                conn.execute(INSERT_ASSESSMENT, prepared.row())
            except sqlite3.IntegrityError:
                raise InvalidArgumentError(f"Assessment ID '{prepared.assessment_id}' already exists.") from None
            return render_assessment(dumps(prepared.body), 1)

        return self._pool.run_write(write)

    def get_assessment(self, trace_id: str, assessment_id: str) -> dict[str, Any]:
        """One assessment. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            AssessmentNotFoundError: No such assessment on the trace.
        """
        return self._pool.run_read(lambda conn: load_assessment(conn, trace_id, assessment_id))

    def update_assessment(self, trace_id: str, assessment_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change an assessment like MLflow's UpdateAssessment. Thread-safe.

        Args:
            changes: Any of ``assessment_name``, ``feedback`` (feedback assessments only),
                ``expectation`` (expectations only), ``rationale`` (None keeps it) and
                ``metadata`` (merged into the existing metadata).

        Returns:
            The updated assessment; ``last_update_time`` is now.

        Raises:
            TraceNotFoundError, AssessmentNotFoundError: Unknown trace / assessment.
            InvalidArgumentError: Unknown fields, or a value of the other assessment kind.
        """
        unknown = set(changes) - _UPDATABLE_ASSESSMENT_FIELDS
        if unknown:
            raise InvalidArgumentError(
                f"Cannot update {sorted(unknown)}; updatable fields: {sorted(_UPDATABLE_ASSESSMENT_FIELDS)}."
            )

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            current = load_assessment(conn, trace_id, assessment_id)
            valid = current.pop("valid", True)
            try:
                updated = apply_assessment_changes(current, changes)
            except ValueError as exc:
                raise InvalidArgumentError(f"Invalid assessment update: {exc}") from exc
            prepared = prepare_assessment(updated, valid=valid)
            conn.execute(
                "UPDATE assessments SET name = ?, value_json = ?, numeric_value = ?, body = ? "
                "WHERE trace_id = ? AND assessment_id = ?",
                (prepared.name, prepared.value_json, prepared.numeric_value, dumps(updated), trace_id, assessment_id),
            )
            return render_assessment(dumps(updated), int(valid))

        return self._pool.run_write(write)

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        """Delete an assessment; deleting an unknown assessment is a no-op (as in MLflow). If it
        overrode another one, that one becomes valid again. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
        """

        def write(conn: sqlite3.Connection) -> None:
            require_trace(conn, trace_id)
            row = conn.execute(
                "SELECT body FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id)
            ).fetchone()
            if row is None:
                return
            overrides = json.loads(row[0]).get("overrides")
            conn.execute("DELETE FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id))
            if overrides:
                set_valid(conn, trace_id, overrides, True, must_exist=False)

        self._pool.run_write(write)

    # -- deletion / lifecycle --

    def delete_traces(
        self,
        experiment_id: str,
        trace_ids: Sequence[str] | None = None,
        max_timestamp_millis: int | None = None,
        max_traces: int | None = None,
    ) -> int:
        """Delete traces of one experiment, either by id or all started at or before
        ``max_timestamp_millis`` (oldest first, at most ``max_traces``). Thread-safe.

        Returns:
            How many traces were deleted.

        Raises:
            InvalidArgumentError: Not exactly one of ``trace_ids`` / ``max_timestamp_millis``.
        """
        if (trace_ids is None) == (max_timestamp_millis is None):
            raise InvalidArgumentError("Pass exactly one of trace_ids or max_timestamp_millis.")
        for name, value, minimum in (("max_traces", max_traces, 1), ("max_timestamp_millis", max_timestamp_millis, 0)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}.")

        def write(conn: sqlite3.Connection) -> int:
            if trace_ids is not None:
                ids = existing_ids(conn, str(experiment_id), list(trace_ids))
            else:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT trace_id FROM traces WHERE experiment_id = ? AND request_time <= ? "
                        "ORDER BY request_time, trace_id LIMIT ?",
                        (str(experiment_id), int(max_timestamp_millis or 0), -1 if max_traces is None else max_traces),
                    )
                ]
            delete_ids(conn, ids)
            return len(ids)

        return self._pool.run_write(write)

    def close(self) -> None:
        """Close the store's connections; later calls raise :class:`StoreError`. Idempotent.
        Thread-safe, but calls still running in other threads finish on their own connection."""
        self._pool.close()

    def __enter__(self) -> SqliteTraceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()



# --- search arguments ---------------------------------------------------------------------------


def _encode_page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode("utf-8")).decode("ascii")


def _decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        parsed = json.loads(base64.b64decode(token, validate=True))
        offset = parsed["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidArgumentError(f"Invalid page token {token!r}: pass the token from the previous search.") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidArgumentError(f"Invalid page token {token!r}: bad offset {offset!r}.")
    return offset


def _validate_max_results(max_results: Any) -> int:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidArgumentError(
            f"Invalid value {max_results!r} for parameter 'max_results' supplied. It must be a positive integer."
        )
    if max_results > MAX_RESULTS_LIMIT:
        raise InvalidArgumentError(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at most {MAX_RESULTS_LIMIT}."
        )
    return max_results
