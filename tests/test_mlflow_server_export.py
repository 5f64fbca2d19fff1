"""flowtel -> a real ``mlflow server``: traces of every shape read back by the real MLflow client
exactly as flowtel produced them; configuration, auth headers, failure reporting, fallbacks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
from opentelemetry.trace import Link, SpanContext

import flowtel
from flowtel import SpanEvent, SpanType
from flowtel.delivery._http import HttpClient, HttpSettings
from flowtel.entities import AssessmentSource, Trace
from flowtel.exporters.mlflow._client import MlflowRestClient
from flowtel.exporters.mlflow._exporter import MlflowExporter, create_mlflow_destination
from flowtel.exporters.mlflow._store import MlflowTraceStore
from flowtel.tracing import _experiments

pytest.register_assert_rewrite("tests._mlflow_helpers")
from tests._mlflow_helpers import (
    FaultProxy,
    assert_same_trace,
    flowtel_to,
    new_experiment,
    self_signed_tls,
)
from tests._servers.mlflow_server import MlflowServer


# -- traces of every shape -----------------------------------------------------------------------
@flowtel.trace(span_type=SpanType.TOOL)
def get_weather(city: str) -> str:
    span = flowtel.get_current_active_span()
    span.add_event(SpanEvent("lookup", attributes={"attempt": 2, "ratio": 0.5, "ok": True, "tags": ["a", "b"]}))
    return f"Sunny in {city}"


@flowtel.trace(span_type=SpanType.CHAT_MODEL)
def chat(messages: list[dict[str, str]]) -> dict[str, Any]:
    flowtel.get_current_active_span().set_attributes({
        "mlflow.chat.tokenUsage": {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16},
        "mlflow.llm.model": "gpt-4o-mini",
        "json_looking": '{"a": 1}', "quoted": '"hi"', "number_text": "42", "none": None,
        "unicode": "héllo ✓ 日本", "nested": {"a": [1, 2.5, {"b": None}], "c": True},
    })
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Calling tool"}}]}


@flowtel.trace(span_type=SpanType.AGENT)
def agent(question: str) -> str:
    trace_id = flowtel.get_active_trace_id()
    flowtel.update_current_trace(
        tags={"app": "demo"}, metadata={"app.version": "1.2"}, client_request_id="req-42",
        session_id="sess-1", user="alice",
    )
    flowtel.log_feedback(trace_id=trace_id, name="quality", value=True, rationale="ok",
                         source=AssessmentSource(source_type="HUMAN", source_id="bob"))
    flowtel.log_expectation(trace_id=trace_id, name="expected", value={"answer": 7})
    chat([{"role": "user", "content": question}])
    return get_weather("Paris")


@flowtel.trace
def failing(x: int) -> int:
    raise ValueError(f"bad {x}")


@flowtel.trace(output_reducer=lambda items: "".join(items))
def stream(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"t{i}"


@flowtel.trace(span_type=SpanType.RETRIEVER)
async def retrieve(query: str) -> list[dict[str, Any]]:
    await asyncio.sleep(0)
    return [{"page_content": query, "metadata": {"source": "x"}, "id": None}]


def produce_all_shapes() -> list[str]:
    """One trace of each shape; their ids, in order."""
    ids = []
    agent("Weather in Paris?")
    ids.append(flowtel.get_last_active_trace_id())
    with pytest.raises(ValueError):
        failing(1)
    ids.append(flowtel.get_last_active_trace_id())
    assert "".join(stream(3)) == "t0t1t2"
    ids.append(flowtel.get_last_active_trace_id())
    asyncio.run(retrieve("paris"))
    ids.append(flowtel.get_last_active_trace_id())
    linked = SpanContext(int(ids[0][3:], 16), 0x1234, is_remote=False)
    with flowtel.start_span("manual", span_type=SpanType.CHAIN, links=[Link(linked, {"why": "retry"})]) as span:
        span.set_inputs({"q": "x"})
        flowtel.update_current_trace(state="ERROR", request_preview="custom request")
        with flowtel.start_span("inner") as inner:
            inner.set_outputs(None)
        span.set_outputs("done")
    ids.append(flowtel.get_last_active_trace_id())
    root = flowtel.start_span_no_context("detached", inputs={"a": 1}, tags={"t": "1"}, metadata={"m": "2"})
    child = flowtel.start_span_no_context("child", parent_span=root)
    child.end(outputs=[1, 2])
    root.end(outputs={"ok": True})
    ids.append(root.trace_id)
    return ids


def _ours(memory: Any, trace_id: str) -> Trace:
    return next(t for t in memory.traces if t.info.trace_id == trace_id)


# -- write path, SQL backend ---------------------------------------------------------------------
def test_every_shape_reads_back_identically_with_mlflow_client(mlflow_server: MlflowServer) -> None:
    experiment_id = new_experiment(mlflow_server, "shapes")
    with flowtel_to(mlflow_server.url, experiment_id) as memory:
        ids = produce_all_shapes()
        assert flowtel.flush()
        client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
        for trace_id in ids:
            theirs = client.get_trace(trace_id)
            assert theirs.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
            assert theirs.info.experiment_id == experiment_id
            assert_same_trace(_ours(memory, trace_id), theirs)
        stats = flowtel.get_delivery_stats()["destinations"][0]
        assert (stats["sent"], stats["dropped"]) == (len(ids), {})
    manual = client.get_trace(ids[4]).data.spans[0]
    assert manual.to_dict()["links"] == [
        {"trace_id": ids[0], "span_id": "0000000000001234", "attributes": {"why": "retry"}}]


def test_integers_beyond_int64_are_kept_as_their_digits(mlflow_server: MlflowServer) -> None:
    """OTLP has no integer wider than 64 bits: such a value is sent as its decimal string."""
    with flowtel_to(mlflow_server.url, new_experiment(mlflow_server)):
        with flowtel.start_span("big", attributes={"big": 2**70, "small": 2**62}):
            pass
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
    [span] = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_trace(trace_id).data.spans
    assert (span.attributes["big"], span.attributes["small"]) == (str(2**70), 2**62)


def test_details_the_user_set_reach_the_server(mlflow_server: MlflowServer) -> None:
    experiment_id = new_experiment(mlflow_server)
    with flowtel_to(mlflow_server.url, experiment_id):
        agent("Weather in Paris?")
        trace_id = flowtel.get_last_active_trace_id()
        with pytest.raises(ValueError):
            failing(2)
        error_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    info = client.get_trace(trace_id).info
    assert info.client_request_id == "req-42"
    assert info.tags["app"] == "demo" and info.tags["mlflow.traceName"] == "agent"
    assert info.trace_metadata["app.version"] == "1.2"
    assert info.trace_metadata["mlflow.trace.user"] == "alice"
    assert info.trace_metadata["mlflow.trace.session"] == "sess-1"
    assert json.loads(info.trace_metadata["mlflow.trace.tokenUsage"]) == {
        "input_tokens": 12, "output_tokens": 4, "total_tokens": 16}
    assert info.request_preview == '{"question": "Weather in Paris?"}'
    assert info.response_preview == '"Sunny in Paris"'
    assert str(info.state) in ("OK", "TraceState.OK")
    by_name = {a.name: a for a in info.assessments}
    assert by_name["quality"].value is True and by_name["quality"].rationale == "ok"
    assert by_name["quality"].source.source_id == "bob"
    assert by_name["expected"].value == {"answer": 7}
    error = client.get_trace(error_id)
    assert error.info.state.value == "ERROR"
    [span] = error.data.spans
    assert span.status.description == "ValueError: bad 2"
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "ValueError"


def test_many_traces_in_one_batch_and_several_experiments(mlflow_server: MlflowServer) -> None:
    first, second = new_experiment(mlflow_server, "a"), new_experiment(mlflow_server, "b")
    with flowtel_to(mlflow_server.url, first):
        for i in range(30):
            with flowtel.start_span(f"t{i}", trace_destination=second if i % 3 == 0 else None) as span:
                span.set_inputs({"i": i})
        flowtel.flush()
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    in_first = client.search_traces(locations=[first], max_results=100)
    in_second = client.search_traces(locations=[second], max_results=100)
    assert (len(in_first), len(in_second)) == (20, 10)
    assert all(t.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE" for t in in_first + in_second)
    assert sorted(t.data.spans[0].inputs["i"] for t in in_second) == list(range(0, 30, 3))


def test_info_first_order_stores_the_same_trace(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """FLOWTEL_MLFLOW_EXPORT_ORDER=info_first: the same trace, except that the server may
    re-derive the duration from the spans (millisecond rounding)."""
    monkeypatch.setenv("FLOWTEL_MLFLOW_EXPORT_ORDER", "info_first")
    experiment_id = new_experiment(mlflow_server, "info-first")
    with flowtel_to(mlflow_server.url, experiment_id) as memory:
        ids = produce_all_shapes()
        assert flowtel.flush()
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    for trace_id in ids:
        ours, theirs = _ours(memory, trace_id), client.get_trace(trace_id)
        assert theirs.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
        assert 0 <= theirs.info.execution_duration - ours.info.execution_duration <= 1
        theirs.info.execution_duration = ours.info.execution_duration
        assert_same_trace(ours, theirs)


# -- write path, FileStore backend: spans go to traces.json --------------------------------------
@pytest.fixture
def mlflow_uri() -> Iterator[Any]:
    """Sets mlflow's global tracking URI: its artifact downloads (traces.json) use it."""
    previous = mlflow.get_tracking_uri()

    def use(url: str) -> mlflow.MlflowClient:
        mlflow.set_tracking_uri(url)
        return mlflow.MlflowClient(tracking_uri=url)

    try:
        yield use
    finally:
        mlflow.set_tracking_uri(previous)


def test_file_store_server_gets_traces_json(mlflow_file_server: MlflowServer, mlflow_uri: Any) -> None:
    experiment_id = new_experiment(mlflow_file_server, "file")
    with flowtel_to(mlflow_file_server.url, experiment_id) as memory:
        ids = produce_all_shapes()
        assert flowtel.flush()
        stats = flowtel.get_delivery_stats()["destinations"][0]
        assert (stats["sent"], stats["dropped"]) == (len(ids), {})
    client = mlflow_uri(mlflow_file_server.url)
    for trace_id in ids:
        theirs = client.get_trace(trace_id)
        assert "mlflow.trace.spansLocation" not in theirs.info.tags
        assert_same_trace(_ours(memory, trace_id), theirs, assessment_times=False)


# -- experiments -----------------------------------------------------------------------------------
def test_set_experiment_by_name_creates_it_and_by_id_checks_it(mlflow_server: MlflowServer) -> None:
    name = f"named-{new_experiment(mlflow_server)}"
    with flowtel_to(mlflow_server.url):
        experiment = flowtel.set_experiment(name)
        assert experiment.name == name and experiment.lifecycle_stage == "active"
        assert flowtel.set_experiment(name).experiment_id == experiment.experiment_id
        with pytest.raises(flowtel.FlowtelException, match="does not exist") as missing:
            flowtel.set_experiment(experiment_id="987654")
        assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
        with pytest.raises(flowtel.FlowtelException, match="exactly one"):
            flowtel.set_experiment()
        client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
        deleted = client.create_experiment(f"deleted-{name}")
        client.delete_experiment(deleted)
        with pytest.raises(flowtel.FlowtelException, match="deleted experiment"):
            flowtel.set_experiment(experiment_id=deleted)
        assert flowtel.set_experiment(experiment_id=experiment.experiment_id) == experiment
        with flowtel.start_span("in-named"):
            pass
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
    assert client.get_trace(trace_id).info.experiment_id == experiment.experiment_id


def test_experiment_name_from_env_is_resolved_on_the_worker(mlflow_server: MlflowServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"env-{new_experiment(mlflow_server)}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    assert client.get_experiment_by_name(name) is None
    with flowtel_to(mlflow_server.url):
        with flowtel.start_span("env-named"):
            # Nothing was looked up on the caller's thread: the experiment does not exist yet.
            assert client.get_experiment_by_name(name) is None
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
    experiment = client.get_experiment_by_name(name)
    assert client.get_trace(trace_id).info.experiment_id == experiment.experiment_id


def test_experiment_name_unresolvable_while_server_is_down_is_retried_not_misfiled(
        mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"later-{new_experiment(mlflow_server)}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    proxy = FaultProxy(mlflow_server.port)
    try:
        proxy.mode = "drop"
        client = MlflowRestClient(HttpClient(HttpSettings(proxy.url, timeout=10)))
        store = MlflowTraceStore(client)
        exporter = MlflowExporter(client, store)
        with flowtel_to(mlflow_server.url) as memory:
            with flowtel.start_span("waits"):
                pass
            flowtel.flush()
            [trace] = memory.traces
        trace.info.trace_location = flowtel.TraceLocation.from_experiment_id(
            _experiments.UNRESOLVED_EXPERIMENT_PREFIX + name)
        failure = exporter.export([trace]).failures[trace.info.trace_id]
        assert (failure.reason, failure.retryable) == ("experiment_unresolved", True)
        proxy.mode = "forward"
        assert exporter.export([trace]).ok
        experiment = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_experiment_by_name(name)
        assert trace.info.experiment_id == experiment.experiment_id
    finally:
        proxy.close()


# -- failures: classified per trace, never raised --------------------------------------------------
@pytest.fixture
def proxy(mlflow_server: MlflowServer) -> Iterator[FaultProxy]:
    p = FaultProxy(mlflow_server.port)
    try:
        yield p
    finally:
        p.close()


def _exporter(url: str, *, info_first: bool = False) -> MlflowExporter:
    client = MlflowRestClient(HttpClient(HttpSettings(url, timeout=10)))
    return MlflowExporter(client, MlflowTraceStore(client), info_first=info_first)


@pytest.mark.parametrize(("mode", "reason", "retry_after"), [
    ("503", "http_503", 7.0), ("429", "http_429", 7.0), ("drop", "connection", None),
    ("overloaded", "http_400", None),
])
def test_transient_failures_are_retryable_with_retry_after(mlflow_server: MlflowServer, proxy: FaultProxy,
                                                           mode: str, reason: str, retry_after: float | None) -> None:
    trace = _captured_trace()
    exporter = _exporter(proxy.url)
    proxy.mode = mode
    failure = exporter.export([trace]).failures[trace.info.trace_id]
    assert (failure.reason, failure.retryable, failure.retry_after) == (reason, True, retry_after)
    # A transient failure changes nothing the exporter believes about the server.
    proxy.mode = "forward"
    assert exporter.export([trace]).ok
    theirs = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_trace(trace.info.trace_id)
    assert theirs.info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"
    assert not [p for _, p, _ in proxy.requests if "mlflow-artifacts" in p]


def test_unknown_experiment_is_not_retryable_and_carries_the_server_message(mlflow_server: MlflowServer) -> None:
    trace = _captured_trace()
    trace.info.trace_location = flowtel.TraceLocation.from_experiment_id("424242")
    failure = _exporter(mlflow_server.url).export([trace]).failures[trace.info.trace_id]
    assert (failure.reason, failure.retryable) == ("http_404", False)
    assert "No Experiment with id=424242 exists" in failure.message


def test_unreachable_server_is_a_connection_failure() -> None:
    trace = _captured_trace()
    failure = _exporter("http://127.0.0.1:9").export([trace]).failures[trace.info.trace_id]
    assert (failure.reason, failure.retryable) == ("connection", True)
    assert "127.0.0.1:9" in failure.message


def _captured_trace() -> Trace:
    """A finished trace, captured in memory only (not delivered anywhere)."""
    from flowtel.exporters import InMemoryExporter
    from flowtel.tracing import _runtime

    memory = InMemoryExporter()
    _runtime.set_destinations([_runtime.Destination(exporter=memory)])
    with flowtel.start_span("probe") as span:
        span.set_inputs({"x": 1})
    flowtel.flush()
    _runtime.set_destinations(None)
    return memory.traces[-1]


def test_old_servers_get_v2_calls_and_traces_json(mlflow_server: MlflowServer, proxy: FaultProxy,
                                                  mlflow_uri: Any) -> None:
    """Without /v1/traces and StartTraceV3 (MLflow <= 3.2) the v2 StartTrace/EndTrace calls and
    a traces.json upload are used; the server assigns its own trace id."""
    trace = _captured_trace()
    experiment_id = new_experiment(mlflow_server, "old")
    trace.info.trace_location = flowtel.TraceLocation.from_experiment_id(experiment_id)
    proxy.mode = "old-server"
    assert _exporter(proxy.url).export([trace]).ok
    paths = [(m, p.split("?")[0]) for m, p, _ in proxy.requests]
    assert ("POST", "/api/2.0/mlflow/traces") in paths
    assert any(m == "PATCH" and p.startswith("/api/2.0/mlflow/traces/") for m, p in paths)
    assert any(m == "PUT" and p.endswith("/traces.json") for m, p in paths)
    client = mlflow_uri(mlflow_server.url)
    [v2] = client.search_traces(locations=[experiment_id])
    assert v2.info.trace_id != trace.info.trace_id
    assert v2.info.trace_metadata["mlflow.traceInputs"] == '{"x": 1}'
    assert [(s.name, s.inputs) for s in v2.data.spans] == [("probe", {"x": 1})]


def test_server_without_otlp_gets_traces_json_and_is_rechecked_later(mlflow_server: MlflowServer,
                                                                      proxy: FaultProxy, mlflow_uri: Any) -> None:
    first, second = _captured_trace(), _captured_trace()
    exporter = _exporter(proxy.url)
    proxy.mode = "no-otlp"
    assert exporter.export([first]).ok
    client = mlflow_uri(mlflow_server.url)
    assert client.get_trace(first.info.trace_id).data.spans[0].name == "probe"
    assert "mlflow.trace.spansLocation" not in client.get_trace(first.info.trace_id).info.tags
    proxy.mode = "forward"
    exporter._otlp._off_until = 0.0  # the re-check interval has passed
    assert exporter.export([second]).ok
    assert client.get_trace(second.info.trace_id).info.tags["mlflow.trace.spansLocation"] == "TRACKING_STORE"


# -- auth, TLS, credentials ------------------------------------------------------------------------
def test_bearer_and_basic_credentials_are_sent_and_never_shown(mlflow_server: MlflowServer, proxy: FaultProxy,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    trace = _captured_trace()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "s3cr3t-token")
    bearer = create_mlflow_destination(proxy.url)
    assert bearer.exporter.export([trace]).ok
    assert {h.get("Authorization") for _, _, h in proxy.requests} == {"Bearer s3cr3t-token"}
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pa55word")
    proxy.requests.clear()
    basic = create_mlflow_destination(proxy.url)
    assert basic.exporter.export([trace]).ok
    assert {h.get("Authorization") for _, _, h in proxy.requests} == {"Basic YWxpY2U6cGE1NXdvcmQ="}
    proxy.mode = "drop"
    caplog.set_level(logging.DEBUG)
    failure = basic.exporter.export([trace]).failures[trace.info.trace_id]
    with pytest.raises(flowtel.FlowtelException) as raised:
        basic.store.get_trace(trace.info.trace_id)
    shown = " ".join([failure.message, str(raised.value), repr(basic.exporter.client.http.settings),
                      repr(basic.exporter.client.http), caplog.text])
    for secret in ("pa55word", "YWxpY2U6cGE1NXdvcmQ=", "s3cr3t-token"):
        assert secret not in shown


def test_tls_is_verified_by_default_and_trusts_the_given_ca(mlflow_server: MlflowServer, tmp_path: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tls, cert_path = self_signed_tls(tmp_path)
    proxy = FaultProxy(mlflow_server.port, tls=tls)
    try:
        trace = _captured_trace()
        failure = create_mlflow_destination(proxy.url).exporter.export([trace]).failures[trace.info.trace_id]
        assert (failure.reason, failure.retryable) == ("tls", False)
        assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in failure.message
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", cert_path)
        assert create_mlflow_destination(proxy.url).exporter.export([trace]).ok
        monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
        monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
        assert create_mlflow_destination(proxy.url).exporter.export([trace]).ok
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "missing.pem"))
        monkeypatch.delenv("MLFLOW_TRACKING_INSECURE_TLS")
        with pytest.raises(flowtel.ConfigError, match="MLFLOW_TRACKING_SERVER_CERT_PATH"):
            create_mlflow_destination(proxy.url)
    finally:
        proxy.close()


def test_insecure_tls_and_timeout_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7.5")
    client = HttpClient(HttpSettings.from_env("https://127.0.0.1:9"))
    assert client.settings.timeout == 7.5
    assert not client._ssl_context.check_hostname and client._ssl_context.verify_mode.name == "CERT_NONE"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "soon")
    with pytest.raises(flowtel.ConfigError, match="MLFLOW_HTTP_REQUEST_TIMEOUT"):
        HttpSettings.from_env("https://127.0.0.1:9")


def test_tracking_uri_env_selects_the_server(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowtel.tracing import _runtime

    experiment_id = new_experiment(mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    _runtime.reset()
    try:
        assert flowtel.get_tracking_uri() == mlflow_server.url
        with flowtel.start_span("via-env"):
            pass
        trace_id = flowtel.get_last_active_trace_id()
        assert flowtel.flush()
        assert flowtel.get_trace(trace_id).info.experiment_id == experiment_id
        assert [t.info.trace_id for t in flowtel.search_traces(return_type="list")] == [trace_id]
    finally:
        _runtime.reset()
