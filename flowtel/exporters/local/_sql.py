"""Filter -> SQL: the search AST of :mod:`flowtel.exporters.local._filter` translated to a
``WHERE`` and an ``ORDER BY`` over the store's tables, with the same answers as the in-memory
evaluator (``matches`` / ``sort_traces``), plus the SQL functions those statements call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from flowtel.exporters.local import _filter as flt
from flowtel.exporters.local._filter import Clause, Entity, Op, OrderBy

__all__ = ["SQL_FUNCTIONS", "chunks", "order_sql", "placeholders", "where_sql"]

_SQL_VARIABLE_CHUNK = 500  # stay far below SQLITE_MAX_VARIABLE_NUMBER (999 on old builds)


def chunks(items: Sequence[Any], size: int = _SQL_VARIABLE_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices small enough for one statement's ``IN (?, ...)``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(n: int) -> str:
    """``?,?,...`` for ``n`` parameters."""
    return ",".join("?" * n)



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
        return f"{expr} {op.value} ({placeholders(len(values))})", values
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


def where_sql(ast: flt.TraceFilter, experiment_ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    if experiment_ids is not None:
        conds.append(f"t.experiment_id IN ({placeholders(len(experiment_ids))})" if experiment_ids else "0")
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


def order_sql(order_by: Sequence[OrderBy]) -> tuple[str, list[Any]]:
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


SQL_FUNCTIONS: tuple[tuple[str, int, Callable[..., Any]], ...] = (
    ("ft_ilike", 2, _udf(_ilike, 0)),
    ("ft_rlike", 2, _udf(_rlike, 0)),
    ("ft_attr", 2, _udf(_json_each_attribute, None)),
    ("ft_prompt_link", 2, _udf(_prompt_link, 0)),
)
