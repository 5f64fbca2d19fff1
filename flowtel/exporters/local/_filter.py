"""MLflow trace search grammar: ``filter_string`` / ``order_by`` parsing and in-memory evaluation.

The grammar is the one MLflow's ``SearchTraceUtils`` accepts (``mlflow/utils/search_utils.py``):
comparisons joined by ``AND`` only, each ``<prefix>.<key> <op> <value>``::

    trace.status = 'ERROR' AND timestamp_ms > 1700000000000
    tags.`mlflow.traceName` LIKE 'agent%' AND metadata.`mlflow.trace.user` = "alice"
    span.type = 'CHAT_MODEL' AND span.attributes.`mlflow.llm.model` IN ('gpt-4o', 'gpt-4o-mini')
    feedback.quality = 'true' AND feedback.score >= 0.5 AND expectation.answer IS NOT NULL

:func:`parse_filter` turns a filter into a :class:`TraceFilter` (a tuple of :class:`Clause`),
:func:`parse_order_by` turns ``order_by`` strings into :class:`OrderBy` keys. :func:`matches` and
:func:`sort_traces` evaluate them over traces in ``Trace.to_dict()`` form; the SQLite store
translates the same AST to SQL and shares the value helpers defined here, so both give the same
answers.

Where MLflow's own implementation is broken we follow what its documentation promises:

- ``name``/``run_id`` accept ``IN``/``NOT IN`` (MLflow 3.17 rejects them after aliasing).
- ``span.attributes.<k>`` compares the attribute's decoded value (``"\\"gpt-4o\\""`` is compared as
  ``gpt-4o``); MLflow matches ``LIKE`` against the span's JSON text and never matches ``=``.
- Quoted strings unescape a doubled quote (``'it''s'``) and a backslash-quote (``'it\\'s'``).
- ``LIKE`` is case-sensitive and ``%`` also matches newlines (SQL semantics).
- ``RLIKE`` patterns are checked when parsing: a bad regular expression is an error, not "no match".

flowtel extensions (also accepted): ``trace_id`` (= ``request_id``) and ``state`` (= ``status``),
a bare ``text`` key (MLflow's tokenizer only takes ``trace.text``), and numeric strings for numeric
attributes. Not copied from MLflow: its aliasing of ``name``/``run_id``/``text`` under *any* prefix
(``tags.name`` there means the trace name; here it is the tag ``name``), leading/trailing ``AND``.
Session-scoped assessments (MLflow applies them to every trace of the session) are evaluated on
the trace that holds them only.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from flowtel._exceptions import InvalidParameterError
from flowtel.entities._protojson import format_timestamp, parse_timestamp

__all__ = [
    "Clause",
    "Entity",
    "InvalidFilterError",
    "Op",
    "OrderBy",
    "TraceFilter",
    "matches",
    "parse_filter",
    "parse_order_by",
    "sort_traces",
    "with_default_order",
    # value helpers shared with the SQLite store
    "assessment_kind",
    "assessment_numeric_value",
    "assessment_value",
    "assessment_value_json",
    "attribute_text",
    "experiment_id_of",
    "format_timestamp_ms",
    "like_regex",
    "like_to_glob",
    "parse_timestamp_ms",
    "prompt_link_matches",
    "rlike",
    "span_content",
    "span_status_code",
    "span_type",
]


class InvalidFilterError(InvalidParameterError, ValueError):
    """A ``filter_string`` or ``order_by`` entry that the MLflow search grammar does not accept.

    Attributes:
        token: The offending token (or clause) as written by the user, when there is one.
    """

    def __init__(self, message: str, token: str | None = None) -> None:
        super().__init__(message)
        self.token = token


class Entity(str, Enum):
    """What a clause (or an ``order_by`` key) looks at."""

    ATTRIBUTE = "attribute"  # key: request_id, timestamp_ms, execution_time_ms, end_time_ms, status,
    # client_request_id (and experiment_id in order_by)
    TAG = "tag"  # key: tag key
    METADATA = "metadata"  # key: trace metadata key
    SPAN = "span"  # key: name | type | status | content; true if ONE span meets all SPAN clauses
    SPAN_ATTRIBUTE = "span_attribute"  # key: span attribute name (value compared decoded)
    FEEDBACK = "feedback"  # key: assessment name
    EXPECTATION = "expectation"  # key: assessment name
    ISSUE = "issue"  # key: "id"; value: the issue id (the assessment name)
    PROMPT = "prompt"  # key: "mlflow.linkedPrompts"; value: "name/version"


class Op(str, Enum):
    """Comparison operators, spelled as in the grammar."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    LIKE = "LIKE"
    ILIKE = "ILIKE"
    RLIKE = "RLIKE"
    IN = "IN"
    NOT_IN = "NOT IN"
    IS_NULL = "IS NULL"
    IS_NOT_NULL = "IS NOT NULL"


FilterValue = Union[str, int, float, tuple[str, ...], None]


@dataclass(frozen=True)
class Clause:
    """One comparison. ``value`` is a str, an int/float (numeric ops), a tuple of str
    (``IN``/``NOT IN``) or None (``IS [NOT] NULL``)."""

    entity: Entity
    key: str
    op: Op
    value: FilterValue


@dataclass(frozen=True)
class TraceFilter:
    """A parsed filter: every clause must hold (``AND``). Empty means "match everything"."""

    clauses: tuple[Clause, ...] = ()

    def span_clauses(self) -> tuple[Clause, ...]:
        """Clauses that one and the same span must satisfy together (as MLflow's SQL store does)."""
        return tuple(c for c in self.clauses if c.entity in (Entity.SPAN, Entity.SPAN_ATTRIBUTE))

    def trace_clauses(self) -> tuple[Clause, ...]:
        """Clauses evaluated on the trace (everything except span clauses)."""
        return tuple(c for c in self.clauses if c.entity not in (Entity.SPAN, Entity.SPAN_ATTRIBUTE))


@dataclass(frozen=True)
class OrderBy:
    """One ``order_by`` key. ``entity`` is ATTRIBUTE, TAG or METADATA."""

    entity: Entity
    key: str
    ascending: bool


# --- canonical attribute keys -------------------------------------------------------------------

ATTR_REQUEST_ID = "request_id"
ATTR_TIMESTAMP = "timestamp_ms"
ATTR_EXECUTION_TIME = "execution_time_ms"
ATTR_END_TIME = "end_time_ms"
ATTR_STATUS = "status"
ATTR_CLIENT_REQUEST_ID = "client_request_id"
ATTR_EXPERIMENT_ID = "experiment_id"  # order_by only

NUMERIC_ATTRIBUTES = frozenset({ATTR_TIMESTAMP, ATTR_EXECUTION_TIME, ATTR_END_TIME})

TRACE_NAME_TAG = "mlflow.traceName"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"
SOURCE_RUN_METADATA = "mlflow.sourceRun"
SPAN_FIELDS = frozenset({"name", "type", "status"})
SPAN_CONTENT = "content"

# Filter attribute spelling -> (entity, key). Mirrors SearchTraceUtils.SEARCH_KEY_TO_* maps.
_FILTER_ATTRIBUTES: dict[str, tuple[Entity, str]] = {
    "request_id": (Entity.ATTRIBUTE, ATTR_REQUEST_ID),
    "trace_id": (Entity.ATTRIBUTE, ATTR_REQUEST_ID),
    "timestamp": (Entity.ATTRIBUTE, ATTR_TIMESTAMP),
    "timestamp_ms": (Entity.ATTRIBUTE, ATTR_TIMESTAMP),
    "execution_time": (Entity.ATTRIBUTE, ATTR_EXECUTION_TIME),
    "execution_time_ms": (Entity.ATTRIBUTE, ATTR_EXECUTION_TIME),
    "end_time": (Entity.ATTRIBUTE, ATTR_END_TIME),
    "end_time_ms": (Entity.ATTRIBUTE, ATTR_END_TIME),
    "status": (Entity.ATTRIBUTE, ATTR_STATUS),
    "state": (Entity.ATTRIBUTE, ATTR_STATUS),
    "client_request_id": (Entity.ATTRIBUTE, ATTR_CLIENT_REQUEST_ID),
    "name": (Entity.TAG, TRACE_NAME_TAG),
    "run_id": (Entity.METADATA, SOURCE_RUN_METADATA),
    "prompt": (Entity.PROMPT, LINKED_PROMPTS_TAG),
    "text": (Entity.SPAN, SPAN_CONTENT),
}
_ORDER_BY_ATTRIBUTES: dict[str, tuple[Entity, str]] = {
    "experiment_id": (Entity.ATTRIBUTE, ATTR_EXPERIMENT_ID),
    **{
        k: v
        for k, v in _FILTER_ATTRIBUTES.items()
        if k not in ("client_request_id", "prompt", "text")
    },
}

_PREFIXES: dict[str, Entity] = {
    "attribute": Entity.ATTRIBUTE,
    "attributes": Entity.ATTRIBUTE,
    "trace": Entity.ATTRIBUTE,
    "tag": Entity.TAG,
    "tags": Entity.TAG,
    "metadata": Entity.METADATA,
    "request_metadata": Entity.METADATA,
    "span": Entity.SPAN,
    "feedback": Entity.FEEDBACK,
    "expectation": Entity.EXPECTATION,
    "issue": Entity.ISSUE,
}
_PREFIXES_HELP = (
    "attribute/attributes/trace (or no prefix), tag/tags, metadata/request_metadata, span, "
    "feedback, expectation, issue"
)

_NUMERIC_OPS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GE, Op.LT, Op.LE})
_STRING_ATTRIBUTE_OPS = frozenset({Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.RLIKE, Op.IN, Op.NOT_IN})
_KEY_VALUE_OPS = frozenset({Op.EQ, Op.NE, Op.LIKE, Op.ILIKE, Op.RLIKE, Op.IS_NULL, Op.IS_NOT_NULL})
_ALIASED_KEY_VALUE_OPS = _KEY_VALUE_OPS | {Op.IN, Op.NOT_IN}  # name, run_id
_SPAN_CONTENT_OPS = frozenset({Op.LIKE, Op.ILIKE})
_ASSESSMENT_OPS = _KEY_VALUE_OPS | {Op.GT, Op.GE, Op.LT, Op.LE}
_ASSESSMENT_NUMERIC_OPS = frozenset({Op.GT, Op.GE, Op.LT, Op.LE})
_EQ_ONLY = frozenset({Op.EQ})
_OP_ORDER = tuple(Op)


def _ops_help(ops: Iterable[Op]) -> str:
    allowed = set(ops)
    return ", ".join(op.value for op in _OP_ORDER if op in allowed)


# --- tokenizer ----------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![A-Za-z_`'"])
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<bq>`[^`]*`)
  | (?P<sq>'(?:[^'\\]|\\.|'')*')
  | (?P<dq>"(?:[^"\\]|\\.|"")*")
  | (?P<op>>=|<=|!=|<>|==|=|<|>)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<dot>\.)
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "RLIKE", "ASC", "DESC"})


@dataclass(frozen=True)
class _Token:
    kind: str  # ws-free kinds from _TOKEN_RE plus "kw" and "eof"
    text: str
    pos: int

    def is_kw(self, *words: str) -> bool:
        return self.kind == "kw" and self.text.upper() in words


def _tokenize(text: str, what: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise InvalidFilterError(_unexpected_char_message(text, pos, what), text[pos])
        kind = m.lastgroup or ""
        if kind != "ws":
            if kind == "name" and m.group().upper() in _KEYWORDS:
                kind = "kw"
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Token("eof", "", len(text)))
    return tokens


def _unexpected_char_message(text: str, pos: int, what: str) -> str:
    ch = text[pos]
    if ch in "'\"`":
        return f"Invalid {what} {text!r}: unterminated {ch}-quoted string starting at position {pos}."
    return (
        f"Invalid {what} {text!r}: unexpected character {ch!r} at position {pos}. Quote values "
        "with '...' or \"...\" and put keys with special characters in backquotes, e.g. "
        "tags.`my-key` = 'v'."
    )


def _unquote(token: _Token) -> str:
    """Strip the quotes of a string/backquoted token; ``''`` and ``\\'`` stand for one quote."""
    quote, body = token.text[0], token.text[1:-1]
    if quote == "`":
        return body
    return body.replace(quote * 2, quote).replace("\\" + quote, quote)


# --- parser -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identifier:
    parts: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class _RawClause:
    """A clause as written, before its key is resolved and checked."""

    ident: _Identifier
    op: Op
    value: FilterValue
    op_token: _Token
    value_token: _Token


class _Parser:
    """Recursive-descent parser over the token list of one filter string."""

    def __init__(self, text: str, what: str = "filter") -> None:
        self.text = text
        self.what = what
        self.tokens = _tokenize(text, what)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        if token.kind != "eof":
            self.i += 1
        return token

    def error(self, message: str, token: _Token | None = None) -> InvalidFilterError:
        where = f" (at position {token.pos})" if token is not None and token.kind != "eof" else ""
        return InvalidFilterError(
            f"Invalid {self.what} {self.text!r}{where}: {message}",
            token.text if token is not None else None,
        )

    def parse(self) -> TraceFilter:
        clauses = [self.parse_clause()]
        while True:
            token = self.take()
            if token.kind == "eof":
                return TraceFilter(tuple(clauses))
            if token.is_kw("AND"):
                clauses.append(self.parse_clause())
            elif token.is_kw("OR"):
                raise self.error(
                    "'OR' is not supported; clauses can only be combined with AND. "
                    "Run one search per alternative, or use IN (...) for several values.",
                    token,
                )
            else:
                raise self.error(f"expected AND or the end of the filter, got {token.text!r}.", token)

    def parse_clause(self) -> Clause:
        token = self.peek()
        if token.kind == "lp":
            raise self.error("parentheses around clauses are not supported; use 'a AND b'.", token)
        ident = self.parse_identifier()
        op, op_token = self.parse_operator(ident)
        if op in (Op.IS_NULL, Op.IS_NOT_NULL):
            return _build_clause(self, _RawClause(ident, op, None, op_token, op_token))
        value_token = self.peek()
        value = self.parse_list(ident) if op in (Op.IN, Op.NOT_IN) else self.parse_scalar(ident)
        return _build_clause(self, _RawClause(ident, op, value, op_token, value_token))

    def parse_identifier(self) -> _Identifier:
        first = self.take()
        if first.kind not in ("name", "bq"):
            got = "the end of the filter" if first.kind == "eof" else repr(first.text)
            raise self.error(
                f"expected a search key such as trace.status, tags.`k` or span.name, got {got}.", first
            )
        parts = [_unquote(first) if first.kind == "bq" else first.text]
        while self.peek().kind == "dot":
            self.take()
            part = self.take()
            if part.kind in ("bq", "sq", "dq"):
                parts.append(_unquote(part))
            elif part.kind in ("name", "kw"):
                parts.append(part.text)
            else:
                raise self.error(
                    f"invalid key part {part.text!r} after '.'; put keys with special characters "
                    "in backquotes, e.g. tags.`my-key`.",
                    part,
                )
        last = self.tokens[self.i - 1]
        return _Identifier(tuple(parts), self.text[first.pos : last.pos + len(last.text)])

    def parse_operator(self, ident: _Identifier) -> tuple[Op, _Token]:
        token = self.take()
        if token.kind == "op":
            if token.text in ("<>", "=="):
                raise self.error(f"invalid comparator {token.text!r}; use '!=' or '='.", token)
            return Op(token.text), token
        if token.is_kw("LIKE", "ILIKE", "RLIKE", "IN"):
            return Op(token.text.upper()), token
        if token.is_kw("NOT"):
            nxt = self.take()
            if nxt.is_kw("IN"):
                return Op.NOT_IN, token
            raise self.error(f"expected IN after NOT, got {nxt.text!r} (NOT LIKE is not supported).", nxt)
        if token.is_kw("IS"):
            return self.parse_is_null(), token
        got = "the end of the filter" if token.kind == "eof" else repr(token.text)
        raise self.error(
            f"expected a comparator after {ident.text!r}, got {got}. Allowed: {_ops_help(_OP_ORDER)}.",
            token,
        )

    def parse_is_null(self) -> Op:
        token = self.take()
        negate = token.is_kw("NOT")
        if negate:
            token = self.take()
        if not token.is_kw("NULL"):
            raise self.error(f"expected NULL after IS{' NOT' if negate else ''}, got {token.text!r}.", token)
        return Op.IS_NOT_NULL if negate else Op.IS_NULL

    def parse_scalar(self, ident: _Identifier) -> str | int | float:
        token = self.take()
        if token.kind in ("sq", "dq"):
            return _unquote(token)
        if token.kind == "num":
            return _parse_number(token.text)
        got = "nothing" if token.kind == "eof" else repr(token.text)
        raise self.error(
            f"expected a quoted string (e.g. 'my-value') or a number as the value of "
            f"{ident.text!r}, got {got}.",
            token,
        )

    def parse_list(self, ident: _Identifier) -> tuple[str, ...]:
        token = self.take()
        if token.kind != "lp":
            raise self.error(
                f"expected a parenthesized list of quoted strings after IN, e.g. "
                f"{ident.text} IN ('a', 'b'), got {token.text!r}.",
                token,
            )
        values: list[str] = []
        while True:
            item = self.take()
            if item.kind == "rp" and values:
                return tuple(values)
            if item.kind not in ("sq", "dq"):
                what = "an empty list" if item.kind == "rp" else repr(item.text)
                raise self.error(
                    f"IN lists must hold one or more quoted strings, e.g. ('a', 'b'); got {what}.", item
                )
            values.append(_unquote(item))
            sep = self.take()
            if sep.kind == "rp":
                return tuple(values)
            if sep.kind != "comma":
                raise self.error(f"expected ',' or ')' in the IN list, got {sep.text!r}.", sep)


def _parse_number(text: str) -> int | float:
    if re.fullmatch(r"[+-]?\d+", text):
        value = int(text)
        if -(2**63) <= value < 2**63:
            return value
        # Beyond SQLite's INTEGER: compared as a float (infinite past 1e308), never an overflow.
    return float(text)


# --- clause building (semantic checks) ----------------------------------------------------------


def _build_clause(parser: _Parser, raw: _RawClause) -> Clause:
    entity, key, via_alias = _resolve_identifier(parser, raw.ident)
    if entity is Entity.ATTRIBUTE:
        return _attribute_clause(parser, raw, key)
    if entity is Entity.SPAN:
        return _span_clause(parser, raw, key)
    if entity in (Entity.FEEDBACK, Entity.EXPECTATION):
        return _assessment_clause(parser, raw, entity, key)
    if entity is Entity.ISSUE:
        return _issue_clause(parser, raw, key)
    if entity is Entity.PROMPT or (entity is Entity.TAG and key == LINKED_PROMPTS_TAG):
        return _prompt_clause(parser, raw)
    # TAG / METADATA; the ``name`` and ``run_id`` aliases additionally take IN lists
    _check_op(parser, raw, _ALIASED_KEY_VALUE_OPS if via_alias else _KEY_VALUE_OPS)
    _check_string_value(parser, raw)
    return Clause(entity, key, raw.op, raw.value)


def _resolve_identifier(parser: _Parser, ident: _Identifier) -> tuple[Entity, str, bool]:
    """(entity, key, whether the key was an attribute alias such as ``name`` or ``run_id``)."""
    parts = ident.parts
    if len(parts) == 1:
        return (*_attribute_alias(parser, parts[0]), True)
    prefix, key = parts[0], ".".join(parts[1:])
    entity = _PREFIXES.get(prefix)
    if entity is None:
        raise parser.error(f"invalid entity type {prefix!r} in {ident.text!r}. Valid prefixes: {_PREFIXES_HELP}.")
    if not key:
        raise parser.error(f"empty key in {ident.text!r}.")
    if entity is Entity.ATTRIBUTE:
        return (*_attribute_alias(parser, key), True)
    return entity, key, False


def _attribute_alias(parser: _Parser, key: str) -> tuple[Entity, str]:
    resolved = _FILTER_ATTRIBUTES.get(key)
    if resolved is None:
        raise parser.error(
            f"invalid attribute key {key!r}. Valid keys: {', '.join(sorted(_FILTER_ATTRIBUTES))}; "
            "use tags.<key> or metadata.<key> for tags and metadata."
        )
    return resolved


def _check_op(parser: _Parser, raw: _RawClause, allowed: frozenset[Op]) -> None:
    if raw.op not in allowed:
        raise parser.error(
            f"comparator {raw.op.value!r} is not allowed for {raw.ident.text!r}; allowed: {_ops_help(allowed)}.",
            raw.op_token,
        )


def _check_string_value(parser: _Parser, raw: _RawClause) -> None:
    """Non-list, non-null values must be quoted strings; RLIKE patterns must compile."""
    if raw.op in (Op.IS_NULL, Op.IS_NOT_NULL, Op.IN, Op.NOT_IN):
        return
    if not isinstance(raw.value, str):
        raise parser.error(
            f"expected a quoted string value for {raw.ident.text!r} (e.g. 'my-value'), got {raw.value_token.text}.",
            raw.value_token,
        )
    if raw.op is Op.RLIKE:
        try:
            _compiled_regex(raw.value)
        except re.error as exc:
            raise parser.error(
                f"invalid regular expression {raw.value!r} for RLIKE: {exc}.", raw.value_token
            ) from None


def _attribute_clause(parser: _Parser, raw: _RawClause, key: str) -> Clause:
    if key in NUMERIC_ATTRIBUTES:
        _check_op(parser, raw, _NUMERIC_OPS)
        return Clause(Entity.ATTRIBUTE, key, raw.op, _numeric_value(parser, raw))
    _check_op(parser, raw, _STRING_ATTRIBUTE_OPS)
    if isinstance(raw.value, (int, float)):
        raise parser.error(
            f"{raw.ident.text!r} is a string attribute; quote the value. Only "
            f"{', '.join(sorted(NUMERIC_ATTRIBUTES))} compare with numbers.",
            raw.value_token,
        )
    _check_string_value(parser, raw)
    return Clause(Entity.ATTRIBUTE, key, raw.op, raw.value)


def _numeric_value(parser: _Parser, raw: _RawClause) -> int | float:
    value = raw.value
    # MLflow's SQL store accepts '123' for numeric columns (SQLite coerces it); keep that working.
    if isinstance(value, str):
        try:
            value = _parse_number(value.strip())
        except ValueError:
            pass
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    raise parser.error(
        f"expected a number for numeric attribute {raw.ident.text!r}, got {raw.value_token.text}.", raw.value_token
    )


def _span_clause(parser: _Parser, raw: _RawClause, key: str) -> Clause:
    if key == SPAN_CONTENT:
        _check_op(parser, raw, _SPAN_CONTENT_OPS)
        _check_string_value(parser, raw)
        return Clause(Entity.SPAN, SPAN_CONTENT, raw.op, raw.value)
    if key in SPAN_FIELDS:
        entity, name = Entity.SPAN, key
    elif key.startswith("attributes.") and len(key) > len("attributes."):
        entity, name = Entity.SPAN_ATTRIBUTE, key[len("attributes.") :]
    elif key == "attributes":
        raise parser.error(
            f"span attribute name cannot be empty in {raw.ident.text!r}; use span.attributes.`<name>`."
        )
    else:
        raise parser.error(
            f"invalid span key {key!r}. Supported: span.name, span.type, span.status, span.content, "
            "span.attributes.`<name>`."
        )
    _check_op(parser, raw, _STRING_ATTRIBUTE_OPS)
    _check_string_value(parser, raw)
    return Clause(entity, name, raw.op, raw.value)


def _assessment_clause(parser: _Parser, raw: _RawClause, entity: Entity, key: str) -> Clause:
    _check_op(parser, raw, _ASSESSMENT_OPS)
    value = raw.value
    if raw.op in _ASSESSMENT_NUMERIC_OPS:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise parser.error(
                f"expected a number for {entity.value} when using {raw.op.value!r}, got {raw.value_token.text}.",
                raw.value_token,
            )
        return Clause(entity, key, raw.op, value)
    if isinstance(value, (int, float)):
        raise parser.error(
            f"expected a quoted string value for {entity.value} with {raw.op.value!r} "
            f"(e.g. {raw.ident.text} = '{value}'), got {raw.value_token.text}.",
            raw.value_token,
        )
    _check_string_value(parser, raw)
    return Clause(entity, key, raw.op, value)


def _issue_clause(parser: _Parser, raw: _RawClause, key: str) -> Clause:
    if key != "id":
        raise parser.error(f"invalid issue attribute {key!r}. Supported attributes: id.")
    _check_op(parser, raw, _EQ_ONLY)
    _check_string_value(parser, raw)
    return Clause(Entity.ISSUE, "id", raw.op, raw.value)


def _prompt_clause(parser: _Parser, raw: _RawClause) -> Clause:
    _check_op(parser, raw, _EQ_ONLY)
    _check_string_value(parser, raw)
    if not isinstance(raw.value, str) or raw.value.count("/") != 1:
        raise parser.error(
            f"invalid prompt filter value {raw.value!r}; expected prompt = 'name/version'.", raw.value_token
        )
    return Clause(Entity.PROMPT, LINKED_PROMPTS_TAG, raw.op, raw.value)


# --- public parse API ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse_filter_cached(filter_string: str) -> TraceFilter:
    return _Parser(filter_string).parse()


def parse_filter(filter_string: str | None) -> TraceFilter:
    """Parse an MLflow trace ``filter_string``.

    Pure function; thread-safe (results are immutable and cached).

    Args:
        filter_string: e.g. ``"trace.status = 'OK' AND tags.env = 'prod'"``; None or blank
            matches everything.

    Returns:
        The AND-ed clauses.

    Raises:
        InvalidFilterError: The filter is not valid MLflow trace-search grammar; the message names
            the offending token and what is allowed there.
    """
    if filter_string is None:
        return TraceFilter(())
    if not isinstance(filter_string, str):
        raise InvalidFilterError(f"filter_string must be a str, got {type(filter_string).__name__}.")
    if not filter_string.strip():
        return TraceFilter(())
    return _parse_filter_cached(filter_string)


def parse_order_by(order_by: Sequence[str] | None) -> tuple[OrderBy, ...]:
    """Parse MLflow trace ``order_by`` entries such as ``["timestamp_ms DESC", "tags.`k` ASC"]``.

    Keys: experiment_id, timestamp(_ms), execution_time(_ms), end_time(_ms), status, request_id,
    name (the trace name tag), run_id (the source-run metadata), tags.<key>, metadata.<key>.
    The direction defaults to ASC. Pure function; thread-safe.

    Args:
        order_by: The entries, most significant first; None or empty means the default order.

    Returns:
        The parsed keys (without the implicit ``timestamp_ms DESC, request_id ASC`` tie-breakers).

    Raises:
        InvalidFilterError: An entry cannot be parsed, names an unknown key, or repeats a key.
    """
    if order_by is None:
        return ()
    if isinstance(order_by, str):
        raise InvalidFilterError(f"order_by must be a list of strings, got the string {order_by!r}.")
    parsed: list[OrderBy] = []
    seen: set[tuple[Entity, str]] = set()
    for entry in order_by:
        item = _parse_order_by_entry(entry)
        if (item.entity, item.key) in seen:
            raise InvalidFilterError(f"`order_by` contains duplicate fields: {list(order_by)}", entry)
        seen.add((item.entity, item.key))
        parsed.append(item)
    return tuple(parsed)


def _parse_order_by_entry(entry: str) -> OrderBy:
    if not isinstance(entry, str) or not entry.strip():
        raise InvalidFilterError(f"Invalid order_by clause {entry!r}: expected '<key> [ASC|DESC]'.", str(entry))
    parser = _Parser(entry, "order_by clause")
    ident = parser.parse_identifier()
    direction = parser.take()
    ascending = True
    if direction.is_kw("ASC", "DESC"):
        ascending = direction.text.upper() == "ASC"
        direction = parser.take()
    if direction.kind != "eof":
        raise InvalidFilterError(
            f"Invalid order_by clause {entry!r}: unexpected {direction.text!r}; expected '<key> [ASC|DESC]'.",
            direction.text,
        )
    entity, key = _resolve_order_key(entry, ident)
    return OrderBy(entity, key, ascending)


def _resolve_order_key(entry: str, ident: _Identifier) -> tuple[Entity, str]:
    parts = ident.parts
    if len(parts) > 1 and _PREFIXES.get(parts[0]) in (Entity.TAG, Entity.METADATA):
        return _PREFIXES[parts[0]], ".".join(parts[1:])
    if len(parts) == 1 or _PREFIXES.get(parts[0]) is Entity.ATTRIBUTE:
        key = ".".join(parts[1:]) if len(parts) > 1 else parts[0]
        resolved = _ORDER_BY_ATTRIBUTES.get(key)
        if resolved is not None:
            return resolved
        raise InvalidFilterError(
            f"Invalid order_by key {key!r} in {entry!r}. Valid keys: "
            f"{', '.join(sorted(_ORDER_BY_ATTRIBUTES))}, tags.<key>, metadata.<key>.",
            key,
        )
    raise InvalidFilterError(
        f"Invalid order_by entity {parts[0]!r} in {entry!r}; only attributes, tags.<key> and "
        "metadata.<key> can be ordered by.",
        parts[0],
    )


# --- shared value helpers (also used by the SQLite store so both evaluate identically) ----------

def parse_timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch from a proto-JSON timestamp (``2026-11-22T10:56:14.130Z``)
    or from a number of milliseconds. Filter strings are typed by people, so a space or a
    lower-case ``t`` between date and time, and a lower-case ``z``, are accepted too.

    Raises:
        ValueError: The value is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid timestamp {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid timestamp {value!r}")
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if len(text) > 10 and text[10] in "t ":
        text = f"{text[:10]}T{text[11:]}"
    if text.endswith("z"):
        text = text[:-1] + "Z"
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"invalid RFC 3339 timestamp {value!r}") from None


def format_timestamp_ms(millis: int) -> str:
    """The proto-JSON rendering of a millisecond timestamp, as MLflow's ``to_dict`` emits it:
    ``...:14Z`` for whole seconds, ``...:14.130Z`` otherwise."""
    return format_timestamp(millis)


def attribute_text(raw: Any) -> str | None:
    """The comparable text of a span attribute: MLflow stores values JSON-encoded, so a JSON string
    compares as its content (``"\\"LLM\\""`` -> ``LLM``); anything else compares as JSON text."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        return json.dumps(raw, ensure_ascii=False)
    try:
        decoded = json.loads(raw)
    except ValueError:
        return raw
    return decoded if isinstance(decoded, str) else raw


def span_type(span: Mapping[str, Any]) -> str | None:
    """A span dict's ``mlflow.spanType`` (decoded), or None."""
    attributes = span.get("attributes") or {}
    return attribute_text(attributes.get("mlflow.spanType"))


def span_status_code(span: Mapping[str, Any]) -> str:
    """``OK``/``ERROR``/``UNSET`` from a span dict's ``status.code`` (``STATUS_CODE_OK`` or ``OK``)."""
    status = span.get("status") or {}
    code = status.get("code") if isinstance(status, Mapping) else None
    if not isinstance(code, str) or not code:
        return "UNSET"
    return code[len("STATUS_CODE_") :] if code.startswith("STATUS_CODE_") else code


def span_content(span: Mapping[str, Any]) -> str:
    """The JSON text ``span.content`` / ``trace.text`` searches (MLflow: ``json.dumps(span.to_dict(),
    ensure_ascii=False)``, so non-ASCII text matches what users type)."""
    return json.dumps(span, ensure_ascii=False)


def assessment_kind(assessment: Mapping[str, Any]) -> str | None:
    """``feedback``, ``expectation`` or ``issue`` (the proto oneof that is set), else None."""
    for kind in ("feedback", "expectation", "issue"):
        if assessment.get(kind) is not None:
            return kind
    return None


def assessment_value(assessment: Mapping[str, Any]) -> Any:
    """The Python value of an assessment dict (expectations may carry a JSON ``serialized_value``)."""
    kind = assessment_kind(assessment)
    body = assessment.get(kind) if kind else None
    if not isinstance(body, Mapping):
        return None
    if kind == "issue":
        return dict(body)
    if kind == "expectation" and "serialized_value" in body and "value" not in body:
        serialized = body.get("serialized_value") or {}
        try:
            return json.loads(serialized.get("value", "null"))
        except ValueError:
            return serialized.get("value")
    return body.get("value")


def assessment_value_json(assessment: Mapping[str, Any]) -> str:
    """The JSON text MLflow's SQL store keeps for an assessment value (``json.dumps(value)``);
    string filters (=, LIKE, ...) compare against it."""
    return json.dumps(assessment_value(assessment))


def assessment_numeric_value(value: Any) -> float | None:
    """The number ``feedback.x > 0.5`` compares with: finite ints/floats only (not booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def assessment_is_valid(assessment: Mapping[str, Any]) -> bool:
    """False once another assessment overrides it (``valid: false``); absent means valid."""
    return assessment.get("valid") is not False


def assessment_value_matches(value_json: str, numeric: float | None, op: Op, value: FilterValue) -> bool:
    """Assessment value comparison, as MLflow's SQL store does it: ``=``/``!=`` match the JSON text
    or the JSON-quoted string (so ``'true'`` matches ``true`` and ``'yes'`` matches ``"yes"``);
    LIKE/ILIKE/RLIKE look at the JSON text; ``<``, ``>``... only at numeric values."""
    if op in _ASSESSMENT_NUMERIC_OPS:
        return numeric is not None and _compare(numeric, op, value)
    if op in (Op.EQ, Op.NE):
        assert isinstance(value, str)
        equal = value_json in (value, json.dumps(value))
        return equal if op is Op.EQ else not equal
    return _compare(value_json, op, value)


def prompt_link_matches(tag_value: str | None, name_version: str) -> bool:
    """True when the ``mlflow.linkedPrompts`` tag (JSON list of {name, version}) has the prompt."""
    if not tag_value:
        return False
    try:
        links = json.loads(tag_value)
    except ValueError:
        return False
    name, _, version = name_version.partition("/")
    return isinstance(links, list) and any(
        isinstance(link, Mapping) and str(link.get("name")) == name and str(link.get("version")) == version
        for link in links
    )


@functools.lru_cache(maxsize=512)
def like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE as a regex (``%`` any run of characters incl. newlines, ``_`` one character, no
    escape character); use with ``fullmatch``."""
    body = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def like_to_glob(pattern: str) -> str:
    """A SQLite GLOB pattern equivalent to a case-sensitive LIKE pattern."""
    special = {"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join(special.get(ch, ch) for ch in pattern)


@functools.lru_cache(maxsize=512)
def _compiled_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def rlike(value: str, pattern: str) -> bool:
    """RLIKE: ``re.search`` (unanchored), as MLflow's SQLite REGEXP function."""
    return _compiled_regex(pattern).search(value) is not None


def _compare(lhs: Any, op: Op, rhs: FilterValue) -> bool:
    """SQL-like comparison: a missing (None) left-hand side never matches, not even != or NOT IN."""
    if lhs is None:
        return False
    if op is Op.EQ:
        return bool(lhs == rhs)
    if op is Op.NE:
        return bool(lhs != rhs)
    if op in (Op.IN, Op.NOT_IN):
        assert isinstance(rhs, tuple)
        return (lhs in rhs) == (op is Op.IN)
    if op in (Op.LIKE, Op.ILIKE):
        assert isinstance(rhs, str)
        return like_regex(rhs, op is Op.ILIKE).fullmatch(str(lhs)) is not None
    if op is Op.RLIKE:
        assert isinstance(rhs, str)
        return rlike(str(lhs), rhs)
    return _compare_ordered(lhs, op, rhs)


def _compare_ordered(lhs: Any, op: Op, rhs: Any) -> bool:
    if op is Op.GT:
        return bool(lhs > rhs)
    if op is Op.GE:
        return bool(lhs >= rhs)
    if op is Op.LT:
        return bool(lhs < rhs)
    if op is Op.LE:
        return bool(lhs <= rhs)
    raise AssertionError(f"unhandled operator {op}")


# --- in-memory evaluation -----------------------------------------------------------------------


class _TraceView:
    """Read access to a ``Trace.to_dict()`` (or bare ``TraceInfo.to_dict()``) dict."""

    def __init__(self, trace: Mapping[str, Any]) -> None:
        if "info" in trace:
            self.info: Mapping[str, Any] = trace.get("info") or {}
            data = trace.get("data") or {}
            self.spans: Sequence[Mapping[str, Any]] = data.get("spans") or []
        else:
            self.info, self.spans = trace, []
        self.tags: Mapping[str, str] = self.info.get("tags") or {}
        self.metadata: Mapping[str, str] = self.info.get("trace_metadata") or {}
        self.assessments: Sequence[Mapping[str, Any]] = self.info.get("assessments") or []

    def attribute(self, key: str) -> Any:
        if key == ATTR_REQUEST_ID:
            return self.info.get("trace_id")
        if key == ATTR_STATUS:
            return self.info.get("state")
        if key == ATTR_CLIENT_REQUEST_ID:
            return self.info.get("client_request_id")
        if key == ATTR_EXPERIMENT_ID:
            return experiment_id_of(self.info)
        return self.numeric_attribute(key)

    def numeric_attribute(self, key: str) -> int | None:
        request_time = self.info.get("request_time")
        timestamp = parse_timestamp_ms(request_time) if request_time is not None else None
        duration = self.info.get("execution_duration_ms")
        duration = int(duration) if duration is not None else None
        if key == ATTR_TIMESTAMP:
            return timestamp
        if key == ATTR_EXECUTION_TIME:
            return duration
        if key == ATTR_END_TIME:
            return None if timestamp is None else timestamp + (duration or 0)
        raise AssertionError(f"unknown attribute {key}")


def experiment_id_of(info: Mapping[str, Any]) -> str | None:
    """The experiment id of a trace-info dict, or None for non-experiment locations."""
    location = info.get("trace_location") or {}
    experiment = location.get("mlflow_experiment") if isinstance(location, Mapping) else None
    if isinstance(experiment, Mapping) and experiment.get("experiment_id") is not None:
        return str(experiment["experiment_id"])
    return None


def _key_value_matches(values: Mapping[str, str], clause: Clause) -> bool:
    if clause.op is Op.IS_NULL:
        return clause.key not in values
    if clause.op is Op.IS_NOT_NULL:
        return clause.key in values
    return _compare(values.get(clause.key), clause.op, clause.value)


def _assessment_clause_matches(view: _TraceView, clause: Clause) -> bool:
    candidates = [
        a
        for a in view.assessments
        if assessment_kind(a) == clause.entity.value
        and a.get("assessment_name") == clause.key
        and assessment_is_valid(a)
    ]
    if clause.op is Op.IS_NULL:
        return not candidates
    if clause.op is Op.IS_NOT_NULL:
        return bool(candidates)
    return any(
        assessment_value_matches(
            assessment_value_json(a), assessment_numeric_value(assessment_value(a)), clause.op, clause.value
        )
        for a in candidates
    )


def _issue_matches(view: _TraceView, clause: Clause) -> bool:
    return any(assessment_kind(a) == "issue" and a.get("assessment_name") == clause.value for a in view.assessments)


def _span_field(span: Mapping[str, Any], clause: Clause) -> str | None:
    if clause.entity is Entity.SPAN_ATTRIBUTE:
        return attribute_text((span.get("attributes") or {}).get(clause.key))
    if clause.key == "name":
        return span.get("name")
    if clause.key == "type":
        return span_type(span)
    if clause.key == "status":
        return span_status_code(span)
    return span_content(span)


def _span_matches(span: Mapping[str, Any], clauses: Sequence[Clause]) -> bool:
    return all(_compare(_span_field(span, c), c.op, c.value) for c in clauses)


_TRACE_CLAUSE_EVALUATORS: dict[Entity, Callable[[_TraceView, Clause], bool]] = {
    Entity.ATTRIBUTE: lambda v, c: _compare(v.attribute(c.key), c.op, c.value),
    Entity.TAG: lambda v, c: _key_value_matches(v.tags, c),
    Entity.METADATA: lambda v, c: _key_value_matches(v.metadata, c),
    Entity.FEEDBACK: _assessment_clause_matches,
    Entity.EXPECTATION: _assessment_clause_matches,
    Entity.ISSUE: _issue_matches,
    Entity.PROMPT: lambda v, c: prompt_link_matches(v.tags.get(LINKED_PROMPTS_TAG), str(c.value)),
}


def matches(ast: TraceFilter, trace: Mapping[str, Any]) -> bool:
    """Whether a trace satisfies a parsed filter, evaluated in Python.

    Pure function; thread-safe. Semantics match the SQLite store: SQL NULL logic (a missing tag,
    metadata key or attribute never matches ``=``, ``!=`` or ``NOT IN``), all span clauses must hold
    for one and the same span, and assessment clauses look at valid assessments only.

    Args:
        ast: From :func:`parse_filter`.
        trace: A ``Trace.to_dict()`` dict (``{"info": ..., "data": {"spans": [...]}}``) or a bare
            ``TraceInfo.to_dict()`` dict (then span clauses never match).

    Returns:
        True when every clause holds.
    """
    view = _TraceView(trace)
    for clause in ast.trace_clauses():
        if not _TRACE_CLAUSE_EVALUATORS[clause.entity](view, clause):
            return False
    span_clauses = ast.span_clauses()
    return not span_clauses or any(_span_matches(span, span_clauses) for span in view.spans)


def _order_value(view: _TraceView, order: OrderBy) -> Any:
    if order.entity is Entity.TAG:
        return view.tags.get(order.key)
    if order.entity is Entity.METADATA:
        return view.metadata.get(order.key)
    value = view.attribute(order.key)
    if order.key == ATTR_EXPERIMENT_ID and value is not None:
        return (len(value), value)  # numeric order for MLflow's integer ids, total order otherwise
    return value


def with_default_order(order_by: Sequence[OrderBy]) -> tuple[OrderBy, ...]:
    """``order_by`` plus MLflow's implicit tie-breakers ``timestamp_ms DESC, request_id ASC``."""
    keys = {(o.entity, o.key) for o in order_by}
    extra = [
        OrderBy(Entity.ATTRIBUTE, key, asc)
        for key, asc in ((ATTR_TIMESTAMP, False), (ATTR_REQUEST_ID, True))
        if (Entity.ATTRIBUTE, key) not in keys
    ]
    return (*order_by, *extra)


def sort_traces(traces: Iterable[Mapping[str, Any]], order_by: Sequence[OrderBy]) -> list[Mapping[str, Any]]:
    """Sort trace (or trace-info) dicts like the store: each key in turn, missing values last in
    both directions, then ``timestamp_ms DESC, request_id ASC``. Pure function; thread-safe."""
    items = [(t, _TraceView(t)) for t in traces]
    for order in reversed(with_default_order(order_by)):
        present = [(t, v) for t, v in items if _order_value(v, order) is not None]
        missing = [(t, v) for t, v in items if _order_value(v, order) is None]
        present.sort(key=lambda tv: _order_value(tv[1], order), reverse=not order.ascending)
        items = present + missing
    return [t for t, _ in items]
