"""The embedded SQLite trace store.

Traces come from the real MLflow SDK: a subprocess (so MLflow's global tracing state never touches
this test process) records agent traces with ``mlflow.start_span`` into a real MLflow SQLite
tracking store, adds tags and assessments through MLflow's APIs, renders each with
``mlflow.get_trace(id).to_dict()`` and answers reference searches with MLflow's own SQL store.
Larger corpora are rendered in-process by ``mlflow.entities`` (private OTel provider).
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import random
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from flowtel import _exceptions
from flowtel.exporters.local import _connections as _local_connections
from flowtel.exporters.local import _store as _local_store
from flowtel.exporters.local._filter import (
    InvalidFilterError,
    matches,
    parse_filter,
    parse_order_by,
    sort_traces,
)
from flowtel.exporters.local._store import (
    AssessmentNotFoundError,
    InvalidArgumentError,
    InvalidTraceError,
    SchemaVersionError,
    SqliteTraceStore,
    StoreError,
    TagNotFoundError,
    TraceNotFoundError,
)

pytest.importorskip("mlflow")
otel_trace = pytest.importorskip("opentelemetry.trace")
from mlflow.entities import (  # noqa: E402
    Assessment,
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
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

_TRACER = TracerProvider().get_tracer("flowtel-tests")  # private provider: no global OTel state
T0_MS = 1_700_000_000_000


# --------------------------------------------------------------------------------------------
# Trace builders
# --------------------------------------------------------------------------------------------


def make_trace(
    n: int,
    *,
    n_spans: int = 3,
    experiment_id: str = "1",
    request_time: int | None = None,
    state: str = "OK",
    tags: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    assessments: list[Assessment] | None = None,
    duration: int | None = 100,
    client_request_id: str | None = None,
    span_specs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``Trace.to_dict()`` rendered by MLflow's entities: an AGENT root and LLM/TOOL children."""
    start_ms = T0_MS + n * 1000 if request_time is None else request_time
    specs = span_specs or [{"name": f"agent_{n % 3}", "type": "AGENT"}] + [
        {"name": f"step_{j}", "type": ["LLM", "TOOL", "RETRIEVER"][j % 3], "model": ["gpt-4o", "claude-3"][(n + j) % 2]}
        for j in range(n_spans - 1)
    ]
    root_otel = _TRACER.start_span(specs[0]["name"], start_time=start_ms * 1_000_000)
    trace_id = "tr-" + format(root_otel.get_span_context().trace_id, "032x")
    live = []
    for j, spec in enumerate(specs):
        otel = root_otel if j == 0 else _TRACER.start_span(
            spec["name"], context=otel_trace.set_span_in_context(root_otel), start_time=(start_ms + j) * 1_000_000
        )
        span = create_mlflow_span(otel, trace_id, spec["type"])
        span.set_inputs({"messages": [{"role": "user", "content": f"question {n}.{j} " + "lorem ipsum " * 20}]})
        if "model" in spec:
            span.set_attribute("mlflow.llm.model", spec["model"])
            usage = {"input_tokens": 10 + j, "output_tokens": 5, "total_tokens": 15 + j}
            span.set_attribute("mlflow.chat.tokenUsage", usage)
        for key, value in (spec.get("attributes") or {}).items():
            span.set_attribute(key, value)
        span.set_outputs({"answer": f"answer {n}.{j}", "unicode": "Été ☀"})
        if spec.get("status"):
            span.set_status(spec["status"])
        live.append(span)
    for j, span in reversed(list(enumerate(live))):
        span.end(end_time_ns=(start_ms + 50 + j) * 1_000_000)
    for a in assessments or []:
        a.trace_id = trace_id
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=start_ms,
        state=TraceState(state),
        execution_duration=duration,
        client_request_id=client_request_id,
        request_preview=f'{{"question": "q{n}"}}',
        trace_metadata={"mlflow.trace_schema.version": "3", **(metadata or {})},
        tags={"mlflow.traceName": specs[0]["name"], **(tags or {})},
        assessments=list(assessments or []),
    )
    return Trace(info=info, data=TraceData(spans=[s.to_immutable_span() for s in live])).to_dict()


def ids(traces: list[dict[str, Any]]) -> list[str]:
    return [t["info"]["trace_id"] for t in traces]


def search_ids(store: SqliteTraceStore, **kwargs: Any) -> list[str]:
    """Every matching id, following page tokens."""
    kwargs.setdefault("max_results", 1000)
    kwargs.setdefault("include_spans", False)
    found: list[str] = []
    token = None
    while True:
        page, token = store.search_traces(page_token=token, **kwargs)
        found.extend(ids(page))
        if token is None:
            return found


@pytest.fixture()
def store(tmp_path: Path) -> SqliteTraceStore:
    s = SqliteTraceStore(tmp_path / "traces.db")
    yield s
    s.close()


# --------------------------------------------------------------------------------------------
# Reference corpus recorded by the real MLflow SDK and searched by MLflow's own SQL store
# --------------------------------------------------------------------------------------------

_CORPUS_SCRIPT = r'''
import json, os, re, sys
os.environ["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
import mlflow
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource

out_path, db_path = sys.argv[1], sys.argv[2]
spec = json.loads(sys.stdin.read())
mlflow.set_tracking_uri(f"sqlite:///{db_path}")
client = MlflowClient()
exp_id = client.create_experiment("corpus")
other_exp_id = client.create_experiment("other")


@mlflow.trace(span_type="TOOL")
def get_weather(city):
    if city.endswith("3"):
        raise RuntimeError(f"no weather for {city}")
    return f"Sunny in {city}"


def agent(i):
    with mlflow.start_span(name=f"agent_{i % 3}", span_type="AGENT") as root:
        root.set_inputs({"question": f"Weather in city {i}?", "lang": "fr" if i % 2 else "en"})
        with mlflow.start_span(name="chat", span_type="CHAT_MODEL") as chat:
            chat.set_inputs({"messages": [{"role": "user", "content": f"Weather in city {i}? Été ☀"}]})
            chat.set_attribute("mlflow.llm.model", ["gpt-4o", "gpt-4o-mini", "claude-3-haiku"][i % 3])
            usage = {"input_tokens": 10 + i, "output_tokens": 4, "total_tokens": 14 + i}
            chat.set_attribute("mlflow.chat.tokenUsage", usage)
            chat.set_attribute("retries", i % 2)
            chat.set_outputs({"choices": [{"message": {"role": "assistant", "content": "Calling tool"}}]})
        try:
            get_weather(f"city {i}")
        except RuntimeError:
            pass
        tags = {"env": ["prod", "dev", "staging"][i % 3]}
        if i % 4:
            tags["team"] = "search" if i % 4 == 1 else "ranking"
        metadata = {"app.version": f"1.{i % 3}", "mlflow.trace.user": ["alice", "bob"][i % 2]}
        if i % 5 == 0:
            metadata["mlflow.trace.session"] = f"sess-{i // 5}"
        mlflow.update_current_trace(tags=tags, metadata=metadata, client_request_id=f"req-{i}")
        if i % 4 == 0:
            raise ValueError(f"bad {i}")
        root.set_outputs(f"Sunny in city {i}")


trace_ids, run_ids = [], {}
for i in range(spec["n"]):
    mlflow.set_experiment(experiment_id=other_exp_id if i == spec["n"] - 1 else exp_id)
    run = mlflow.start_run() if i % 6 == 1 else None
    try:
        agent(i)
    except ValueError:
        pass
    finally:
        if run is not None:
            run_ids[i] = run.info.run_id
            mlflow.end_run()
    trace_ids.append(mlflow.get_last_active_trace_id())

for i, tid in enumerate(trace_ids):
    if i % 2 == 0:
        fb = mlflow.log_feedback(trace_id=tid, name="quality", value=["good", "bad"][i % 4 // 2],
                                 source=AssessmentSource("HUMAN", "bob"), rationale="looks right")
        if i % 8 == 0:
            mlflow.override_feedback(trace_id=tid, assessment_id=fb.assessment_id, value="great", rationale="fixed")
    if i % 3 == 0:
        mlflow.log_feedback(trace_id=tid, name="score", value=i / 10, source=AssessmentSource("LLM_JUDGE", "gpt-4o"))
        mlflow.log_feedback(trace_id=tid, name="is_ok", value=i % 2 == 0, source=AssessmentSource("CODE", "check.py"))
    if i % 4 == 1:
        mlflow.log_expectation(trace_id=tid, name="expected", value={"answer": f"Sunny in city {i}"})
    if i % 7 == 2:
        client.set_trace_tag(tid, "reviewed", "yes")

traces = [mlflow.get_trace(tid).to_dict() for tid in trace_ids]
times = [t.info.request_time for t in map(mlflow.get_trace, trace_ids)]


def resolve(f):
    f = re.sub(r"TID(\d+)", lambda m: trace_ids[int(m.group(1))], f)
    f = re.sub(r"TS(\d+)", lambda m: str(times[int(m.group(1))]), f)
    return re.sub(r"RUN(\d+)", lambda m: run_ids[int(m.group(1))], f)


results = {}
for f in spec["filters"]:
    found = client.search_traces(locations=[exp_id], filter_string=resolve(f), max_results=1000, include_spans=False)
    results[f] = [resolve(f), [t.info.trace_id for t in found]]
orders = {}
for o in spec["orders"]:
    found = client.search_traces(locations=[exp_id, other_exp_id], order_by=o, max_results=1000, include_spans=False)
    orders[json.dumps(o)] = [t.info.trace_id for t in found]
pages, token = [], None
while True:
    page = client.search_traces(locations=[exp_id], max_results=5, page_token=token, include_spans=False)
    pages.append([t.info.trace_id for t in page])
    token = page.token
    if not token:
        break
with open(out_path, "w") as fh:
    json.dump({"experiment_id": exp_id, "other_experiment_id": other_exp_id, "traces": traces,
               "results": results, "orders": orders, "pages": pages}, fh)
'''

# Filters whose meaning MLflow 3.17's SQL store implements as documented (TIDn/TSn/RUNn are
# replaced by the n-th trace's id / request time / run id).
MLFLOW_FILTERS = [
    "status = 'OK'",
    "trace.status = 'ERROR'",
    "attributes.status != 'OK'",
    "status IN ('ERROR', 'IN_PROGRESS')",
    "status NOT IN ('ERROR')",
    "request_id = 'TID3'",
    "request_id IN ('TID3', 'TID4', 'nope')",
    "client_request_id = 'req-3'",
    "client_request_id LIKE 'req-1%'",
    "client_request_id ILIKE 'REQ-2%'",
    "client_request_id RLIKE '^req-[0-4]$'",
    "timestamp_ms > TS10",
    "timestamp >= TS5 AND timestamp_ms <= TS15",
    "execution_time_ms >= 0",
    "end_time_ms > TS20",
    "name = 'agent_1'",
    "name != 'agent_1'",
    "name LIKE 'agent%'",
    "name ILIKE 'AGENT_2'",
    "name RLIKE '_[12]$'",
    "tags.`mlflow.traceName` = 'agent_0'",
    "tags.env = 'prod'",
    "tags.env != 'prod'",
    "tags.team IS NULL",
    "tags.team IS NOT NULL",
    "tags.env LIKE 'pr%'",
    "tags.env LIKE 'PR%'",
    "tags.env ILIKE 'PR%'",
    "tags.env RLIKE '^(dev|staging)$'",
    "tags.reviewed = 'yes'",
    "tags.`mlflow.trace.spansLocation` = 'TRACKING_STORE'",
    "metadata.`mlflow.trace.user` = 'alice'",
    "request_metadata.`mlflow.trace.user` ILIKE 'B%'",
    "metadata.`app.version` LIKE '1.%'",
    "metadata.`app.version` != '1.0'",
    "metadata.`mlflow.trace.session` = 'sess-1'",
    "metadata.`mlflow.trace.session` IS NULL",
    "metadata.`mlflow.trace.session` IS NOT NULL",
    "run_id = 'RUN7'",
    "span.name = 'chat'",
    "span.name = 'get_weather'",
    "span.type = 'TOOL'",
    "span.type = 'CHAT_MODEL' AND span.name = 'get_weather'",
    "span.type = 'TOOL' AND span.status = 'ERROR'",
    "span.status = 'ERROR'",
    "span.name IN ('chat', 'nope')",
    "span.name NOT IN ('chat')",
    "span.name LIKE 'get%'",
    "span.name ILIKE 'CHAT'",
    "span.type RLIKE '^CHAT'",
    "span.attributes.`mlflow.llm.model` RLIKE 'gpt'",
    "span.attributes.`mlflow.llm.model` RLIKE '^claude'",
    "span.attributes.`mlflow.llm.model` LIKE '%gpt-4o-mini%'",
    "trace.text ILIKE '%city 7?%'",
    "trace.text LIKE '%Sunny in city 1%'",
    "trace.text LIKE '%Été ☀%'",
    "span.content LIKE '%RuntimeError%'",
    "feedback.quality = 'good'",
    "feedback.quality = 'great'",
    "feedback.quality = 'bad'",
    "feedback.quality != 'good'",
    "feedback.quality IS NULL",
    "feedback.quality IS NOT NULL",
    "feedback.quality LIKE '%a%'",
    "feedback.quality ILIKE '%GOOD%'",
    "feedback.score > 0.5",
    "feedback.score <= 0.3",
    "feedback.score >= 0",
    "feedback.is_ok = 'true'",
    "feedback.is_ok = 'false'",
    "expectation.expected IS NOT NULL",
    "expectation.expected LIKE '%city 5%'",
    "status = 'OK' AND tags.env = 'prod' AND feedback.score >= 0",
    "timestamp_ms >= TS5 AND name != 'agent_0' AND metadata.`mlflow.trace.user` = 'bob'",
]
MLFLOW_ORDERS = [
    ["timestamp_ms ASC"],
    ["timestamp_ms DESC"],
    ["name ASC"],
    ["name DESC", "timestamp_ms ASC"],
    ["execution_time_ms DESC"],
    ["status"],
    ["request_id DESC"],
    ["tags.env DESC"],
    ["tags.team"],
    ["run_id DESC"],
    ["experiment_id DESC"],
    ["metadata.`app.version` DESC", "request_id"],
]
CORPUS_SIZE = 25


@pytest.fixture(scope="module")
def mlflow_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("mlflow_corpus")
    out = work / "corpus.json"
    spec = json.dumps({"n": CORPUS_SIZE, "filters": MLFLOW_FILTERS, "orders": MLFLOW_ORDERS})
    proc = subprocess.run(
        [sys.executable, "-c", _CORPUS_SCRIPT, str(out), str(work / "mlflow.db")],
        input=spec,
        capture_output=True,
        text=True,
        cwd=work,  # MLflow puts its artifact root (mlruns/) in the working directory
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def corpus_store(mlflow_corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> SqliteTraceStore:
    s = SqliteTraceStore(tmp_path_factory.mktemp("corpus_store") / "traces.db")
    s.write_traces(mlflow_corpus["traces"])
    yield s
    s.close()


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def test_sdk_traces_round_trip_exactly(mlflow_corpus: dict[str, Any], corpus_store: SqliteTraceStore) -> None:
    assert corpus_store.count() == CORPUS_SIZE
    for original in mlflow_corpus["traces"]:
        trace_id = original["info"]["trace_id"]
        stored = corpus_store.get_trace(trace_id)
        assert stored == original
        assert json.dumps(stored) == json.dumps(original)  # same key order too
        assert corpus_store.get_trace_info(trace_id) == original["info"]
        # and real MLflow reads it back to the same thing
        assert Trace.from_dict(stored).to_dict() == Trace.from_dict(original).to_dict()


def test_corpus_covers_the_interesting_parts(mlflow_corpus: dict[str, Any]) -> None:
    infos = [t["info"] for t in mlflow_corpus["traces"]]
    assert {i["state"] for i in infos} == {"OK", "ERROR"}
    assert any(a.get("valid") is False for i in infos for a in i.get("assessments", []))
    assert any("expectation" in a for i in infos for a in i.get("assessments", []))
    assert any("mlflow.sourceRun" in i["trace_metadata"] for i in infos)


def test_unknown_ids_read_as_none(store: SqliteTraceStore) -> None:
    assert store.get_trace("tr-missing") is None
    assert store.get_trace_info("tr-missing") is None


def test_assessments_shipped_without_ids_get_stable_ids(store: SqliteTraceStore) -> None:
    trace = make_trace(1, assessments=[Feedback(name="q", value=5), Expectation(name="e", value=["a", 1])])
    assert all("assessment_id" not in a for a in trace["info"]["assessments"])
    store.write_traces([trace])
    first = store.get_trace_info(trace["info"]["trace_id"])["assessments"]
    store.write_traces([trace])  # a retried delivery
    assert store.get_trace_info(trace["info"]["trace_id"])["assessments"] == first
    assert [a["assessment_id"][:2] for a in first] == ["a-", "a-"]
    assert all(len(a["assessment_id"]) == 34 and int(a["assessment_id"][2:], 16) >= 0 for a in first)
    for a in first:  # rendered as MLflow's server renders it: the entity's dict plus ``valid``
        assert a["valid"] is True
        assert Assessment.from_dictionary(a).to_dictionary() | {"valid": True} == a
    assert first[0]["feedback"] == {"value": 5.0}
    assert first[1]["expectation"] == {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": '["a", 1]'}}


def test_bad_text_is_stored_safely(store: SqliteTraceStore) -> None:
    trace = make_trace(1, span_specs=[{"name": "root", "type": "LLM", "attributes": {"odd": "lone \ud800 surrogate"}}])
    trace["info"]["tags"]["odd"] = "tag \udfff"
    store.write_traces([trace])
    stored = store.get_trace(trace["info"]["trace_id"])
    assert stored["data"] == trace["data"]  # span JSON keeps the exact string (escaped)
    assert stored["info"]["tags"]["odd"] == "tag \ufffd"  # tag columns get U+FFFD


# --------------------------------------------------------------------------------------------
# Upsert / batches
# --------------------------------------------------------------------------------------------


def test_rewriting_the_same_batch_is_idempotent(store: SqliteTraceStore) -> None:
    traces = [make_trace(i, assessments=[Feedback(name="q", value=i)]) for i in range(5)]
    store.write_traces(traces)
    before = [store.get_trace(t) for t in ids(traces)]
    store.write_traces(traces)
    assert store.count() == 5
    assert [store.get_trace(t) for t in ids(traces)] == before


def test_rewrite_replaces_spans_and_info_but_keeps_annotations(store: SqliteTraceStore) -> None:
    original = make_trace(1, n_spans=4, tags={"env": "dev"}, metadata={"m": "1"})
    trace_id = original["info"]["trace_id"]
    store.write_traces([original])
    store.set_trace_tag(trace_id, "reviewed", "yes")
    created = store.create_assessment({"trace_id": trace_id, "assessment_name": "q", "feedback": {"value": 1}})

    updated = json.loads(json.dumps(original))
    updated["info"]["state"] = "ERROR"
    updated["info"]["tags"] = {"env": "prod"}  # no trace name, no 'reviewed'
    updated["info"]["trace_metadata"] = {"m": "2"}
    updated["data"]["spans"] = updated["data"]["spans"][:2]
    store.write_traces([updated])

    info = store.get_trace_info(trace_id)
    assert info["state"] == "ERROR"
    assert info["trace_metadata"] == {"m": "2"}
    assert info["tags"] == {"mlflow.traceName": "agent_1", "env": "prod", "reviewed": "yes"}
    assert info["assessments"] == [created]
    assert store.get_trace(trace_id)["data"]["spans"] == updated["data"]["spans"]
    assert search_ids(store, filter_string="name = 'agent_1' AND metadata.m = '2'") == [trace_id]
    assert search_ids(store, filter_string="metadata.m = '1'") == []


def test_same_trace_twice_in_one_batch_keeps_the_last(store: SqliteTraceStore) -> None:
    first = make_trace(1)
    second = json.loads(json.dumps(first))
    second["info"]["state"] = "ERROR"
    store.write_traces([first, second])
    assert store.count() == 1
    assert store.get_trace(first["info"]["trace_id"]) == second


def test_malformed_traces_are_reported_and_the_rest_stored(store: SqliteTraceStore) -> None:
    good = make_trace(1)
    no_time = make_trace(2)
    del no_time["info"]["request_time"]
    bad_tags = make_trace(3)
    bad_tags["info"]["tags"]["n"] = 5
    bad_span = make_trace(4)
    bad_span["data"]["spans"][0] = {"name": "no id"}
    with pytest.raises(InvalidTraceError) as info:
        store.write_traces([good, no_time, {"nope": 1}, bad_tags, "junk", bad_span])
    err = info.value
    assert err.written == 1
    assert set(err.failures) == set(ids([no_time, bad_tags, bad_span])) | {"#2", "#4"}
    assert "request_time is required" in err.failures[no_time["info"]["trace_id"]]
    assert isinstance(err, ValueError) and isinstance(err, StoreError)
    assert store.count() == 1 and store.get_trace(good["info"]["trace_id"]) == good


def test_a_batch_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[str] = []
    real_connect = _local_connections.ConnectionPool._connect

    def traced_connect(self: _local_connections.ConnectionPool) -> sqlite3.Connection:
        conn = real_connect(self)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(_local_connections.ConnectionPool, "_connect", traced_connect)
    s = SqliteTraceStore(tmp_path / "t.db")
    batch = [make_trace(i, n_spans=10) for i in range(100)]
    statements.clear()
    s.write_traces(batch)
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1
    assert s.count() == 100
    s.close()


# --------------------------------------------------------------------------------------------
# Search: same answers as MLflow's own store
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter_string", MLFLOW_FILTERS)
def test_search_matches_mlflow(
    filter_string: str, mlflow_corpus: dict[str, Any], corpus_store: SqliteTraceStore
) -> None:
    resolved, expected = mlflow_corpus["results"][filter_string]
    found = search_ids(corpus_store, experiment_ids=[mlflow_corpus["experiment_id"]], filter_string=resolved)
    assert found == expected


@pytest.mark.parametrize("order_by", MLFLOW_ORDERS, ids=[json.dumps(o) for o in MLFLOW_ORDERS])
def test_order_matches_mlflow(
    order_by: list[str], mlflow_corpus: dict[str, Any], corpus_store: SqliteTraceStore
) -> None:
    experiments = [mlflow_corpus["experiment_id"], mlflow_corpus["other_experiment_id"]]
    found = search_ids(corpus_store, experiment_ids=experiments, order_by=order_by)
    assert found == mlflow_corpus["orders"][json.dumps(order_by)]


def test_pages_match_mlflow(mlflow_corpus: dict[str, Any], corpus_store: SqliteTraceStore) -> None:
    pages, token = [], None
    while True:
        page, token = corpus_store.search_traces([mlflow_corpus["experiment_id"]], None, None, 5, token, False)
        pages.append(ids(page))
        if token is None:
            break
    expected = [p for p in mlflow_corpus["pages"] if p]  # MLflow may end with an empty page
    assert pages == expected


def test_filters_where_flowtel_follows_mlflow_docs(
    corpus_store: SqliteTraceStore, mlflow_corpus: dict[str, Any]
) -> None:
    """MLflow 3.17 rejects name/run_id IN and never matches span.attributes '='; flowtel does
    what the documentation promises."""
    exp = [mlflow_corpus["experiment_id"]]
    names = {t["info"]["trace_id"]: t["info"]["tags"]["mlflow.traceName"] for t in mlflow_corpus["traces"][:-1]}
    assert set(search_ids(corpus_store, experiment_ids=exp, filter_string="name IN ('agent_0', 'agent_2')")) == {
        t for t, n in names.items() if n in ("agent_0", "agent_2")
    }
    model_filter = "span.attributes.`mlflow.llm.model` = 'gpt-4o'"
    via_equals = search_ids(corpus_store, experiment_ids=exp, filter_string=model_filter)
    via_regex = mlflow_corpus["results"]["span.attributes.`mlflow.llm.model` RLIKE 'gpt'"][1]
    mini = mlflow_corpus["results"]["span.attributes.`mlflow.llm.model` LIKE '%gpt-4o-mini%'"][1]
    assert via_equals == [t for t in via_regex if t not in mini] and via_equals


# --------------------------------------------------------------------------------------------
# Search: SQL translation == the pure-Python evaluator, for every form of the grammar
# --------------------------------------------------------------------------------------------


def _synthetic_corpus() -> list[dict[str, Any]]:
    rng = random.Random(7)
    traces = []
    for n in range(40):
        assessments: list[Assessment] = []
        if n % 2:
            quality = ["good", "bad", "Great"][n % 3]
            assessments.append(Feedback(name="quality", value=quality, source=AssessmentSource("HUMAN", "u")))
        if n % 3 == 0:
            assessments.append(Feedback(name="score", value=rng.choice([0, 0.25, 0.5, 1, 7])))
            assessments.append(Feedback(name="ok", value=n % 2 == 0))
        if n % 5 == 0:
            stale = Feedback(name="quality", value="stale")
            stale.valid = False
            assessments.append(stale)
            assessments.append(Expectation(name="facts", value={"city": f"c{n}"}))
        tags = {"env": ["prod", "dev", "Prod", "stag_ing"][n % 4]}
        if n % 6 == 0:
            tags["mlflow.linkedPrompts"] = json.dumps([{"name": "qa", "version": str(n % 4)}])
        if n % 7 == 0:
            tags["note"] = "multi\nline 100%"
        metadata = {"mlflow.trace.user": f"user{n % 4}", "mlflow.sourceRun": f"run{n % 3}"} if n % 5 else {}
        specs = [{"name": f"agent_{n % 3}", "type": "AGENT", "status": "ERROR" if n % 9 == 0 else None}] + [
            {
                "name": ["chat", "search", "Été"][j % 3],
                "type": ["CHAT_MODEL", "TOOL", "RETRIEVER"][(n + j) % 3],
                "model": ["gpt-4o", "gpt-4o-mini", "claude-3"][(n * j) % 3],
                "attributes": {"retries": (n + j) % 3, "flag": bool(j % 2)},
                "status": "ERROR" if (n + j) % 11 == 0 else None,
            }
            for j in range(1 + n % 3)
        ]
        trace = make_trace(
            n,
            experiment_id=["1", "2", "10"][n % 3],
            request_time=T0_MS + (n // 2) * 1000,  # pairs share a timestamp: tie-breaks matter
            state="ERROR" if n % 9 == 0 else ("IN_PROGRESS" if n == 13 else "OK"),
            tags=tags,
            metadata=metadata,
            assessments=assessments,
            duration=None if n % 8 == 0 else 10 * (n % 6),
            client_request_id=f"req-{n}" if n % 4 else None,
            span_specs=specs,
        )
        if n == 17:  # an issue reference, as MLflow renders one
            trace["info"]["assessments"] = [
                {"assessment_id": "a-issue", "assessment_name": "iss-1", "trace_id": trace["info"]["trace_id"],
                 "source": {"source_type": "LLM_JUDGE", "source_id": "default"}, "create_time": "2023-11-14T22:13:20Z",
                 "last_update_time": "2023-11-14T22:13:20Z", "issue": {"issue_name": "Hallucination"}, "valid": True}
            ]
        traces.append(trace)
    return traces


SYNTHETIC = _synthetic_corpus()
PARITY_FILTERS = [
    "",
    "status = 'OK'",
    "trace.status != 'ERROR'",
    "status IN ('ERROR', 'IN_PROGRESS')",
    "state NOT IN ('OK')",
    "status LIKE 'IN%'",
    "status ILIKE 'error'",
    "status RLIKE 'R{2}'",
    f"request_id = '{SYNTHETIC[3]['info']['trace_id']}'",
    f"trace_id IN ('{SYNTHETIC[3]['info']['trace_id']}', '{SYNTHETIC[4]['info']['trace_id']}')",
    "request_id LIKE 'tr-%'",
    "client_request_id = 'req-5'",
    "client_request_id != 'req-5'",
    "client_request_id IN ('req-5', 'req-6')",
    "client_request_id NOT IN ('req-5')",
    "client_request_id LIKE 'req-1_'",
    "client_request_id ILIKE 'REQ-3%'",
    "client_request_id RLIKE '7$'",
    f"timestamp_ms > {T0_MS + 10_000}",
    f"timestamp >= {T0_MS + 10_000}",
    f"timestamp_ms < {T0_MS + 3000}",
    f"timestamp_ms <= {T0_MS + 3000}",
    f"timestamp_ms = {T0_MS + 5000}",
    f"timestamp_ms != {T0_MS + 5000}",
    "execution_time_ms > 20",
    "execution_time = 0",
    "execution_time_ms != 30",
    "execution_time_ms <= 25.5",
    f"end_time_ms > {T0_MS + 10_030}",
    f"end_time = {T0_MS}",
    f"end_time_ms >= '{T0_MS + 19_000}'",
    "name = 'agent_1'",
    "name != 'agent_1'",
    "name IN ('agent_0', 'agent_2')",
    "name NOT IN ('agent_0')",
    "name LIKE 'agent\\_%'",
    "name LIKE 'agent_%'",
    "name ILIKE 'AGENT_2'",
    "name RLIKE '[01]$'",
    "name IS NULL",
    "name IS NOT NULL",
    "tags.`mlflow.traceName` = 'agent_0'",
    "tags.env = 'prod'",
    "tags.env != 'prod'",
    "tags.env LIKE 'P%'",
    "tags.env ILIKE 'P%'",
    "tags.env LIKE 'stag_ing'",
    "tags.env LIKE 'stag%ing'",
    "tags.env RLIKE '^(dev|Prod)$'",
    "tags.env IS NULL",
    "tags.note IS NULL",
    "tags.note IS NOT NULL",
    "tags.note LIKE 'multi%100%'",
    "tags.note ILIKE '%LINE 100\\%'",
    "tags.note RLIKE 'multi.line'",
    "tags.missing = 'x'",
    "tags.missing != 'x'",
    "metadata.`mlflow.trace.user` = 'user1'",
    "metadata.`mlflow.trace.user` != 'user1'",
    "request_metadata.`mlflow.trace.user` LIKE 'user%'",
    "metadata.`mlflow.trace.user` ILIKE 'USER2'",
    "metadata.`mlflow.trace.user` RLIKE '[23]'",
    "metadata.`mlflow.trace.user` IS NULL",
    "metadata.`mlflow.trace.user` IS NOT NULL",
    "run_id = 'run1'",
    "run_id != 'run1'",
    "run_id IN ('run0', 'run2')",
    "run_id NOT IN ('run0')",
    "run_id LIKE 'run%'",
    "run_id IS NULL",
    "metadata.`mlflow.sourceRun` IS NOT NULL",
    "span.name = 'chat'",
    "span.name != 'chat'",
    "span.name IN ('search', 'Été')",
    "span.name NOT IN ('chat', 'search')",
    "span.name LIKE 'sea%'",
    "span.name ILIKE 'ÉTÉ'",
    "span.name RLIKE '^c'",
    "span.type = 'TOOL'",
    "span.type IN ('RETRIEVER', 'TOOL')",
    "span.type != 'AGENT'",
    "span.type LIKE '%MODEL'",
    "span.status = 'ERROR'",
    "span.status = 'OK'",
    "span.status IN ('UNSET')",
    "span.name = 'chat' AND span.type = 'TOOL'",
    "span.name = 'chat' AND span.status = 'ERROR'",
    "span.attributes.`mlflow.llm.model` = 'gpt-4o'",
    "span.attributes.`mlflow.llm.model` != 'gpt-4o'",
    "span.attributes.`mlflow.llm.model` IN ('claude-3', 'nope')",
    "span.attributes.`mlflow.llm.model` NOT IN ('claude-3')",
    "span.attributes.`mlflow.llm.model` LIKE 'gpt-4o%'",
    "span.attributes.`mlflow.llm.model` ILIKE 'GPT%MINI'",
    "span.attributes.`mlflow.llm.model` RLIKE '^c'",
    "span.attributes.retries = '2'",
    "span.attributes.flag = 'true'",
    "span.attributes.`mlflow.spanType` = 'TOOL'",
    "span.attributes.`mlflow.chat.tokenUsage` LIKE '%\"input_tokens\": 11%'",
    "span.attributes.mlflow.spanType = 'AGENT' AND span.name = 'agent_0'",
    "span.attributes.missing = 'x'",
    "span.content LIKE '%question 5.1 %'",
    "span.content ILIKE '%QUESTION 5.1 %'",
    "text LIKE '%Été ☀%'",
    "trace.text ILIKE '%ÉTÉ ☀%'",
    "trace.text LIKE '%answer 3._%'",
    "feedback.quality = 'good'",
    "feedback.quality = 'stale'",
    "feedback.quality != 'good'",
    "feedback.quality = '\"bad\"'",
    "feedback.quality LIKE '%a%'",
    "feedback.quality ILIKE '%GREAT%'",
    "feedback.quality RLIKE '^\"g'",
    "feedback.quality IS NULL",
    "feedback.quality IS NOT NULL",
    "feedback.score > 0.3",
    "feedback.score >= 1",
    "feedback.score < 1",
    "feedback.score <= 0",
    "feedback.score = '7.0'",
    "feedback.score != '0.0'",
    "feedback.ok = 'true'",
    "feedback.ok = 'false'",
    "feedback.ok > 0",
    "expectation.facts IS NOT NULL",
    "expectation.facts LIKE '%c10%'",
    "expectation.facts IS NULL",
    "feedback.facts IS NOT NULL",
    "issue.id = 'iss-1'",
    "issue.id = 'iss-2'",
    "prompt = 'qa/2'",
    "prompt = 'qa/9'",
    "tags.`mlflow.linkedPrompts` = 'qa/0'",
    "status = 'OK' AND tags.env ILIKE 'p%' AND span.type = 'TOOL' AND feedback.quality IS NOT NULL",
    "run_id = 'run2' AND execution_time_ms > 0 AND span.attributes.`mlflow.llm.model` LIKE 'gpt%'",
]


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> SqliteTraceStore:
    s = SqliteTraceStore(tmp_path_factory.mktemp("synthetic") / "traces.db")
    s.write_traces(SYNTHETIC)
    yield s
    s.close()


@pytest.mark.parametrize("filter_string", PARITY_FILTERS)
def test_sql_search_equals_python_evaluator(filter_string: str, synthetic_store: SqliteTraceStore) -> None:
    ast = parse_filter(filter_string)
    expected = ids(sort_traces([t for t in SYNTHETIC if matches(ast, t)], ()))
    assert search_ids(synthetic_store, filter_string=filter_string) == expected


def test_parity_filters_are_discriminating() -> None:
    """Guard against vacuous parity: most filters must match some but not all traces."""
    counts = [sum(matches(parse_filter(f), t) for t in SYNTHETIC) for f in PARITY_FILTERS]
    assert sum(0 < c < len(SYNTHETIC) for c in counts) >= len(PARITY_FILTERS) * 3 // 4


PARITY_ORDERS = [
    ["timestamp_ms ASC"],
    ["timestamp DESC"],
    ["execution_time_ms"],
    ["execution_time DESC"],
    ["end_time_ms"],
    ["end_time DESC"],
    ["status DESC", "request_id"],
    ["request_id"],
    ["trace_id DESC"],
    ["experiment_id"],
    ["experiment_id DESC", "timestamp_ms"],
    ["name"],
    ["name DESC"],
    ["run_id"],
    ["run_id DESC"],
    ["tags.env"],
    ["tags.env DESC", "execution_time_ms DESC"],
    ["tags.note DESC"],
    ["metadata.`mlflow.trace.user` DESC"],
    ["state"],
]


@pytest.mark.parametrize("order_by", PARITY_ORDERS, ids=[json.dumps(o) for o in PARITY_ORDERS])
def test_sql_order_equals_python_sort(order_by: list[str], synthetic_store: SqliteTraceStore) -> None:
    expected = ids(sort_traces(SYNTHETIC, parse_order_by(order_by)))
    assert search_ids(synthetic_store, order_by=order_by) == expected


# --------------------------------------------------------------------------------------------
# Search API details
# --------------------------------------------------------------------------------------------


def test_pagination_tokens_are_mlflow_shaped(synthetic_store: SqliteTraceStore) -> None:
    seen: list[str] = []
    token = None
    offsets = []
    while True:
        page, token = synthetic_store.search_traces(None, "status = 'OK'", ["timestamp_ms ASC"], 7, token, False)
        assert len(page) <= 7
        seen.extend(ids(page))
        if token is None:
            break
        offsets.append(json.loads(base64.b64decode(token))["offset"])
    assert offsets == list(range(7, 7 * (len(offsets) + 1), 7))
    assert seen == search_ids(synthetic_store, filter_string="status = 'OK'", order_by=["timestamp_ms ASC"])
    assert len(seen) == len(set(seen))


def test_last_full_page_has_no_token(synthetic_store: SqliteTraceStore) -> None:
    page, token = synthetic_store.search_traces(None, None, None, len(SYNTHETIC), None, False)
    assert len(page) == len(SYNTHETIC) and token is None


@pytest.mark.parametrize(
    "token",
    [
        "not-base64!",
        *(base64.b64encode(raw).decode() for raw in (b"[1]", b'{"offset": -1}', b'{"offset": 1.5}', b"{}")),
    ],
)
def test_bad_page_tokens(synthetic_store: SqliteTraceStore, token: str) -> None:
    with pytest.raises(InvalidArgumentError, match="Invalid page token"):
        synthetic_store.search_traces(None, None, None, 10, token, False)


@pytest.mark.parametrize("max_results", [0, -1, 50_001, True, "5", None, 2.5])
def test_bad_max_results(synthetic_store: SqliteTraceStore, max_results: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="max_results"):
        synthetic_store.search_traces(None, None, None, max_results, None, False)


def test_bad_filter_and_order_raise_filter_errors(synthetic_store: SqliteTraceStore) -> None:
    with pytest.raises(InvalidFilterError, match="'OR' is not supported"):
        synthetic_store.search_traces(None, "status = 'OK' OR status = 'ERROR'", None, 10, None, False)
    with pytest.raises(InvalidFilterError, match="Invalid order_by key"):
        synthetic_store.search_traces(None, None, ["bogus"], 10, None, False)


def test_experiment_scoping_and_spans(synthetic_store: SqliteTraceStore) -> None:
    def experiment(t: dict[str, Any]) -> str:
        return str(t["info"]["trace_location"]["mlflow_experiment"]["experiment_id"])

    by_exp = {e: [t for t in SYNTHETIC if experiment(t) == e] for e in ("1", "2", "10")}
    assert set(search_ids(synthetic_store, experiment_ids=["1", "10"])) == set(ids(by_exp["1"] + by_exp["10"]))
    assert search_ids(synthetic_store, experiment_ids=[]) == []
    assert synthetic_store.count("2") == len(by_exp["2"])
    with_spans, _ = synthetic_store.search_traces(["2"], None, None, 100, None, True)
    without, _ = synthetic_store.search_traces(["2"], None, None, 100, None, False)
    originals = {t["info"]["trace_id"]: t for t in by_exp["2"]}
    assert [t["data"] for t in with_spans] == [originals[i]["data"] for i in ids(with_spans)]
    assert all(t["data"] == {"spans": []} for t in without)
    assert [t["info"] for t in without] == [t["info"] for t in with_spans]


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------


def test_tags(store: SqliteTraceStore) -> None:
    trace = make_trace(1)
    trace_id = trace["info"]["trace_id"]
    store.write_traces([trace])
    store.set_trace_tag(trace_id, "k", "v1")
    store.set_trace_tag(trace_id, "k", "v2")
    assert store.get_trace_info(trace_id)["tags"]["k"] == "v2"
    assert search_ids(store, filter_string="tags.k = 'v2'") == [trace_id]
    store.delete_trace_tag(trace_id, "k")
    assert "k" not in store.get_trace_info(trace_id)["tags"]
    with pytest.raises(TagNotFoundError) as info:
        store.delete_trace_tag(trace_id, "k")
    assert isinstance(info.value, KeyError) and "No tag with key 'k'" in str(info.value)
    with pytest.raises(TraceNotFoundError) as missing:
        store.set_trace_tag("tr-missing", "k", "v")
    assert isinstance(missing.value, _exceptions.TraceNotFoundError)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST" and "tr-missing" in str(missing.value)
    with pytest.raises(TraceNotFoundError):
        store.delete_trace_tag("tr-missing", "k")
    with pytest.raises(InvalidArgumentError):
        store.set_trace_tag(trace_id, "", "v")
    with pytest.raises(InvalidArgumentError):
        store.set_trace_tag(trace_id, "k", 5)  # type: ignore[arg-type]


def test_renaming_a_trace_through_its_name_tag(store: SqliteTraceStore) -> None:
    a, b = make_trace(1), make_trace(2)
    store.write_traces([a, b])
    store.set_trace_tag(a["info"]["trace_id"], "mlflow.traceName", "zz")
    assert search_ids(store, filter_string="name = 'zz'") == [a["info"]["trace_id"]]
    assert search_ids(store, order_by=["name DESC"])[0] == a["info"]["trace_id"]
    store.delete_trace_tag(a["info"]["trace_id"], "mlflow.traceName")
    assert search_ids(store, filter_string="name IS NULL") == [a["info"]["trace_id"]]


# --------------------------------------------------------------------------------------------
# Assessments
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def stored_trace(store: SqliteTraceStore) -> str:
    trace = make_trace(1)
    store.write_traces([trace])
    return trace["info"]["trace_id"]


def test_create_assessment_renders_like_mlflow(store: SqliteTraceStore, stored_trace: str) -> None:
    source = AssessmentSource("HUMAN", "bob")
    feedback = Feedback(name="quality", value=3, rationale="ok", metadata={"k": "v"}, source=source)
    feedback.trace_id = stored_trace
    created = store.create_assessment(feedback.to_dictionary())
    assert created["assessment_id"].startswith("a-") and len(created["assessment_id"]) == 34
    assert created["valid"] is True and created["feedback"] == {"value": 3.0}
    assert Assessment.from_dictionary(created).to_dictionary() == created
    assert store.get_assessment(stored_trace, created["assessment_id"]) == created
    assert store.get_trace_info(stored_trace)["assessments"] == [created]
    assert search_ids(store, filter_string="feedback.quality > 2") == [stored_trace]


def test_create_assessment_fills_defaults(store: SqliteTraceStore, stored_trace: str) -> None:
    created = store.create_assessment(
        {"trace_id": stored_trace, "assessment_name": "e", "expectation": {"value": {"a": [1]}}}
    )
    assert created["source"] == {"source_type": "HUMAN", "source_id": "default"}
    assert created["create_time"] == created["last_update_time"]
    assert created["create_time"].endswith("Z")
    assert created["expectation"] == {
        "serialized_value": {"serialization_format": "JSON_FORMAT", "value": '{"a": [1]}'}
    }
    assert Expectation.from_dictionary(created).value == {"a": [1]}


@pytest.mark.parametrize(
    ("assessment", "message"),
    [
        ({"assessment_name": "q", "feedback": {"value": 1}}, "trace_id"),
        ({"trace_id": "T", "feedback": {"value": 1}}, "assessment_name"),
        ({"trace_id": "T", "assessment_name": "q"}, "exactly one of"),
        ({"trace_id": "T", "assessment_name": "q", "feedback": {"value": 1}, "expectation": {}}, "exactly one of"),
        ({"trace_id": "T", "assessment_name": "q", "feedback": {"value": object()}}, "not JSON-compatible"),
        ({"trace_id": "T", "assessment_name": "q", "feedback": {"value": 1}, "create_time": "yesterday"}, "timestamp"),
    ],
)
def test_create_assessment_rejects_malformed_dicts(
    store: SqliteTraceStore, stored_trace: str, assessment: dict[str, Any], message: str
) -> None:
    if assessment.get("trace_id") == "T":
        assessment["trace_id"] = stored_trace
    with pytest.raises(InvalidArgumentError, match=message):
        store.create_assessment(assessment)


def test_create_assessment_errors(store: SqliteTraceStore, stored_trace: str) -> None:
    with pytest.raises(TraceNotFoundError):
        store.create_assessment({"trace_id": "tr-missing", "assessment_name": "q", "feedback": {"value": 1}})
    with pytest.raises(AssessmentNotFoundError, match="a-nope"):
        store.create_assessment(
            {"trace_id": stored_trace, "assessment_name": "q", "feedback": {"value": 1}, "overrides": "a-nope"}
        )
    created = store.create_assessment({"trace_id": stored_trace, "assessment_name": "q", "feedback": {"value": 1}})
    with pytest.raises(InvalidArgumentError, match="already exists"):
        store.create_assessment({**created, "valid": None})
    assert len(store.get_trace_info(stored_trace)["assessments"]) == 1


def test_override_and_delete_restore_validity(store: SqliteTraceStore, stored_trace: str) -> None:
    original = store.create_assessment({"trace_id": stored_trace, "assessment_name": "q", "feedback": {"value": "bad"}})
    override = store.create_assessment(
        {
            "trace_id": stored_trace,
            "assessment_name": "q",
            "feedback": {"value": "good"},
            "overrides": original["assessment_id"],
        }
    )
    assert override["overrides"] == original["assessment_id"]
    assert store.get_assessment(stored_trace, original["assessment_id"])["valid"] is False
    assert search_ids(store, filter_string="feedback.q = 'bad'") == []
    assert search_ids(store, filter_string="feedback.q = 'good'") == [stored_trace]
    store.delete_assessment(stored_trace, override["assessment_id"])
    assert store.get_assessment(stored_trace, original["assessment_id"])["valid"] is True
    assert search_ids(store, filter_string="feedback.q = 'bad'") == [stored_trace]
    with pytest.raises(AssessmentNotFoundError) as info:
        store.get_assessment(stored_trace, override["assessment_id"])
    assert isinstance(info.value, KeyError)
    store.delete_assessment(stored_trace, override["assessment_id"])  # idempotent, as in MLflow
    with pytest.raises(TraceNotFoundError):
        store.delete_assessment("tr-missing", "a-1")
    with pytest.raises(TraceNotFoundError):
        store.get_assessment("tr-missing", "a-1")


def test_update_assessment(store: SqliteTraceStore, stored_trace: str) -> None:
    created = store.create_assessment(
        {"trace_id": stored_trace, "assessment_name": "q", "feedback": {"value": 1}, "rationale": "r",
         "metadata": {"a": "1"}, "create_time": "2023-11-14T22:13:20Z", "last_update_time": "2023-11-14T22:13:20Z"}
    )
    aid = created["assessment_id"]
    changes = {"feedback": {"value": 0.5}, "metadata": {"b": "2"}, "rationale": None}
    updated = store.update_assessment(stored_trace, aid, changes)
    assert updated["feedback"] == {"value": 0.5}
    assert updated["metadata"] == {"a": "1", "b": "2"}
    assert updated["rationale"] == "r"  # None keeps the old rationale
    assert updated["create_time"] == "2023-11-14T22:13:20Z" and updated["last_update_time"] > "2023-11-14T22:13:20Z"
    renamed = store.update_assessment(stored_trace, aid, {"assessment_name": "quality", "rationale": "new"})
    assert (renamed["assessment_name"], renamed["rationale"]) == ("quality", "new")
    assert store.get_assessment(stored_trace, aid) == renamed
    assert Assessment.from_dictionary(renamed).to_dictionary() == renamed
    assert search_ids(store, filter_string="feedback.quality = '0.5'") == [stored_trace]
    with pytest.raises(InvalidArgumentError, match="cannot set a expectation value on a feedback"):
        store.update_assessment(stored_trace, aid, {"expectation": {"value": 1}})
    with pytest.raises(InvalidArgumentError, match="source"):
        store.update_assessment(stored_trace, aid, {"source": {"source_type": "HUMAN"}})
    with pytest.raises(AssessmentNotFoundError):
        store.update_assessment(stored_trace, "a-nope", {"rationale": "x"})
    with pytest.raises(TraceNotFoundError):
        store.update_assessment("tr-missing", aid, {"rationale": "x"})


def test_update_expectation_value(store: SqliteTraceStore, stored_trace: str) -> None:
    created = store.create_assessment({"trace_id": stored_trace, "assessment_name": "e", "expectation": {"value": "x"}})
    updated = store.update_assessment(stored_trace, created["assessment_id"], {"expectation": {"value": ["y"]}})
    assert Expectation.from_dictionary(updated).value == ["y"]
    with pytest.raises(InvalidArgumentError, match="feedback value on a expectation"):
        store.update_assessment(stored_trace, created["assessment_id"], {"feedback": {"value": 1}})


# --------------------------------------------------------------------------------------------
# Deletion
# --------------------------------------------------------------------------------------------


def test_delete_traces(store: SqliteTraceStore) -> None:
    traces = [
        make_trace(i, experiment_id="1" if i < 6 else "2", assessments=[Feedback(name="q", value=1)]) for i in range(8)
    ]
    store.write_traces(traces)
    store.set_trace_tag(traces[0]["info"]["trace_id"], "x", "y")
    assert store.delete_traces("1", trace_ids=[*ids([traces[0], traces[7]]), "tr-nope"]) == 1
    assert store.get_trace(traces[0]["info"]["trace_id"]) is None
    assert store.get_trace(traces[7]["info"]["trace_id"]) is not None  # other experiment: untouched
    assert store.delete_traces("1", max_timestamp_millis=T0_MS + 3000, max_traces=2) == 2
    assert search_ids(store, experiment_ids=["1"], order_by=["timestamp_ms"]) == ids(traces[3:6])
    assert store.delete_traces("1", max_timestamp_millis=T0_MS + 100_000) == 3
    assert store.count() == 2 and store.count("1") == 0
    with sqlite3.connect(store.path) as conn:  # child rows went with their traces
        for table in ("spans", "tags", "metadata", "assessments"):
            remaining = {r[0] for r in conn.execute(f"SELECT DISTINCT trace_id FROM {table}")}
            assert remaining <= set(ids(traces[6:]))
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        store.delete_traces("1")
    with pytest.raises(InvalidArgumentError, match="exactly one"):
        store.delete_traces("1", trace_ids=["a"], max_timestamp_millis=1)
    with pytest.raises(InvalidArgumentError, match="max_traces"):
        store.delete_traces("1", max_timestamp_millis=1, max_traces=0)


# --------------------------------------------------------------------------------------------
# The file: creation, permissions, schema version, errors
# --------------------------------------------------------------------------------------------


def test_new_file_parent_dirs_mode_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "traces.db"
    s = SqliteTraceStore(path)
    s.write_traces([make_trace(1)])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        assert version == str(_local_store.SCHEMA_VERSION)
    s.close()
    with SqliteTraceStore(path) as reopened:  # reopening keeps the data
        assert reopened.count() == 1


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    SqliteTraceStore(path).close()
    os.chmod(path, 0o640)
    SqliteTraceStore(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_newer_schema_version_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    SqliteTraceStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(SchemaVersionError, match="schema version 99; this flowtel understands up to 1"):
        SqliteTraceStore(path)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(SchemaVersionError, match="not a flowtel trace store"):
        SqliteTraceStore(path)


def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a SQLite database|Cannot open|failed"):
        SqliteTraceStore(path)


@pytest.mark.parametrize("path", [":memory:", "", "file:x.db?mode=memory"])
def test_non_file_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgumentError, match="needs a file path"):
        SqliteTraceStore(path)


def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    s = SqliteTraceStore(tmp_path / "t.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.count()
    with pytest.raises(StoreError, match="closed"):
        s.write_traces([make_trace(1)])


def test_lock_held_too_long_is_a_bounded_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_local_connections, "_BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(_local_connections, "_BUSY_RETRIES", 2)
    s = SqliteTraceStore(tmp_path / "t.db")
    blocker = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock for the whole call
    try:
        with pytest.raises(StoreError, match="stayed locked by other writers"):
            s.write_traces([make_trace(1)])
        assert s.count() == 0  # readers are not blocked by the writer (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    s.write_traces([make_trace(1)])
    assert s.count() == 1
    s.close()


# --------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------

N_PROCESSES = 4
BATCHES_PER_PROCESS = 5
TRACES_PER_BATCH = 20


# Runs in each spawned process via exec(), so the children import flowtel only (importing this
# module would load MLflow in every child).
_WRITER_PROCESS = """
import os
from flowtel.exporters.local._store import SqliteTraceStore

store = SqliteTraceStore(path)
barrier.wait()  # every process starts writing at once
for batch in batches:
    store.write_traces(batch + shared)  # shared traces: every process upserts the same ids
    store.set_trace_tag(shared[0]["info"]["trace_id"], f"seen-{os.getpid()}", "1")
store.close()
"""


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    shared = [make_trace(10_000 + i, n_spans=2) for i in range(5)]
    work = [
        [
            [make_trace(p * 1000 + b * 100 + i, n_spans=4) for i in range(TRACES_PER_BATCH)]
            for b in range(BATCHES_PER_PROCESS)
        ]
        for p in range(N_PROCESSES)
    ]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    procs = [
        ctx.Process(
            target=exec,
            args=(_WRITER_PROCESS, {"path": path, "batches": work[p], "shared": shared, "barrier": barrier}),
        )
        for p in range(N_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    assert [proc.exitcode for proc in procs] == [0] * N_PROCESSES

    with SqliteTraceStore(path) as s:
        assert s.count() == N_PROCESSES * BATCHES_PER_PROCESS * TRACES_PER_BATCH + len(shared)
        for trace in [t for proc_work in work for batch in proc_work for t in batch] + shared[1:]:
            assert s.get_trace(trace["info"]["trace_id"]) == trace
        tags = s.get_trace_info(shared[0]["info"]["trace_id"])["tags"]
        assert sum(k.startswith("seen-") for k in tags) == N_PROCESSES
        assert len(search_ids(s, filter_string="span.type = 'TOOL'")) == s.count() - len(shared)


def test_concurrent_threads_share_one_store(store: SqliteTraceStore) -> None:
    n_threads, per_thread = 8, 15
    traces = [[make_trace(t * 100 + i, n_spans=2) for i in range(per_thread)] for t in range(n_threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(mine: list[dict[str, Any]]) -> None:
        try:
            barrier.wait()
            for trace in mine:
                store.write_traces([trace])
                trace_id = trace["info"]["trace_id"]
                store.set_trace_tag(trace_id, "done", "yes")
                store.create_assessment({"trace_id": trace_id, "assessment_name": "q", "feedback": {"value": 1}})
                assert store.get_trace(trace_id)["data"] == trace["data"]
                store.search_traces(None, "tags.done = 'yes'", None, 5, None, True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(mine,)) for mine in traces]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == n_threads * per_thread
    assert len(search_ids(store, filter_string="tags.done = 'yes' AND feedback.q > 0")) == n_threads * per_thread
