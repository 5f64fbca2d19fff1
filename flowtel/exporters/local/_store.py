"""The embedded trace store: one SQLite file, the default destination when nothing is configured.

Traces go in and come out in MLflow's ``Trace.to_dict()`` form, so what is stored here reads back
in MLflow (and MLflow's JSON reads back here). Searching uses MLflow's filter grammar
(:mod:`flowtel.exporters.local._filter`), translated to SQL.

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
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowtel import _exceptions
from flowtel.exporters.local import _filter as flt
from flowtel.exporters.local._filter import Clause, Entity, Op, OrderBy

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

SCHEMA_VERSION = 1
MAX_RESULTS_LIMIT = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD
_BUSY_TIMEOUT_S = 5.0  # SQLite waits this long for a lock before reporting SQLITE_BUSY
_BUSY_RETRIES = 3  # ...and we retry the whole transaction this many times on top
_MAX_IDLE_CONNECTIONS = 4
_SQL_VARIABLE_CHUNK = 500  # stay far below SQLITE_MAX_VARIABLE_NUMBER (999 on old builds)
_UPDATABLE_ASSESSMENT_FIELDS = frozenset({"assessment_name", "feedback", "expectation", "rationale", "metadata"})
_ASSESSMENT_KEY_ORDER = (
    "assessment_id",
    "assessment_name",
    "trace_id",
    "span_id",
    "source",
    "create_time",
    "last_update_time",
    "feedback",
    "expectation",
    "rationale",
    "error",
    "metadata",
    "overrides",
    "valid",
    "issue",  # field 16: MessageToDict orders by field number
)
# MessageToDict emits proto fields by field number; execution_duration_ms is appended last.
_INFO_KEY_ORDER = (
    "trace_id",
    "client_request_id",
    "trace_location",
    "request",
    "response",
    "request_time",
    "state",
    "trace_metadata",
    "assessments",
    "tags",
    "request_preview",
    "response_preview",
    "execution_duration_ms",
)
_DEFAULT_SOURCE_TYPE = {"feedback": "CODE", "expectation": "HUMAN", "issue": "LLM_JUDGE"}
_SURROGATES = re.compile("[\ud800-\udfff]")


# --- exceptions ---------------------------------------------------------------------------------


class StoreError(_exceptions.FlowtelException):
    """Any failure of the local trace store (a :class:`FlowtelException`)."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", http_status: int | None = 500) -> None:
        # explicit base call: subclasses also inherit from exceptions with other signatures
        _exceptions.FlowtelException.__init__(self, message, error_code, http_status)

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message


class TraceNotFoundError(StoreError, _exceptions.TraceNotFoundError):
    """No trace with this id in the store."""

    def __init__(self, trace_id: str) -> None:
        StoreError.__init__(self, f"Trace with ID '{trace_id}' not found.", "RESOURCE_DOES_NOT_EXIST", 404)
        self.trace_id = trace_id


class TagNotFoundError(StoreError, KeyError):
    """The trace exists but has no tag with this key."""

    def __init__(self, trace_id: str, key: str) -> None:
        super().__init__(f"No tag with key '{key}' on trace '{trace_id}'.", "RESOURCE_DOES_NOT_EXIST", 404)
        self.trace_id, self.key = trace_id, key


class AssessmentNotFoundError(StoreError, KeyError):
    """The trace exists but has no assessment with this id."""

    def __init__(self, trace_id: str, assessment_id: str) -> None:
        super().__init__(
            f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'.", "RESOURCE_DOES_NOT_EXIST", 404
        )
        self.trace_id, self.assessment_id = trace_id, assessment_id


class InvalidArgumentError(StoreError, ValueError):
    """A bad argument: max_results, page token, assessment dict, delete criteria..."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_PARAMETER_VALUE", 400)


class InvalidTraceError(InvalidArgumentError):
    """Some trace dicts given to ``write_traces`` were malformed. The others were written.

    Attributes:
        failures: Maps the trace id (or ``#<index>`` when there is none) to what is wrong.
        written: How many distinct traces of the batch were stored.
    """

    def __init__(self, failures: dict[str, str], written: int) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} trace(s) not stored, {written} stored. {detail}{more}")
        self.failures, self.written = failures, written


class SchemaVersionError(StoreError):
    """The file was written by a newer flowtel (unknown schema version) or is not a trace store."""


# --- schema -------------------------------------------------------------------------------------

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


_ATTACHMENTS_TABLE = """CREATE TABLE IF NOT EXISTS attachments (
    trace_id TEXT NOT NULL, attachment_id TEXT NOT NULL, content_type TEXT NOT NULL, data BLOB NOT NULL,
    UNIQUE (trace_id, attachment_id))"""


# --- prepared rows ------------------------------------------------------------------------------


@dataclass
class _PreparedAssessment:
    assessment_id: str
    trace_id: str
    kind: str
    name: str
    value_json: str
    numeric_value: float | None
    valid: bool
    body: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (
            self.assessment_id,
            self.trace_id,
            self.kind,
            self.name,
            self.value_json,
            self.numeric_value,
            int(self.valid),
            _dumps(self.body),
        )


@dataclass
class _PreparedTrace:
    trace_id: str
    trace_row: tuple[Any, ...]
    tags: list[tuple[str, str, str]] = field(default_factory=list)
    metadata: list[tuple[str, str, str]] = field(default_factory=list)
    spans: list[tuple[Any, ...]] = field(default_factory=list)
    assessments: list[_PreparedAssessment] = field(default_factory=list)


# --- small helpers ------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """Compact-enough JSON that SQLite can store: lone surrogates (invalid UTF-8) are escaped,
    which still round-trips to the same Python string."""
    text = json.dumps(value, ensure_ascii=False)
    return text if _utf8_ok(text) else json.dumps(value)


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_text(text: str) -> str:
    """Tag/metadata strings go into plain TEXT columns: replace lone surrogates with U+FFFD."""
    return text if _utf8_ok(text) else _SURROGATES.sub("\ufffd", text)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _chunks(items: Sequence[Any], size: int = _SQL_VARIABLE_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _order_keys(d: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: d[k] for k in order if k in d}
    out.update((k, v) for k, v in d.items() if k not in out)
    return out


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping of str to str")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"{what} must map str to str; got {k!r}: {type(v).__name__}")
        out[_safe_text(k)] = _safe_text(v)
    return out


def _optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


# --- assessment normalization -------------------------------------------------------------------


def _proto_value(value: Any) -> Any:
    """What a value looks like after a trip through ``google.protobuf.Value`` (numbers are doubles),
    so stored dicts equal what MLflow's ``to_dict`` renders."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _proto_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_proto_value(v) for v in value]
    raise ValueError(f"assessment value of type {type(value).__name__} is not JSON-compatible")


def _normalize_expectation(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("expectation must be a mapping with 'value' or 'serialized_value'")
    if "serialized_value" in body and "value" not in body:
        serialized = body["serialized_value"]
        if not isinstance(serialized, Mapping) or not isinstance(serialized.get("value"), str):
            raise ValueError("expectation.serialized_value must have a JSON string 'value'")
        json.loads(serialized["value"])  # must be valid JSON: readers json.loads it
        return {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": serialized["value"]}}
    if "value" not in body:
        raise ValueError("expectation must have 'value' or 'serialized_value'")
    value = body["value"]
    # MLflow keeps only primitives in the proto Value; None, lists and dicts are JSON-serialized.
    if value is None or not isinstance(value, (bool, int, float, str)):
        return {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": json.dumps(value)}}
    return {"value": _proto_value(value)}


def _normalize_feedback(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("feedback must be a mapping with 'value' (and optionally 'error')")
    out: dict[str, Any] = {"value": _proto_value(body.get("value"))}
    if body.get("error") is not None:
        if not isinstance(body["error"], Mapping):
            raise ValueError("feedback.error must be a mapping")
        out["error"] = dict(body["error"])
    return out


def _normalize_issue(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get("issue_name"), str):
        raise ValueError("issue must be a mapping with a str 'issue_name'")
    return {"issue_name": body["issue_name"]}


_VALUE_NORMALIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "feedback": _normalize_feedback,
    "expectation": _normalize_expectation,
    "issue": _normalize_issue,
}


def _timestamp_field(value: Any, default_ms: int) -> str:
    return flt.format_timestamp_ms(default_ms if value is None else flt.parse_timestamp_ms(value))


def _normalize_assessment(raw: Mapping[str, Any], trace_id: str, now_ms: int) -> dict[str, Any]:
    """An assessment dict in MLflow's ``Assessment.to_dictionary()`` form (proto field order,
    numbers as doubles, RFC 3339 times). ``valid`` is left out: the store tracks it."""
    if not isinstance(raw, Mapping):
        raise ValueError("an assessment must be a mapping")
    kinds = [k for k in ("feedback", "expectation", "issue") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError("an assessment needs exactly one of 'feedback', 'expectation' or 'issue'")
    name = raw.get("assessment_name")
    if not isinstance(name, str) or not name:
        raise ValueError("an assessment needs a non-empty str 'assessment_name'")
    kind = kinds[0]
    source = raw.get("source") or {}
    metadata = raw.get("metadata") or {}
    if not isinstance(source, Mapping) or not isinstance(metadata, Mapping):
        raise ValueError("an assessment's 'source' and 'metadata' must be mappings")
    body: dict[str, Any] = {
        "assessment_id": raw.get("assessment_id"),
        "assessment_name": name,
        "trace_id": trace_id,
        "span_id": raw.get("span_id"),
        "source": {
            "source_type": source.get("source_type") or _DEFAULT_SOURCE_TYPE[kind],
            "source_id": source.get("source_id") or "default",
        },
        "create_time": _timestamp_field(raw.get("create_time"), now_ms),
        "last_update_time": _timestamp_field(raw.get("last_update_time"), now_ms),
        kind: _VALUE_NORMALIZERS[kind](raw[kind]),
        "rationale": raw.get("rationale"),
        "error": raw.get("error"),
        "metadata": {str(k): str(v) for k, v in metadata.items()} or None,
        "overrides": raw.get("overrides") or None,
    }
    return {k: v for k, v in body.items() if v is not None}


def _deterministic_assessment_id(trace_id: str, body: Mapping[str, Any]) -> str:
    # Assessments shipped inside a trace without an id get one derived from their content, so a
    # retried write_traces() upserts them instead of adding duplicates.
    digest = hashlib.sha256((trace_id + "\0" + json.dumps(body, sort_keys=True)).encode()).hexdigest()
    return "a-" + digest[:32]


def _prepare_assessment(body: dict[str, Any], valid: bool) -> _PreparedAssessment:
    value = flt.assessment_value(body)
    kind = flt.assessment_kind(body) or ""
    return _PreparedAssessment(
        assessment_id=body["assessment_id"],
        trace_id=body["trace_id"],
        kind=kind,
        name=body["assessment_name"],
        value_json=flt.assessment_value_json(body),
        numeric_value=flt.assessment_numeric_value(value) if kind != "issue" else None,
        valid=valid,
        body=body,
    )


def _render_assessment(body_json: str, valid: int) -> dict[str, Any]:
    body = json.loads(body_json)
    body["valid"] = bool(valid)
    return _order_keys(body, _ASSESSMENT_KEY_ORDER)


# --- trace preparation --------------------------------------------------------------------------


def _prepare_trace(trace: Any, now_ms: int) -> _PreparedTrace:
    """Validate one ``Trace.to_dict()`` dict and turn it into rows. Raises ValueError."""
    if not isinstance(trace, Mapping) or not isinstance(trace.get("info"), Mapping):
        raise ValueError("expected a Trace.to_dict() mapping with an 'info' mapping")
    info = trace["info"]
    trace_id = info.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id:
        raise ValueError("info.trace_id must be a non-empty str (v2 'request_id' dicts are not accepted)")
    if info.get("request_time") is None:
        raise ValueError("info.request_time is required")
    request_time = flt.parse_timestamp_ms(info["request_time"])
    duration = _optional_int(info.get("execution_duration_ms"), "info.execution_duration_ms")
    state = info.get("state", "STATE_UNSPECIFIED")
    if not isinstance(state, str):
        raise ValueError("info.state must be a str such as 'OK'")
    tags = _str_map(info.get("tags"), "info.tags")
    metadata = _str_map(info.get("trace_metadata"), "info.trace_metadata")
    client_request_id = info.get("client_request_id")
    stored_info = {k: v for k, v in info.items() if k not in ("tags", "assessments")}
    if metadata:
        stored_info["trace_metadata"] = metadata
    prepared = _PreparedTrace(
        trace_id=trace_id,
        trace_row=(
            trace_id,
            flt.experiment_id_of(info),
            request_time,
            duration,
            request_time + (duration or 0),
            state,
            tags.get(flt.TRACE_NAME_TAG),
            client_request_id if isinstance(client_request_id, str) else None,
            metadata.get(flt.SOURCE_RUN_METADATA),
            _dumps(stored_info),
        ),
        tags=[(trace_id, k, v) for k, v in tags.items()],
        metadata=[(trace_id, k, v) for k, v in metadata.items()],
    )
    prepared.spans = _prepare_spans(trace, trace_id)
    prepared.assessments = _prepare_trace_assessments(info.get("assessments"), trace_id, now_ms)
    return prepared


def _prepare_spans(trace: Mapping[str, Any], trace_id: str) -> list[tuple[Any, ...]]:
    data = trace.get("data") or {}
    spans = data.get("spans") if isinstance(data, Mapping) else None
    if spans is None:
        return []
    if not isinstance(spans, list):
        raise ValueError("data.spans must be a list")
    rows = []
    for ord_, span in enumerate(spans):
        if not isinstance(span, Mapping) or not isinstance(span.get("span_id"), str):
            raise ValueError(f"data.spans[{ord_}] must be a mapping with a str 'span_id'")
        rows.append(
            (
                trace_id,
                ord_,
                span["span_id"],
                span.get("parent_span_id"),
                span.get("name"),
                flt.span_type(span),
                flt.span_status_code(span),
                _optional_int(span.get("start_time_unix_nano"), f"data.spans[{ord_}].start_time_unix_nano"),
                _dumps(span),
            )
        )
    return rows


def _prepare_trace_assessments(raw: Any, trace_id: str, now_ms: int) -> list[_PreparedAssessment]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise ValueError("info.assessments must be a list")
    prepared = []
    for item in raw:
        body = _normalize_assessment(item, trace_id, now_ms)
        body.setdefault("assessment_id", _deterministic_assessment_id(trace_id, body))
        body = _order_keys(body, _ASSESSMENT_KEY_ORDER)
        prepared.append(_prepare_assessment(body, valid=item.get("valid") is not False))
    return prepared


# --- SQL translation of the filter AST ----------------------------------------------------------

_ATTRIBUTE_COLUMNS = {
    flt.ATTR_REQUEST_ID: "t.trace_id",
    flt.ATTR_STATUS: "t.state",
    flt.ATTR_CLIENT_REQUEST_ID: "t.client_request_id",
    flt.ATTR_TIMESTAMP: "t.request_time",
    flt.ATTR_EXECUTION_TIME: "t.execution_duration_ms",
    flt.ATTR_END_TIME: "t.end_time_ms",
}
_SPAN_COLUMNS = {"name": "s.name", "type": "s.type", "status": "s.status"}
_NOT_NULL_OPS = {Op.EQ: "=", Op.NE: "!=", Op.GT: ">", Op.GE: ">=", Op.LT: "<", Op.LE: "<="}


def _compare_sql(expr: str, op: Op, value: flt.FilterValue, *, column: bool = True) -> tuple[str, list[Any]]:
    """SQL for ``expr <op> value`` with the evaluator's semantics (NULL never matches).
    ``column`` says ``expr`` is a plain column, cheap to evaluate more than once."""
    if op in _NOT_NULL_OPS:
        return f"{expr} {_NOT_NULL_OPS[op]} ?", [value]
    if op is Op.LIKE:
        return f"{expr} GLOB ?", [flt.like_to_glob(str(value))]  # GLOB: case-sensitive LIKE
    if op is Op.ILIKE:
        return _ilike_sql(expr, str(value), column)
    if op is Op.RLIKE:
        return f"ft_rlike({expr}, ?)", [value]
    if op in (Op.IN, Op.NOT_IN):
        values = list(value) if isinstance(value, tuple) else [value]
        return f"{expr} {op.value} ({_placeholders(len(values))})", values
    raise AssertionError(f"no SQL for {op}")


def _ilike_sql(expr: str, pattern: str, column: bool) -> tuple[str, list[Any]]:
    # The Python function (Unicode case folding) costs a call per row. For ASCII-only pattern
    # and value SQLite's own LIKE (ASCII case-insensitive) gives the same answer at C speed;
    # length(text) == length(bytes) tells ASCII-only values apart. Only for plain columns: the
    # expression is evaluated up to three times.
    if column and pattern.isascii():
        return (
            (
                f"(CASE WHEN length({expr}) = length(CAST({expr} AS BLOB)) THEN {expr} LIKE ? "
                f"ELSE ft_ilike({expr}, ?) END)"
            ),
            [pattern, pattern],
        )
    return f"ft_ilike({expr}, ?)", [pattern]


def _key_value_sql(table: str, clause: Clause) -> tuple[str, list[Any]]:
    exists = f"SELECT 1 FROM {table} kv WHERE kv.trace_id = t.trace_id AND kv.key = ?"
    if clause.op is Op.IS_NULL:
        return f"NOT EXISTS ({exists})", [clause.key]
    if clause.op is Op.IS_NOT_NULL:
        return f"EXISTS ({exists})", [clause.key]
    cond, params = _compare_sql("kv.value", clause.op, clause.value)
    return f"EXISTS ({exists} AND {cond})", [clause.key, *params]


def _column_sql(column: str, clause: Clause) -> tuple[str, list[Any]]:
    if clause.op is Op.IS_NULL:
        return f"{column} IS NULL", []
    if clause.op is Op.IS_NOT_NULL:
        return f"{column} IS NOT NULL", []
    return _compare_sql(column, clause.op, clause.value)


def _tag_sql(clause: Clause) -> tuple[str, list[Any]]:
    if clause.key == flt.TRACE_NAME_TAG:  # denormalized into traces.trace_name (indexed)
        return _column_sql("t.trace_name", clause)
    return _key_value_sql("tags", clause)


def _metadata_sql(clause: Clause) -> tuple[str, list[Any]]:
    if clause.key == flt.SOURCE_RUN_METADATA:  # denormalized into traces.run_id (indexed)
        return _column_sql("t.run_id", clause)
    return _key_value_sql("metadata", clause)


def _assessment_sql(clause: Clause) -> tuple[str, list[Any]]:
    base = "SELECT 1 FROM assessments a WHERE a.trace_id = t.trace_id AND a.kind = ? AND a.name = ? AND a.valid = 1"
    params: list[Any] = [clause.entity.value, clause.key]
    if clause.op is Op.IS_NULL:
        return f"NOT EXISTS ({base})", params
    if clause.op is Op.IS_NOT_NULL:
        return f"EXISTS ({base})", params
    if clause.op in (Op.GT, Op.GE, Op.LT, Op.LE):
        cond, extra = _compare_sql("a.numeric_value", clause.op, clause.value)
    elif clause.op in (Op.EQ, Op.NE):
        # match the JSON text ('true' -> true) or the JSON-quoted string ('yes' -> "yes")
        negate = "NOT " if clause.op is Op.NE else ""
        cond, extra = f"{negate}(a.value_json = ? OR a.value_json = ?)", [clause.value, json.dumps(clause.value)]
    else:
        cond, extra = _compare_sql("a.value_json", clause.op, clause.value)
    return f"EXISTS ({base} AND {cond})", [*params, *extra]


def _issue_sql(clause: Clause) -> tuple[str, list[Any]]:
    sql = "EXISTS (SELECT 1 FROM assessments a WHERE a.trace_id = t.trace_id AND a.kind = 'issue' AND a.name = ?)"
    return sql, [clause.value]


def _prompt_sql(clause: Clause) -> tuple[str, list[Any]]:
    sql = (
        "EXISTS (SELECT 1 FROM tags kv WHERE kv.trace_id = t.trace_id AND kv.key = ? "
        "AND ft_prompt_link(kv.value, ?))"
    )
    return sql, [flt.LINKED_PROMPTS_TAG, clause.value]


# Values made of these characters appear verbatim in the span JSON whatever the encoding layers.
_VERBATIM_VALUE = re.compile(r"[A-Za-z0-9 _.:/@+-]+")


def _span_attribute_sql(clause: Clause) -> tuple[str, list[Any]]:
    # json_each + key compare works for any attribute name (a JSON path cannot quote every key).
    expr = "(SELECT ft_attr(je.type, je.value) FROM json_each(s.content, '$.attributes') je WHERE je.key = ?)"
    cond, params = _compare_sql(expr, clause.op, clause.value, column=False)
    params = [clause.key, *params]
    values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
    if clause.op in (Op.EQ, Op.IN) and all(isinstance(v, str) and _VERBATIM_VALUE.fullmatch(v) for v in values):
        # Cheap C pre-check: a span whose text lacks the value cannot match, so most spans skip
        # the JSON parse (GLOB: these values hold no GLOB wildcards).
        pre = " OR ".join("s.content GLOB ?" for _ in values)
        return f"({pre}) AND {cond}", [*(f"*{v}*" for v in values), *params]
    return cond, params


def _span_field_sql(clause: Clause) -> tuple[str, list[Any]]:
    if clause.entity is Entity.SPAN_ATTRIBUTE:
        return _span_attribute_sql(clause)
    if clause.key == flt.SPAN_CONTENT:
        return _compare_sql("s.content", clause.op, clause.value)
    return _compare_sql(_SPAN_COLUMNS[clause.key], clause.op, clause.value)


def _spans_sql(clauses: Sequence[Clause]) -> tuple[str, list[Any]]:
    """One EXISTS: a single span must satisfy every span clause (MLflow's semantics)."""
    conds, params = [], []
    for clause in clauses:
        cond, extra = _span_field_sql(clause)
        conds.append(cond)
        params.extend(extra)
    return f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND {' AND '.join(conds)})", params


_CLAUSE_SQL: dict[Entity, Callable[[Clause], tuple[str, list[Any]]]] = {
    Entity.ATTRIBUTE: lambda c: _compare_sql(_ATTRIBUTE_COLUMNS[c.key], c.op, c.value),
    Entity.TAG: _tag_sql,
    Entity.METADATA: _metadata_sql,
    Entity.FEEDBACK: _assessment_sql,
    Entity.EXPECTATION: _assessment_sql,
    Entity.ISSUE: _issue_sql,
    Entity.PROMPT: _prompt_sql,
}


def _where_sql(ast: flt.TraceFilter, experiment_ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    if experiment_ids is not None:
        conds.append(f"t.experiment_id IN ({_placeholders(len(experiment_ids))})" if experiment_ids else "0")
        params.extend(experiment_ids)
    for clause in ast.trace_clauses():
        cond, extra = _CLAUSE_SQL[clause.entity](clause)
        conds.append(cond)
        params.extend(extra)
    if ast.span_clauses():
        cond, extra = _spans_sql(ast.span_clauses())
        conds.append(cond)
        params.extend(extra)
    return (" AND ".join(conds) or "1"), params


_ORDER_COLUMNS = {
    flt.ATTR_TIMESTAMP: ("t.request_time", False),  # (expression, nullable)
    flt.ATTR_EXECUTION_TIME: ("t.execution_duration_ms", True),
    flt.ATTR_END_TIME: ("t.end_time_ms", False),
    flt.ATTR_STATUS: ("t.state", False),
    flt.ATTR_REQUEST_ID: ("t.trace_id", False),
}


def _order_expr(order: OrderBy) -> tuple[list[str], list[Any], bool]:
    """(sort expressions, params, nullable) for one key."""
    if order.entity is Entity.TAG and order.key == flt.TRACE_NAME_TAG:
        return ["t.trace_name"], [], True
    if order.entity is Entity.METADATA and order.key == flt.SOURCE_RUN_METADATA:
        return ["t.run_id"], [], True
    if order.entity in (Entity.TAG, Entity.METADATA):
        table = "tags" if order.entity is Entity.TAG else "metadata"
        return [f"(SELECT value FROM {table} WHERE trace_id = t.trace_id AND key = ?)"], [order.key], True
    if order.key == flt.ATTR_EXPERIMENT_ID:
        # MLflow's ids are integers: (length, text) orders digit strings numerically
        return ["length(t.experiment_id)", "t.experiment_id"], [], True
    expr, nullable = _ORDER_COLUMNS[order.key]
    return [expr], [], nullable


def _order_sql(order_by: Sequence[OrderBy]) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for order in flt.with_default_order(order_by):
        exprs, extra, nullable = _order_expr(order)
        direction = "ASC" if order.ascending else "DESC"
        if nullable:  # NULLs last in both directions, like MLflow
            parts.append(f"({exprs[0]} IS NULL) ASC")
            params.extend(extra)
        parts.extend(f"{e} {direction}" for e in exprs)
        params.extend(extra)
    return ", ".join(parts), params


# --- page tokens --------------------------------------------------------------------------------


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


# --- SQL functions registered on every connection -----------------------------------------------


def _udf(fn: Callable[..., Any], default: Any) -> Callable[..., Any]:
    """An exception inside a SQLite function aborts the whole query; a bad row must not."""

    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - one odd stored value must not abort the user's query
            return default

    return wrapper


def _ilike(value: Any, pattern: Any) -> int:
    if value is None or pattern is None:
        return 0
    return int(flt.like_regex(str(pattern), True).fullmatch(str(value)) is not None)


def _rlike(value: Any, pattern: Any) -> int:
    if value is None or pattern is None:
        return 0
    return int(flt.rlike(str(value), str(pattern)))


def _json_each_attribute(json_type: str | None, value: Any) -> str | None:
    """The evaluator's ``attribute_text`` from a json_each (type, value) pair."""
    if json_type is None or json_type == "null":
        return None
    if json_type == "text":
        return flt.attribute_text(value)
    if json_type in ("true", "false"):
        return flt.attribute_text(json_type == "true")
    if json_type in ("object", "array"):
        return flt.attribute_text(json.loads(value))
    return flt.attribute_text(value)


def _prompt_link(tag_value: Any, name_version: Any) -> int:
    return int(flt.prompt_link_matches(tag_value, str(name_version)))


_FUNCTIONS: tuple[tuple[str, int, Callable[..., Any]], ...] = (
    ("ft_ilike", 2, _udf(_ilike, 0)),
    ("ft_rlike", 2, _udf(_rlike, 0)),
    ("ft_attr", 2, _udf(_json_each_attribute, None)),
    ("ft_prompt_link", 2, _udf(_prompt_link, 0)),
)


# --- the store ----------------------------------------------------------------------------------


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
        self._path = Path(path).expanduser().absolute()
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._create_file()
        self._init_schema()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- connections --

    def _create_file(self) -> None:
        try:
            if not self._path.parent.exists():
                self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass  # an existing store (or another process created it first): keep its mode
        except OSError as exc:
            raise StoreError(f"Cannot create the trace store file {self._path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable on app crash, fast commits
            for name, n_args, fn in _FUNCTIONS:
                conn.create_function(name, n_args, fn, deterministic=True)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the trace store {self._path}: {exc}") from exc
        return conn

    def _check_process(self) -> None:
        # A connection must not cross fork(): drop (never close) the parent's, which could
        # otherwise checkpoint or unlink the WAL under the parent's feet.
        if os.getpid() != self._pid:
            self._lock = threading.Lock()
            self._idle = []
            self._pid = os.getpid()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        self._check_process()
        with self._lock:
            if self._closed:
                raise StoreError(f"The trace store {self._path} is closed.")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._release(conn)

    def _release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # only after an error inside a with-block: never reuse it mid-txn
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._lock:
            keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS and os.getpid() == self._pid
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def _run_write(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` inside ``BEGIN IMMEDIATE ... COMMIT``, retrying when the file stays locked
        longer than the busy timeout (``body`` is re-run from scratch)."""
        for attempt in range(_BUSY_RETRIES + 1):
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = body(conn)
                        conn.execute("COMMIT")
                        return result
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                        raise self._wrap(exc) from exc
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def _run_read(self, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``body`` in one read transaction (a consistent snapshot across its queries)."""
        for attempt in range(_BUSY_RETRIES + 1):
            with self._connection() as conn:
                try:
                    conn.execute("BEGIN")
                    try:
                        return body(conn)
                    finally:
                        if conn.in_transaction:
                            conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                        raise self._wrap(exc) from exc
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
            waited = _BUSY_TIMEOUT_S * (_BUSY_RETRIES + 1)
            return StoreError(f"The trace store {self._path} stayed locked by other writers for ~{waited:.0f}s: {exc}")
        return StoreError(f"Trace store {self._path} failed: {exc}")

    # -- schema --

    def _init_schema(self) -> None:
        with self._connection() as conn:
            self._enable_wal(conn)
        self._run_write(self._create_or_check_schema)

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # journal_mode is persistent in the file; switching needs a moment without other writers.
        for attempt in range(_BUSY_RETRIES + 1):
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"Cannot enable WAL mode on {self._path} (journal_mode={mode}).")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == _BUSY_RETRIES:
                    raise self._wrap(exc) from exc
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self._path} is not a SQLite database: {exc}") from exc

    def _create_or_check_schema(self, conn: sqlite3.Connection) -> None:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables:
                raise SchemaVersionError(
                    f"{self._path} is a SQLite database but not a flowtel trace store (tables: {sorted(tables)})."
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None or version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"The trace store {self._path} has schema version {row[0] if row else 'unknown'!s}; this flowtel "
                f"understands up to {SCHEMA_VERSION}. Upgrade flowtel or point it at another file."
            )
        # version < SCHEMA_VERSION: migrations go here when the schema changes.

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
        now = _now_ms()
        prepared: list[_PreparedTrace] = []
        failures: dict[str, str] = {}
        for index, trace in enumerate(trace_dicts):
            try:
                prepared.append(_prepare_trace(trace, now))
            except (ValueError, TypeError) as exc:
                failures[_failure_key(trace, index)] = str(exc)
        # the same id twice in one batch: the last copy wins (as if written one after the other)
        unique = list({t.trace_id: t for t in prepared}.values())
        if unique:
            self._run_write(lambda conn: _write_prepared(conn, unique))
        if failures:
            raise InvalidTraceError(failures, written=len(unique))

    def write_attachments(self, trace_id: str, attachments: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep a trace's attachments ``(id, content_type, bytes)`` (upsert). The table is made on
        first use, so stores written by earlier versions need no migration."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_ATTACHMENTS_TABLE)
            conn.executemany(
                "INSERT OR REPLACE INTO attachments (trace_id, attachment_id, content_type, data) VALUES (?, ?, ?, ?)",
                [(trace_id, key, content_type, data) for key, content_type, data in attachments],
            )

        self._run_write(write)

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

        result: tuple[str, bytes] | None = self._run_read(body)
        return result

    # -- reading --

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace as a ``Trace.to_dict()`` dict, or None. Thread-safe."""

        def body(conn: sqlite3.Connection) -> dict[str, Any] | None:
            infos = _load_infos(conn, [trace_id])
            if trace_id not in infos:
                return None
            return {"info": infos[trace_id], "data": {"spans": _load_spans(conn, [trace_id])[trace_id]}}

        return self._run_read(body)

    def get_trace_info(self, trace_id: str) -> dict[str, Any] | None:
        """The trace's ``TraceInfo.to_dict()`` dict (with current tags and assessments), or None.
        Thread-safe."""
        return self._run_read(lambda conn: _load_infos(conn, [trace_id]).get(trace_id))

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
        where, where_params = _where_sql(ast, None if experiment_ids is None else [str(e) for e in experiment_ids])
        order, order_params = _order_sql(orders)
        sql = f"SELECT t.trace_id FROM traces t WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        params = [*where_params, *order_params, limit + 1, offset]

        def body(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], str | None]:
            ids = [row[0] for row in conn.execute(sql, params)]
            page = ids[:limit]
            infos = _load_infos(conn, page)
            spans = _load_spans(conn, page) if include_spans else {}
            traces = [{"info": infos[i], "data": {"spans": spans.get(i, [])}} for i in page if i in infos]
            return traces, (_encode_page_token(offset + limit) if len(ids) > limit else None)

        return self._run_read(body)

    def count(self, experiment_id: str | None = None) -> int:
        """Number of stored traces (of one experiment if given). Thread-safe."""

        def body(conn: sqlite3.Connection) -> int:
            if experiment_id is None:
                return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            row = conn.execute("SELECT count(*) FROM traces WHERE experiment_id = ?", (str(experiment_id),)).fetchone()
            return int(row[0])

        return self._run_read(body)

    # -- tags --

    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None:
        """Set (or overwrite) a tag. Setting ``mlflow.traceName`` renames the trace. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            InvalidArgumentError: key/value are not strings or the key is empty.
        """
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidArgumentError(f"Tag key must be a non-empty str and value a str; got {key!r}={value!r}.")
        key, value = _safe_text(key), _safe_text(value)

        def body(conn: sqlite3.Connection) -> None:
            _require_trace(conn, trace_id)
            conn.execute(
                "INSERT INTO tags (trace_id, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (trace_id, key) DO UPDATE SET value = excluded.value",
                (trace_id, key, value),
            )
            if key == flt.TRACE_NAME_TAG:
                conn.execute("UPDATE traces SET trace_name = ? WHERE trace_id = ?", (value, trace_id))

        self._run_write(body)

    def delete_trace_tag(self, trace_id: str, key: str) -> None:
        """Delete a tag. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            TagNotFoundError: The trace has no such tag (a ``KeyError``).
        """

        def body(conn: sqlite3.Connection) -> None:
            _require_trace(conn, trace_id)
            if conn.execute("DELETE FROM tags WHERE trace_id = ? AND key = ?", (trace_id, key)).rowcount == 0:
                raise TagNotFoundError(trace_id, key)
            if key == flt.TRACE_NAME_TAG:
                conn.execute("UPDATE traces SET trace_name = NULL WHERE trace_id = ?", (trace_id,))

        self._run_write(body)

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
            body = _normalize_assessment(assessment_dict, trace_id, _now_ms())
        except ValueError as exc:
            raise InvalidArgumentError(f"Invalid assessment: {exc}") from exc
        body.setdefault("assessment_id", "a-" + uuid.uuid4().hex)
        prepared = _prepare_assessment(_order_keys(body, _ASSESSMENT_KEY_ORDER), valid=True)

        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            _require_trace(conn, trace_id)
            if prepared.body.get("overrides"):
                _set_valid(conn, trace_id, prepared.body["overrides"], False, must_exist=True)
            try:
                conn.execute(_INSERT_ASSESSMENT, prepared.row())
            except sqlite3.IntegrityError:
                raise InvalidArgumentError(f"Assessment ID '{prepared.assessment_id}' already exists.") from None
            return _render_assessment(_dumps(prepared.body), 1)

        return self._run_write(write)

    def get_assessment(self, trace_id: str, assessment_id: str) -> dict[str, Any]:
        """One assessment. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
            AssessmentNotFoundError: No such assessment on the trace.
        """
        return self._run_read(lambda conn: _load_assessment(conn, trace_id, assessment_id))

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
            current = _load_assessment(conn, trace_id, assessment_id)
            valid = current.pop("valid", True)
            try:
                updated = _apply_assessment_changes(current, changes)
            except ValueError as exc:
                raise InvalidArgumentError(f"Invalid assessment update: {exc}") from exc
            prepared = _prepare_assessment(updated, valid=valid)
            conn.execute(
                "UPDATE assessments SET name = ?, value_json = ?, numeric_value = ?, body = ? "
                "WHERE trace_id = ? AND assessment_id = ?",
                (prepared.name, prepared.value_json, prepared.numeric_value, _dumps(updated), trace_id, assessment_id),
            )
            return _render_assessment(_dumps(updated), int(valid))

        return self._run_write(write)

    def delete_assessment(self, trace_id: str, assessment_id: str) -> None:
        """Delete an assessment; deleting an unknown assessment is a no-op (as in MLflow). If it
        overrode another one, that one becomes valid again. Thread-safe.

        Raises:
            TraceNotFoundError: No such trace.
        """

        def write(conn: sqlite3.Connection) -> None:
            _require_trace(conn, trace_id)
            row = conn.execute(
                "SELECT body FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id)
            ).fetchone()
            if row is None:
                return
            overrides = json.loads(row[0]).get("overrides")
            conn.execute("DELETE FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id))
            if overrides:
                _set_valid(conn, trace_id, overrides, True, must_exist=False)

        self._run_write(write)

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
                ids = _existing_ids(conn, str(experiment_id), list(trace_ids))
            else:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT trace_id FROM traces WHERE experiment_id = ? AND request_time <= ? "
                        "ORDER BY request_time, trace_id LIMIT ?",
                        (str(experiment_id), int(max_timestamp_millis or 0), -1 if max_traces is None else max_traces),
                    )
                ]
            _delete_ids(conn, ids)
            return len(ids)

        return self._run_write(write)

    def close(self) -> None:
        """Close the store's connections; later calls raise :class:`StoreError`. Idempotent.
        Thread-safe, but calls still running in other threads finish on their own connection."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")  # refreshes planner statistics if worthwhile
            conn.close()

    def __enter__(self) -> SqliteTraceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- statement helpers (run inside a transaction) -----------------------------------------------

_INSERT_ASSESSMENT = (
    "INSERT INTO assessments (assessment_id, trace_id, kind, name, value_json, numeric_value, valid, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_ASSESSMENT = (
    _INSERT_ASSESSMENT + " ON CONFLICT (assessment_id) DO UPDATE SET trace_id = excluded.trace_id, "
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


def _failure_key(trace: Any, index: int) -> str:
    info = trace.get("info") if isinstance(trace, Mapping) else None
    trace_id = info.get("trace_id") if isinstance(info, Mapping) else None
    return trace_id if isinstance(trace_id, str) and trace_id else f"#{index}"


def _write_prepared(conn: sqlite3.Connection, traces: Sequence[_PreparedTrace]) -> None:
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


def _require_trace(conn: sqlite3.Connection, trace_id: str) -> None:
    if conn.execute("SELECT 1 FROM traces WHERE trace_id = ?", (trace_id,)).fetchone() is None:
        raise TraceNotFoundError(trace_id)


def _set_valid(conn: sqlite3.Connection, trace_id: str, assessment_id: str, valid: bool, must_exist: bool) -> None:
    cursor = conn.execute(
        "UPDATE assessments SET valid = ? WHERE trace_id = ? AND assessment_id = ?",
        (int(valid), trace_id, assessment_id),
    )
    if must_exist and cursor.rowcount == 0:
        raise AssessmentNotFoundError(trace_id, assessment_id)


def _existing_ids(conn: sqlite3.Connection, experiment_id: str, trace_ids: list[str]) -> list[str]:
    found: list[str] = []
    for chunk in _chunks(trace_ids):
        found.extend(
            r[0]
            for r in conn.execute(
                f"SELECT trace_id FROM traces WHERE experiment_id = ? AND trace_id IN ({_placeholders(len(chunk))})",
                (experiment_id, *chunk),
            )
        )
    return found


def _delete_ids(conn: sqlite3.Connection, trace_ids: list[str]) -> None:
    for chunk in _chunks(trace_ids):
        marks = _placeholders(len(chunk))
        for table in ("spans", "tags", "metadata", "assessments", "traces"):
            conn.execute(f"DELETE FROM {table} WHERE trace_id IN ({marks})", chunk)
        conn.execute(_ATTACHMENTS_TABLE)  # made on first use; a trace's attachments go with it
        conn.execute(f"DELETE FROM attachments WHERE trace_id IN ({marks})", chunk)


def _load_infos(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Info dicts (with current tags and assessments) for these ids; unknown ids are absent."""
    infos: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, str]] = {}
    assessments: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(list(trace_ids)):
        marks = _placeholders(len(chunk))
        rows = conn.execute(f"SELECT trace_id, info_json FROM traces WHERE trace_id IN ({marks})", chunk)
        infos.update((trace_id, json.loads(info_json)) for trace_id, info_json in rows)
        for trace_id, key, value in conn.execute(
            f"SELECT trace_id, key, value FROM tags WHERE trace_id IN ({marks}) ORDER BY rowid", chunk
        ):
            tags.setdefault(trace_id, {})[key] = value
        for trace_id, body, valid in conn.execute(
            f"SELECT trace_id, body, valid FROM assessments WHERE trace_id IN ({marks}) ORDER BY rowid", chunk
        ):
            assessments.setdefault(trace_id, []).append(_render_assessment(body, valid))
    for trace_id, info in infos.items():
        if trace_id in assessments:
            info["assessments"] = assessments[trace_id]
        if trace_id in tags:
            info["tags"] = tags[trace_id]
        infos[trace_id] = _order_keys(info, _INFO_KEY_ORDER)
    return infos


def _load_spans(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    texts: dict[str, list[str]] = {trace_id: [] for trace_id in trace_ids}
    for chunk in _chunks(list(trace_ids)):
        marks = _placeholders(len(chunk))
        for trace_id, content in conn.execute(
            f"SELECT trace_id, content FROM spans WHERE trace_id IN ({marks}) ORDER BY trace_id, ord", chunk
        ):
            texts[trace_id].append(content)
    # one json.loads per trace instead of one per span
    return {trace_id: json.loads("[" + ",".join(parts) + "]") for trace_id, parts in texts.items()}


def _load_assessment(conn: sqlite3.Connection, trace_id: str, assessment_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT body, valid FROM assessments WHERE trace_id = ? AND assessment_id = ?", (trace_id, assessment_id)
    ).fetchone()
    if row is None:
        _require_trace(conn, trace_id)
        raise AssessmentNotFoundError(trace_id, assessment_id)
    return _render_assessment(row[0], row[1])


def _apply_assessment_changes(current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    updated = dict(current)
    kind = flt.assessment_kind(current)
    for value_kind in ("feedback", "expectation"):
        if changes.get(value_kind) is not None:
            if kind != value_kind:
                raise ValueError(f"cannot set a {value_kind} value on a {kind} assessment")
            updated[value_kind] = _VALUE_NORMALIZERS[value_kind](changes[value_kind])
    if changes.get("assessment_name") is not None:
        if not isinstance(changes["assessment_name"], str) or not changes["assessment_name"]:
            raise ValueError("assessment_name must be a non-empty str")
        updated["assessment_name"] = changes["assessment_name"]
    if changes.get("rationale") is not None:
        updated["rationale"] = str(changes["rationale"])
    if changes.get("metadata"):
        if not isinstance(changes["metadata"], Mapping):
            raise ValueError("metadata must be a mapping")
        merged = {**(current.get("metadata") or {}), **{str(k): str(v) for k, v in changes["metadata"].items()}}
        updated["metadata"] = merged
    updated["last_update_time"] = flt.format_timestamp_ms(_now_ms())
    return _order_keys(updated, _ASSESSMENT_KEY_ORDER)
