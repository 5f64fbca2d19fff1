"""The MLflow trace-search grammar: parser, order_by, in-memory evaluator and sorting.

Trace dicts are rendered by the real ``mlflow.entities`` classes (``Trace.to_dict()``) from spans
made with MLflow's own ``LiveSpan`` on a private OTel provider, so no global state is touched.
MLflow's ``SearchTraceUtils`` is the reference for what parses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowtel._exceptions import FlowtelException, InvalidParameterError
from flowtel.exporters.local._filter import (
    Clause,
    Entity,
    InvalidFilterError,
    Op,
    OrderBy,
    TraceFilter,
    attribute_text,
    format_timestamp_ms,
    like_to_glob,
    matches,
    parse_filter,
    parse_order_by,
    parse_timestamp_ms,
    sort_traces,
)

mlflow_entities = pytest.importorskip("mlflow.entities")
otel_trace = pytest.importorskip("opentelemetry.trace")
from mlflow.entities import (  # noqa: E402
    AssessmentSource,
    Expectation,
    Feedback,
    Trace,
    TraceData,
    TraceInfo,
    TraceLocation,
    TraceState,
)
from mlflow.entities.span import create_mlflow_span  # noqa: E402
from mlflow.utils.search_utils import SearchTraceUtils  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

_TRACER = TracerProvider().get_tracer("flowtel-tests")  # private provider: no global OTel state
T0_MS = 1_700_000_000_000


def make_trace(
    n: int,
    *,
    state: str = "OK",
    spans: list[dict[str, Any]] | None = None,
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    assessments: list[Any] | None = None,
    duration: int | None = 100,
    client_request_id: str | None = None,
    experiment_id: str = "1",
    request_time: int | None = None,
) -> dict[str, Any]:
    """A ``Trace.to_dict()`` made by MLflow. ``spans`` items: name, type, attributes, inputs,
    status ('OK'/'ERROR'); the first is the root."""
    start_ms = T0_MS + n * 1000 if request_time is None else request_time
    spans = spans or [{"name": f"root_{n}", "type": "AGENT"}]
    root_otel = _TRACER.start_span(spans[0]["name"], start_time=start_ms * 1_000_000)
    trace_id = "tr-" + format(root_otel.get_span_context().trace_id, "032x")
    live = []
    for i, spec in enumerate(spans):
        otel = root_otel if i == 0 else _TRACER.start_span(
            spec["name"], context=otel_trace.set_span_in_context(root_otel), start_time=(start_ms + i) * 1_000_000
        )
        span = create_mlflow_span(otel, trace_id, spec.get("type", "UNKNOWN"))
        if "inputs" in spec:
            span.set_inputs(spec["inputs"])
        for key, value in (spec.get("attributes") or {}).items():
            span.set_attribute(key, value)
        if spec.get("status"):
            span.set_status(spec["status"])
        live.append(span)
    for i, span in reversed(list(enumerate(live))):
        span.end(end_time_ns=(start_ms + 50 + i) * 1_000_000)
    all_tags = {"mlflow.traceName": spans[0]["name"], **(tags or {})}
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=start_ms,
        state=TraceState(state),
        execution_duration=duration,
        client_request_id=client_request_id,
        trace_metadata=dict(metadata or {}),
        tags=all_tags,
        assessments=[_with_trace_id(a, trace_id) for a in assessments or []],
    )
    return Trace(info=info, data=TraceData(spans=[s.to_immutable_span() for s in live])).to_dict()


def _with_trace_id(assessment: Any, trace_id: str) -> Any:
    assessment.trace_id = trace_id
    return assessment


def clauses(filter_string: str) -> list[tuple[str, str, str, Any]]:
    return [(c.entity.value, c.key, c.op.value, c.value) for c in parse_filter(filter_string).clauses]


# --------------------------------------------------------------------------------------------
# Parsing: every form of the grammar
# --------------------------------------------------------------------------------------------

VALID = [
    # attributes, with every prefix and alias
    ("trace.status = 'ERROR'", [("attribute", "status", "=", "ERROR")]),
    ("attribute.status != 'OK'", [("attribute", "status", "!=", "OK")]),
    ("attributes.status = \"OK\"", [("attribute", "status", "=", "OK")]),
    ("status IN ('OK', 'ERROR')", [("attribute", "status", "IN", ("OK", "ERROR"))]),
    ("state = 'IN_PROGRESS'", [("attribute", "status", "=", "IN_PROGRESS")]),
    ("request_id = 'tr-1'", [("attribute", "request_id", "=", "tr-1")]),
    ("trace.trace_id NOT IN ('tr-1','tr-2',)", [("attribute", "request_id", "NOT IN", ("tr-1", "tr-2"))]),
    ("client_request_id LIKE 'req-%'", [("attribute", "client_request_id", "LIKE", "req-%")]),
    ("timestamp_ms > 1700000000000", [("attribute", "timestamp_ms", ">", 1700000000000)]),
    ("timestamp <= 5", [("attribute", "timestamp_ms", "<=", 5)]),
    ("trace.timestamp_ms >= '1700000000000'", [("attribute", "timestamp_ms", ">=", 1700000000000)]),
    ("execution_time_ms < 1.5", [("attribute", "execution_time_ms", "<", 1.5)]),
    ("execution_time = -3", [("attribute", "execution_time_ms", "=", -3)]),
    ("end_time_ms != 1e3", [("attribute", "end_time_ms", "!=", 1000.0)]),
    ("end_time > 10", [("attribute", "end_time_ms", ">", 10)]),
    # aliases that map elsewhere
    ("name = 'agent'", [("tag", "mlflow.traceName", "=", "agent")]),
    ("trace.name IN ('a', 'b')", [("tag", "mlflow.traceName", "IN", ("a", "b"))]),
    ("name IS NULL", [("tag", "mlflow.traceName", "IS NULL", None)]),
    ("run_id = 'r1'", [("metadata", "mlflow.sourceRun", "=", "r1")]),
    ("run_id NOT IN ('r1')", [("metadata", "mlflow.sourceRun", "NOT IN", ("r1",))]),
    ("text ILIKE '%paris%'", [("span", "content", "ILIKE", "%paris%")]),
    ("trace.text LIKE '%Paris%'", [("span", "content", "LIKE", "%Paris%")]),
    ("prompt = 'qa/3'", [("prompt", "mlflow.linkedPrompts", "=", "qa/3")]),
    # tags / metadata, quoting styles, every operator
    ("tags.env = 'prod'", [("tag", "env", "=", "prod")]),
    ("tag.env != 'prod'", [("tag", "env", "!=", "prod")]),
    ("tags.`mlflow.traceName` LIKE 'a%'", [("tag", "mlflow.traceName", "LIKE", "a%")]),
    ("tags.mlflow.traceName ILIKE 'A%'", [("tag", "mlflow.traceName", "ILIKE", "A%")]),
    ("tags.\"my key\" RLIKE '^a.*z$'", [("tag", "my key", "RLIKE", "^a.*z$")]),
    ("tags.'my key' IS NULL", [("tag", "my key", "IS NULL", None)]),
    ("`tags`.`k-1` IS NOT NULL", [("tag", "k-1", "IS NOT NULL", None)]),
    ("metadata.`mlflow.trace.user` = 'alice'", [("metadata", "mlflow.trace.user", "=", "alice")]),
    ("request_metadata.x is not null", [("metadata", "x", "IS NOT NULL", None)]),
    ("tags.k = 'it''s'", [("tag", "k", "=", "it's")]),
    ("tags.k = \"say \"\"hi\"\"\"", [("tag", "k", "=", 'say "hi"')]),
    ("tags.k = 'it\\'s'", [("tag", "k", "=", "it's")]),
    ("tags.k RLIKE '\\d+'", [("tag", "k", "RLIKE", "\\d+")]),
    ("tags.k = ''", [("tag", "k", "=", "")]),
    ("tags.k = 'Été ☀'", [("tag", "k", "=", "Été ☀")]),
    # spans
    ("span.name = 'chat'", [("span", "name", "=", "chat")]),
    ("span.type IN ('LLM', 'CHAT_MODEL')", [("span", "type", "IN", ("LLM", "CHAT_MODEL"))]),
    ("span.status != 'OK'", [("span", "status", "!=", "OK")]),
    ("span.name NOT IN ('a')", [("span", "name", "NOT IN", ("a",))]),
    ("span.content ILIKE '%x%'", [("span", "content", "ILIKE", "%x%")]),
    ("span.attributes.`mlflow.llm.model` = 'gpt-4o'", [("span_attribute", "mlflow.llm.model", "=", "gpt-4o")]),
    ("span.attributes.mlflow.llm.model LIKE 'gpt%'", [("span_attribute", "mlflow.llm.model", "LIKE", "gpt%")]),
    ("span.`attributes.x` RLIKE 'a'", [("span_attribute", "x", "RLIKE", "a")]),
    ("span.attributes.k NOT IN ('1', '2')", [("span_attribute", "k", "NOT IN", ("1", "2"))]),
    # assessments
    ("feedback.quality = 'true'", [("feedback", "quality", "=", "true")]),
    ("feedback.score >= 0.5", [("feedback", "score", ">=", 0.5)]),
    ("feedback.score < 3", [("feedback", "score", "<", 3)]),
    ("feedback.`my judge` LIKE '%ok%'", [("feedback", "my judge", "LIKE", "%ok%")]),
    ("expectation.answer IS NOT NULL", [("expectation", "answer", "IS NOT NULL", None)]),
    ("expectation.answer != 'x'", [("expectation", "answer", "!=", "x")]),
    ("issue.id = 'iss-1'", [("issue", "id", "=", "iss-1")]),
    # combinations, keyword case, whitespace
    (
        "status = 'OK' and tags.env = 'prod' AND timestamp_ms > 1",
        [("attribute", "status", "=", "OK"), ("tag", "env", "=", "prod"), ("attribute", "timestamp_ms", ">", 1)],
    ),
    ("  tags.k   like   'a'  ", [("tag", "k", "LIKE", "a")]),
]


@pytest.mark.parametrize(("filter_string", "expected"), VALID, ids=[v[0] for v in VALID])
def test_parse_valid_filters(filter_string: str, expected: list[tuple[str, str, str, Any]]) -> None:
    assert clauses(filter_string) == expected


def test_parse_empty_filter_matches_everything() -> None:
    assert parse_filter(None) == TraceFilter(())
    assert parse_filter("   ") == TraceFilter(())


def test_ast_is_frozen_and_typed() -> None:
    ast = parse_filter("tags.env = 'prod' AND span.type = 'LLM'")
    assert ast.clauses[0] == Clause(Entity.TAG, "env", Op.EQ, "prod")
    assert ast.span_clauses() == (Clause(Entity.SPAN, "type", Op.EQ, "LLM"),)
    assert ast.trace_clauses() == (Clause(Entity.TAG, "env", Op.EQ, "prod"),)
    with pytest.raises(AttributeError):
        ast.clauses[0].key = "other"  # type: ignore[misc]


# Filters MLflow's parser also accepts; our clause must mean the same thing as its dict.
# Where MLflow 3.17's parser differs on purpose: flowtel aliases, SQL quote escapes (MLflow keeps
# them verbatim), numeric strings for numeric attributes (MLflow passes the str to SQL), and a bare
# ``text`` key (sqlparse reads it as a keyword, so MLflow only accepts ``trace.text``).
DIFFERS_FROM_MLFLOW = {
    "state = 'IN_PROGRESS'",
    "trace.trace_id NOT IN ('tr-1','tr-2',)",
    "trace.timestamp_ms >= '1700000000000'",
    "text ILIKE '%paris%'",
    "tags.k = 'it''s'",
    'tags.k = "say ""hi"""',
    "tags.k = 'it\\'s'",
}
MLFLOW_COMPATIBLE = [f for f, _ in VALID if f not in DIFFERS_FROM_MLFLOW]


@pytest.mark.parametrize("filter_string", MLFLOW_COMPATIBLE)
def test_parse_agrees_with_mlflow(filter_string: str) -> None:
    theirs = SearchTraceUtils.parse_search_filter_for_search_traces(filter_string)
    ours = parse_filter(filter_string).clauses
    assert len(ours) == len(theirs)
    for clause, ref in zip(ours, theirs):
        expected = (ref["type"], ref["key"].replace("`", ""), ref["comparator"].upper(), _norm(ref["value"]))
        assert _as_mlflow(clause) == expected


def _as_mlflow(clause: Clause) -> tuple[str, str, str, Any]:
    entity = {
        Entity.METADATA: "request_metadata",
        Entity.SPAN_ATTRIBUTE: "span",
        Entity.PROMPT: "tag",
    }.get(clause.entity, clause.entity.value)
    key = f"attributes.{clause.key}" if clause.entity is Entity.SPAN_ATTRIBUTE else clause.key
    return entity, key, clause.op.value, _norm(clause.value)


def _norm(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


INVALID = [
    # (filter, text the message must contain, offending token)
    ("status = 'OK' OR status = 'ERROR'", "'OR' is not supported", "OR"),
    ("tags.k = 'a' or tags.k = 'b'", "'OR' is not supported", "or"),
    ("(status = 'OK')", "parentheses", "("),
    ("status", "expected a comparator", ""),
    ("status =", "got nothing", ""),
    ("status = 'OK' tags.k = 'v'", "expected AND", "tags"),
    ("status = 'OK' AND", "expected a search key", ""),
    ("AND status = 'OK'", "expected a search key", "AND"),
    ("tags.k = v", "expected a quoted string", "v"),
    ("tags.k = 'unterminated", "unterminated '-quoted string", "'"),
    ("tags.k = 5", "expected a quoted string value for 'tags.k'", "5"),
    ("tags.k IN ('a')", "comparator 'IN' is not allowed for 'tags.k'", "IN"),
    ("tags.k <> 'x'", "use '!='", "<>"),
    ("tags.k == 'x'", "use '!='", "=="),
    ("tags.k NOT LIKE 'x'", "expected IN after NOT", "LIKE"),
    ("tags.k IS 'x'", "expected NULL after IS", "'x'"),
    ("tags.k IS NOT 'x'", "expected NULL after IS NOT", "'x'"),
    ("tags.k > 'x'", "comparator '>' is not allowed", ">"),
    ("tags.k RLIKE '('", "invalid regular expression", "'('"),
    ("tags.my-key = 'x'", "unexpected character '-'", "-"),
    ("tags.k = 'x' ; DROP TABLE traces", "unexpected character ';'", ";"),
    ("foo = 'x'", "invalid attribute key 'foo'", None),
    ("trace.foo = 'x'", "invalid attribute key 'foo'", None),
    ("metrics.m > 1", "invalid entity type 'metrics'", None),
    ("Tags.k = 'x'", "invalid entity type 'Tags'", None),
    ("status = 5", "string attribute; quote the value", "5"),
    ("status > 'OK'", "comparator '>' is not allowed for 'status'", ">"),
    ("status IS NULL", "comparator 'IS NULL' is not allowed for 'status'", "IS"),
    ("timestamp_ms = 'abc'", "expected a number for numeric attribute", "'abc'"),
    ("timestamp_ms LIKE '1%'", "comparator 'LIKE' is not allowed", "LIKE"),
    ("timestamp_ms IN ('1')", "comparator 'IN' is not allowed", "IN"),
    ("request_id IN ()", "one or more quoted strings", ")"),
    ("request_id IN ('a', 1)", "one or more quoted strings", "1"),
    ("request_id IN 'a'", "parenthesized list", "'a'"),
    ("request_id IN ('a' 'b')", "expected ',' or ')'", "'b'"),
    ("span.foo = 'x'", "invalid span key 'foo'", None),
    ("span.attributes = 'x'", "span attribute name cannot be empty", None),
    ("span.content = 'x'", "comparator '=' is not allowed for 'span.content'; allowed: LIKE, ILIKE", "="),
    ("text = 'x'", "comparator '=' is not allowed for 'text'", "="),
    ("span.name IS NULL", "comparator 'IS NULL' is not allowed", "IS"),
    ("span.name > 'a'", "comparator '>' is not allowed", ">"),
    ("feedback.q = 5", "expected a quoted string value for feedback", "5"),
    ("feedback.q > 'a'", "expected a number for feedback", "'a'"),
    ("feedback.q IN ('a')", "comparator 'IN' is not allowed", "IN"),
    ("issue.name = 'x'", "invalid issue attribute 'name'", None),
    ("issue.id != 'x'", "comparator '!=' is not allowed", "!="),
    ("prompt = 'no-version'", "expected prompt = 'name/version'", "'no-version'"),
    ("prompt LIKE 'a/%'", "comparator 'LIKE' is not allowed", "LIKE"),
    ("tags.`mlflow.linkedPrompts` = 'x'", "expected prompt = 'name/version'", "'x'"),
    ("tags.5 = 'x'", "invalid key part '5'", "5"),
]


@pytest.mark.parametrize(("filter_string", "message", "token"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_filters_raise_clear_errors(filter_string: str, message: str, token: str | None) -> None:
    with pytest.raises(InvalidFilterError) as info:
        parse_filter(filter_string)
    err = info.value
    assert message in str(err)
    assert repr(filter_string) in str(err)  # the whole filter is quoted for context
    if token is not None:
        assert err.token == token
    # usable as a plain ValueError and as flowtel's INVALID_PARAMETER_VALUE error
    assert isinstance(err, ValueError) and isinstance(err, InvalidParameterError) and isinstance(err, FlowtelException)
    assert err.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize(
    "filter_string",
    [
        "status = 'OK' OR status = 'ERROR'",
        "tags.k = v",
        "foo = 'x'",
        "span.content = 'x'",
        "feedback.q = 5",
        "feedback.q > 'a'",
        "status = 5",
        "span.foo = 'x'",
        "(status = 'OK')",
        "request_id IN ()",
    ],
)
def test_invalid_filters_are_also_rejected_by_mlflow(filter_string: str) -> None:
    with pytest.raises(InvalidFilterError):
        parse_filter(filter_string)
    with pytest.raises(Exception, match=".+"):
        SearchTraceUtils.parse_search_filter_for_search_traces(filter_string)


def test_allowed_operators_are_listed_in_the_message() -> None:
    with pytest.raises(InvalidFilterError, match=r"allowed: =, !=, LIKE, ILIKE, RLIKE, IS NULL, IS NOT NULL"):
        parse_filter("metadata.k > 'x'")
    with pytest.raises(InvalidFilterError, match=r"Valid prefixes: attribute/attributes/trace"):
        parse_filter("bogus.k = 'x'")


# --------------------------------------------------------------------------------------------
# order_by
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["timestamp_ms DESC"], [OrderBy(Entity.ATTRIBUTE, "timestamp_ms", False)]),
        (["timestamp"], [OrderBy(Entity.ATTRIBUTE, "timestamp_ms", True)]),
        (["execution_time asc"], [OrderBy(Entity.ATTRIBUTE, "execution_time_ms", True)]),
        (["end_time DESC"], [OrderBy(Entity.ATTRIBUTE, "end_time_ms", False)]),
        (["trace.status"], [OrderBy(Entity.ATTRIBUTE, "status", True)]),
        (["request_id desc"], [OrderBy(Entity.ATTRIBUTE, "request_id", False)]),
        (["experiment_id"], [OrderBy(Entity.ATTRIBUTE, "experiment_id", True)]),
        (["name"], [OrderBy(Entity.TAG, "mlflow.traceName", True)]),
        (["run_id DESC"], [OrderBy(Entity.METADATA, "mlflow.sourceRun", False)]),
        (
            ["tags.`my key` DESC", "metadata.`mlflow.trace.user`"],
            [OrderBy(Entity.TAG, "my key", False), OrderBy(Entity.METADATA, "mlflow.trace.user", True)],
        ),
        ([], []),
    ],
)
def test_parse_order_by(entries: list[str], expected: list[OrderBy]) -> None:
    assert list(parse_order_by(entries)) == expected


@pytest.mark.parametrize(
    "entries",
    [["timestamp_ms DESC"], ["name"], ["tags.k DESC"], ["metadata.`a.b` ASC"], ["execution_time_ms"], ["run_id"]],
)
def test_order_by_agrees_with_mlflow(entries: list[str]) -> None:
    (ours,) = parse_order_by(entries)
    key_type, key, ascending = SearchTraceUtils.parse_order_by_for_search_traces(entries[0])
    entity = {"attribute": Entity.ATTRIBUTE, "tag": Entity.TAG, "request_metadata": Entity.METADATA}[key_type]
    assert (ours.entity, ours.key, ours.ascending) == (entity, key, ascending)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["foo"], "Invalid order_by key 'foo'"),
        (["span.name"], "Invalid order_by entity 'span'"),
        (["feedback.q DESC"], "Invalid order_by entity 'feedback'"),
        (["timestamp_ms sideways"], "unexpected 'sideways'"),
        (["timestamp_ms DESC extra"], "unexpected 'extra'"),
        (["name", "name DESC"], "duplicate fields"),
        (["timestamp", "timestamp_ms"], "duplicate fields"),
        ([""], "expected '<key> [ASC|DESC]'"),
        ("timestamp_ms", "must be a list"),
        (["client_request_id"], "Invalid order_by key"),
    ],
)
def test_invalid_order_by(entries: Any, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message.replace("[", r"\[").replace("|", r"\|")):
        parse_order_by(entries)


# --------------------------------------------------------------------------------------------
# Evaluation over MLflow-rendered traces
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict[str, Any]]:
    """Named traces covering every field the grammar reads."""
    quality = Feedback(name="quality", value="good", source=AssessmentSource("HUMAN", "bob"))
    overridden = Feedback(name="quality", value="bad", source=AssessmentSource("HUMAN", "eve"))
    overridden.valid = False
    return {
        "chat": make_trace(
            1,
            spans=[
                {"name": "agent", "type": "AGENT", "inputs": {"q": "Weather in Paris? Été"}},
                {"name": "chat", "type": "CHAT_MODEL", "attributes": {"mlflow.llm.model": "gpt-4o", "retries": 2}},
                {"name": "tool", "type": "TOOL", "attributes": {"mlflow.llm.model": "claude"}},
            ],
            tags={
                "env": "prod",
                "multi": "line1\nline2",
                "mlflow.linkedPrompts": json.dumps([{"name": "qa", "version": "3"}]),
            },
            metadata={"mlflow.trace.user": "alice", "mlflow.sourceRun": "run-1"},
            assessments=[
                quality,
                overridden,
                Feedback(name="score", value=0.8),
                Feedback(name="is_ok", value=True),
                Expectation(name="answer", value={"city": "Paris"}),
            ],
            client_request_id="req-1",
            duration=250,
        ),
        "error": make_trace(
            2,
            state="ERROR",
            spans=[{"name": "agent", "type": "AGENT", "status": "ERROR"}, {"name": "retriever", "type": "RETRIEVER"}],
            tags={"env": "dev", "pct": "100%_done"},
            metadata={"mlflow.trace.user": "bob"},
            assessments=[Feedback(name="score", value=0.2), Feedback(name="quality", value="yes")],
            duration=None,
        ),
        "bare": make_trace(3, spans=[{"name": "solo", "type": "LLM"}], experiment_id="2"),
    }


EVAL_CASES = [
    # (filter, names of matching traces)
    ("status = 'OK'", {"chat", "bare"}),
    ("trace.state != 'OK'", {"error"}),
    ("status IN ('ERROR', 'IN_PROGRESS')", {"error"}),
    ("status NOT IN ('ERROR')", {"chat", "bare"}),
    ("client_request_id = 'req-1'", {"chat"}),
    ("client_request_id != 'req-1'", set()),  # NULL never matches !=
    ("client_request_id LIKE 'REQ%'", set()),
    ("client_request_id ILIKE 'REQ%'", {"chat"}),
    (f"timestamp_ms >= {T0_MS + 2000}", {"error", "bare"}),
    (f"timestamp = {T0_MS + 1000}", {"chat"}),
    ("execution_time_ms > 200", {"chat"}),
    ("execution_time_ms < 1000", {"chat", "bare"}),  # unknown duration never compares
    (f"end_time_ms = {T0_MS + 1250}", {"chat"}),
    (f"end_time_ms = {T0_MS + 2000}", {"error"}),  # end = start + coalesce(duration, 0)
    ("name = 'agent'", {"chat", "error"}),
    ("name IN ('solo', 'x')", {"bare"}),
    ("name NOT IN ('solo')", {"chat", "error"}),
    ("name RLIKE '^so'", {"bare"}),
    ("tags.env = 'prod'", {"chat"}),
    ("tags.env != 'prod'", {"error"}),  # bare has no env tag: NULL never matches !=
    ("tags.env IS NULL", {"bare"}),
    ("tags.env IS NOT NULL", {"chat", "error"}),
    ("tags.env LIKE 'p%'", {"chat"}),
    ("tags.env LIKE 'P%'", set()),  # LIKE is case-sensitive
    ("tags.env ILIKE 'P%'", {"chat"}),
    ("tags.env LIKE 'pro_'", {"chat"}),
    ("tags.env LIKE 'pr_'", set()),
    ("tags.multi LIKE 'line1%line2'", {"chat"}),  # % spans newlines
    ("tags.pct LIKE '100%'", {"error"}),
    ("tags.env RLIKE 'ro'", {"chat"}),  # RLIKE is an unanchored search
    ("tags.env RLIKE '^ro'", set()),
    ("metadata.`mlflow.trace.user` = 'alice'", {"chat"}),
    ("request_metadata.`mlflow.trace.user` ILIKE 'B%'", {"error"}),
    ("metadata.`mlflow.trace.user` IS NULL", {"bare"}),
    ("run_id = 'run-1'", {"chat"}),
    ("run_id IN ('run-1', 'run-2')", {"chat"}),
    ("span.name = 'chat'", {"chat"}),
    ("span.name != 'agent'", {"chat", "error", "bare"}),
    ("span.type = 'RETRIEVER'", {"error"}),
    ("span.type IN ('LLM', 'TOOL')", {"chat", "bare"}),
    ("span.status = 'ERROR'", {"error"}),
    ("span.status = 'OK'", {"chat", "error", "bare"}),
    ("span.name = 'chat' AND span.type = 'CHAT_MODEL'", {"chat"}),
    ("span.name = 'chat' AND span.type = 'TOOL'", set()),  # both must hold for ONE span
    ("span.attributes.`mlflow.llm.model` = 'gpt-4o'", {"chat"}),
    ("span.attributes.`mlflow.llm.model` LIKE 'gpt%'", {"chat"}),
    ("span.attributes.`mlflow.llm.model` IN ('claude')", {"chat"}),
    ("span.attributes.`mlflow.llm.model` RLIKE '^cl'", {"chat"}),
    ("span.attributes.retries = '2'", {"chat"}),  # non-string values compare as JSON text
    ("span.attributes.`mlflow.spanType` = 'LLM'", {"bare"}),
    ("span.attributes.missing = 'x'", set()),
    ("span.content LIKE '%Été%'", {"chat"}),  # non-ASCII is stored unescaped
    ("trace.text ILIKE '%weather IN PARIS%'", {"chat"}),
    ("text LIKE '%weather in paris%'", set()),
    ("feedback.quality = 'good'", {"chat"}),
    ("feedback.quality = 'bad'", set()),  # overridden (valid: false) assessments do not count
    ("feedback.quality = '\"yes\"'", {"error"}),  # the JSON text also matches
    ("feedback.quality != 'good'", {"error"}),
    ("feedback.quality LIKE '%oo%'", {"chat"}),
    ("feedback.quality IS NULL", {"bare"}),
    ("feedback.quality IS NOT NULL", {"chat", "error"}),
    ("feedback.score > 0.5", {"chat"}),
    ("feedback.score <= 0.5", {"error"}),
    ("feedback.score = '0.8'", {"chat"}),
    ("feedback.is_ok = 'true'", {"chat"}),
    ("feedback.is_ok > 0", set()),  # booleans are not numbers
    ("expectation.answer IS NOT NULL", {"chat"}),
    ("expectation.answer LIKE '%Paris%'", {"chat"}),
    ("feedback.answer IS NOT NULL", set()),  # an expectation is not a feedback
    ("prompt = 'qa/3'", {"chat"}),
    ("prompt = 'qa/4'", set()),
    ("issue.id = 'iss-1'", set()),
    ("tags.env = 'prod' AND feedback.score > 0.5 AND span.type = 'TOOL'", {"chat"}),
    ("", {"chat", "error", "bare"}),
]


@pytest.mark.parametrize(("filter_string", "expected"), EVAL_CASES, ids=[c[0] or "<empty>" for c in EVAL_CASES])
def test_matches(corpus: dict[str, dict[str, Any]], filter_string: str, expected: set[str]) -> None:
    ast = parse_filter(filter_string)
    assert {name for name, trace in corpus.items() if matches(ast, trace)} == expected


def test_matches_accepts_a_bare_info_dict(corpus: dict[str, dict[str, Any]]) -> None:
    info = corpus["chat"]["info"]
    assert matches(parse_filter("tags.env = 'prod' AND feedback.score > 0.5"), info)
    assert not matches(parse_filter("span.name = 'chat'"), info)  # no spans to look at


def test_issue_assessments_match_by_id(corpus: dict[str, dict[str, Any]]) -> None:
    trace = json.loads(json.dumps(corpus["bare"]))
    trace["info"]["assessments"] = [
        {"assessment_name": "iss-1", "trace_id": trace["info"]["trace_id"], "issue": {"issue_name": "Hallucination"}}
    ]
    assert matches(parse_filter("issue.id = 'iss-1'"), trace)
    assert not matches(parse_filter("issue.id = 'iss-2'"), trace)


@pytest.mark.parametrize(
    "filter_string",
    ["status = 'OK'", "tags.env = 'prod'", "tags.env != 'prod'", "name LIKE 'a%'", "tags.env ILIKE 'P%'",
     "metadata.`mlflow.trace.user` = 'bob'", "tags.env IS NULL", "request_id = 'none'"],
)
def test_matches_agrees_with_mlflow_in_memory_filter(corpus: dict[str, dict[str, Any]], filter_string: str) -> None:
    infos = [TraceInfo.from_dict(t["info"]) for t in corpus.values()]
    theirs = {i.trace_id for i in SearchTraceUtils.filter(infos, filter_string)}
    ours = {t["info"]["trace_id"] for t in corpus.values() if matches(parse_filter(filter_string), t)}
    assert ours == theirs


# --------------------------------------------------------------------------------------------
# Sorting
# --------------------------------------------------------------------------------------------


def _ids(traces: list[Any]) -> list[str]:
    return [t["info"]["trace_id"] for t in traces]


def test_sort_default_is_newest_first_then_trace_id() -> None:
    same_time = [make_trace(i, request_time=T0_MS) for i in range(4)]
    newer = make_trace(9, request_time=T0_MS + 1)
    ordered = sort_traces([*same_time, newer], parse_order_by(None))
    assert _ids(ordered) == [newer["info"]["trace_id"], *sorted(_ids(same_time))]


def test_sort_keys_directions_and_missing_values_last() -> None:
    a = make_trace(1, tags={"prio": "b"}, duration=30)
    b = make_trace(2, tags={"prio": "a"}, duration=None)
    c = make_trace(3, duration=10)
    traces = [a, b, c]
    tid = {id(t): t["info"]["trace_id"] for t in traces}
    assert _ids(sort_traces(traces, parse_order_by(["tags.prio ASC"]))) == [tid[id(b)], tid[id(a)], tid[id(c)]]
    assert _ids(sort_traces(traces, parse_order_by(["tags.prio DESC"]))) == [tid[id(a)], tid[id(b)], tid[id(c)]]
    assert _ids(sort_traces(traces, parse_order_by(["execution_time_ms DESC"]))) == [tid[id(a)], tid[id(c)], tid[id(b)]]
    assert _ids(sort_traces(traces, parse_order_by(["execution_time_ms"]))) == [tid[id(c)], tid[id(a)], tid[id(b)]]
    assert _ids(sort_traces(traces, parse_order_by(["timestamp_ms ASC"]))) == [tid[id(a)], tid[id(b)], tid[id(c)]]


def test_sort_experiment_ids_numerically() -> None:
    traces = [make_trace(i, experiment_id=e) for i, e in enumerate(["10", "9", "100"])]
    ordered = sort_traces(traces, parse_order_by(["experiment_id"]))
    assert [t["info"]["trace_location"]["mlflow_experiment"]["experiment_id"] for t in ordered] == ["9", "10", "100"]


# --------------------------------------------------------------------------------------------
# Value helpers shared with the SQLite store
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("millis", [0, 1, 999, 1000, T0_MS, T0_MS + 123, 1_795_344_974_130])
def test_timestamps_render_like_mlflow(millis: int) -> None:
    rendered = TraceInfo(
        trace_id="tr-1", trace_location=TraceLocation.from_experiment_id("1"), request_time=millis, state=TraceState.OK
    ).to_dict()["request_time"]
    assert format_timestamp_ms(millis) == rendered
    assert parse_timestamp_ms(rendered) == millis


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("2023-11-14T22:13:20.123456789Z", T0_MS + 123),
        ("2023-11-14T23:13:20.5+01:00", T0_MS + 500),
        ("2023-11-14 22:13:20z", T0_MS),
        (str(T0_MS), T0_MS),
        (T0_MS, T0_MS),
    ],
)
def test_parse_timestamp_forms(text: Any, millis: int) -> None:
    assert parse_timestamp_ms(text) == millis


@pytest.mark.parametrize("bad", ["yesterday", "2023-11-14", None, True, [1]])
def test_parse_timestamp_rejects_garbage(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_timestamp_ms(bad)


@pytest.mark.parametrize(
    ("raw", "text"),
    [('"LLM"', "LLM"), ("20", "20"), ('{"a": 1}', '{"a": 1}'), ("not json", "not json"), (5, "5"), (None, None)],
)
def test_attribute_text(raw: Any, text: str | None) -> None:
    assert attribute_text(raw) == text


def test_like_to_glob_escapes_glob_wildcards() -> None:
    assert like_to_glob("a%b_c*d?e[f]") == "a*b?c[*]d[?]e[[]f]"
