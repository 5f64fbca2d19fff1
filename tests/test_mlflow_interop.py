"""Traces written by the real ``mlflow`` client are read by flowtel unchanged, and flowtel's read
API (get_trace, search_traces, search_sessions, tags) behaves the same against a real MLflow
server and against the embedded store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import mlflow
import pytest

import flowtel
from flowtel.exporters.local import _experiments as local_experiments
from flowtel.exporters.local._exporter import create_local_destination
from flowtel.tracing import _experiments, _runtime

pytest.register_assert_rewrite("tests._mlflow_helpers")
from tests._mlflow_helpers import FaultProxy, as_in_process_mlflow, flowtel_to, new_experiment
from tests._servers.mlflow_server import MlflowServer

# Written by the real mlflow client in a subprocess (synchronous logging: deterministic).
_MLFLOW_WRITER = textwrap.dedent('''
    import json, sys
    import mlflow
    from mlflow.entities import AssessmentSource, SpanEvent

    mlflow.set_experiment(experiment_id=sys.argv[1])

    @mlflow.trace(span_type="TOOL")
    def tool(city):
        mlflow.get_current_active_span().add_event(SpanEvent("lookup", attributes={"n": 2, "ok": True}))
        return f"Sunny in {city}"

    @mlflow.trace(span_type="CHAT_MODEL")
    def chat(question):
        mlflow.get_current_active_span().set_attribute(
            "mlflow.chat.tokenUsage", {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5})
        return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}

    @mlflow.trace(span_type="AGENT")
    def agent(question, session):
        mlflow.update_current_trace(tags={"app": "demo"}, metadata={"v": "1"}, client_request_id="c-" + session,
                                    session_id=session, user="alice")
        chat(question)
        return tool("Paris")

    @mlflow.trace
    def failing():
        raise ValueError("boom")

    @mlflow.trace
    def stream(n):
        for i in range(n):
            yield i

    ids = []
    for session in ("s1", "s1", "s2"):
        agent("Weather?", session)
        ids.append(mlflow.get_last_active_trace_id())
    try:
        failing()
    except ValueError:
        ids.append(mlflow.get_last_active_trace_id())
    list(stream(3))
    ids.append(mlflow.get_last_active_trace_id())
    with mlflow.start_run() as run:
        with mlflow.start_span("in-run") as span:
            span.set_inputs({"x": 1})
        ids.append(mlflow.get_last_active_trace_id())
    mlflow.log_feedback(trace_id=ids[0], name="quality", value=0.75, rationale="fine",
                        source=AssessmentSource(source_type="HUMAN", source_id="bob"))
    mlflow.log_expectation(trace_id=ids[0], name="expected", value={"answer": [1, 2]})
    print(json.dumps({"ids": ids, "run_id": run.info.run_id}))
''')


def _write_with_mlflow(server: MlflowServer, experiment_id: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_"))}
    env.update({"MLFLOW_TRACKING_URI": server.url, "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    done = subprocess.run([sys.executable, "-c", _MLFLOW_WRITER, experiment_id], env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def mlflow_written(mlflow_server: MlflowServer) -> dict[str, Any]:
    experiment_id = new_experiment(mlflow_server, "by-mlflow")
    return {"experiment_id": experiment_id, **_write_with_mlflow(mlflow_server, experiment_id)}


@pytest.fixture
def mlflow_client() -> Iterator[Any]:
    """A client for a server; mlflow's global tracking URI is set too (its artifact downloads
    use it), and restored afterwards."""
    previous = mlflow.get_tracking_uri()

    def make(url: str) -> mlflow.MlflowClient:
        mlflow.set_tracking_uri(url)
        return mlflow.MlflowClient(tracking_uri=url)

    try:
        yield make
    finally:
        mlflow.set_tracking_uri(previous)


def _normal(d: Any) -> Any:
    return as_in_process_mlflow(d)


# -- mlflow writes, flowtel reads ----------------------------------------------------------------
def test_get_trace_reads_mlflow_traces_unchanged(mlflow_server: MlflowServer, mlflow_written: dict[str, Any],
                                                 mlflow_client: Any) -> None:
    client = mlflow_client(mlflow_server.url)
    with flowtel_to(mlflow_server.url):
        for trace_id in mlflow_written["ids"]:
            ours = flowtel.get_trace(trace_id)
            assert ours is not None
            assert _normal(ours.to_dict()) == _normal(client.get_trace(trace_id).to_dict())
        first = flowtel.get_trace(mlflow_written["ids"][0])
    assert {a.name: a.value for a in first.info.assessments} == {"quality": 0.75, "expected": {"answer": [1, 2]}}
    assert first.info.token_usage == {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    assert [s.name for s in first.data.spans] == ["agent", "chat", "tool"]
    assert first.data.spans[2].events[0].attributes == {"n": 2, "ok": True}


def test_search_traces_matches_mlflow_search(mlflow_server: MlflowServer, mlflow_written: dict[str, Any],
                                             mlflow_client: Any) -> None:
    client = mlflow_client(mlflow_server.url)
    experiment_id = mlflow_written["experiment_id"]
    cases: list[dict[str, Any]] = [
        {},
        {"filter_string": "status = 'ERROR'"},
        {"filter_string": "tags.app = 'demo' AND metadata.`mlflow.trace.user` = 'alice'"},
        {"filter_string": "span.type = 'TOOL'"},
        {"order_by": ["timestamp_ms ASC"]},
        {"order_by": ["timestamp_ms ASC"], "max_results": 2},
        {"run_id": mlflow_written["run_id"]},
    ]
    with flowtel_to(mlflow_server.url):
        for case in cases:
            ours = flowtel.search_traces(locations=[experiment_id], return_type="list", **case)
            theirs = client.search_traces(locations=[experiment_id], **case)
            assert [_normal(t.to_dict()) for t in ours] == [_normal(t.to_dict()) for t in theirs], case
        infos = flowtel.search_traces(locations=[experiment_id], return_type="list", include_spans=False)
    assert len(infos) == len(mlflow_written["ids"]) and all(not t.data.spans for t in infos)
    [in_run] = flowtel.search_traces(locations=[experiment_id], run_id=mlflow_written["run_id"], return_type="list")
    assert in_run.info.trace_id == mlflow_written["ids"][-1]


def test_pages_follow_the_server_token(mlflow_server: MlflowServer, mlflow_written: dict[str, Any]) -> None:
    experiment_id = mlflow_written["experiment_id"]
    with flowtel_to(mlflow_server.url):
        store = _runtime.get_runtime().store
        seen, token = [], None
        while True:
            page, token = store.search_traces(experiment_ids=[experiment_id], filter_string=None,
                                              order_by=["timestamp_ms ASC"], max_results=2,
                                              page_token=token, include_spans=False)
            seen.extend(t.info.trace_id for t in page)
            if not token:
                break
    assert seen == mlflow_written["ids"]


def test_search_sessions_groups_by_session(mlflow_server: MlflowServer, mlflow_written: dict[str, Any]) -> None:
    with flowtel_to(mlflow_server.url):
        sessions = flowtel.search_sessions(locations=[mlflow_written["experiment_id"]])
        assert [(s.id, [t.info.trace_id for t in s]) for s in sessions] == [
            ("s2", [mlflow_written["ids"][2]]),
            ("s1", mlflow_written["ids"][:2]),
        ]
        [latest] = flowtel.search_sessions(locations=[mlflow_written["experiment_id"]], max_results=1,
                                           include_spans=False)
        assert latest.id == "s2" and not latest[0].data.spans


def test_file_store_traces_written_by_mlflow_read_back(mlflow_file_server: MlflowServer, mlflow_client: Any) -> None:
    experiment_id = new_experiment(mlflow_file_server, "file-by-mlflow")
    written = _write_with_mlflow(mlflow_file_server, experiment_id)
    client = mlflow_client(mlflow_file_server.url)
    with flowtel_to(mlflow_file_server.url):
        for trace_id in written["ids"]:
            assert _normal(flowtel.get_trace(trace_id).to_dict()) == _normal(client.get_trace(trace_id).to_dict())
        found = flowtel.search_traces(locations=[experiment_id], return_type="list")
    assert sorted(t.info.trace_id for t in found) == sorted(written["ids"])


# -- errors -----------------------------------------------------------------------------------------
def test_read_errors_are_flowtel_exceptions_with_the_server_message(mlflow_server: MlflowServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with flowtel_to(mlflow_server.url):
        with caplog.at_level(logging.WARNING, logger="flowtel"):
            assert flowtel.get_trace("tr-00000000000000000000000000000bad") is None
        assert "not found" in caplog.text
        assert flowtel.get_trace("tr-00000000000000000000000000000bad", silent=True) is None
        with pytest.raises(flowtel.FlowtelException, match=r"Invalid clause\(s\) in filter string") as bad:
            flowtel.search_traces(locations=["0"], filter_string="this is not a filter", return_type="list")
        assert (bad.value.error_code, bad.value.http_status) == ("INVALID_PARAMETER_VALUE", 400)
        with pytest.raises(flowtel.TraceNotFoundError):
            flowtel.set_trace_tag("tr-00000000000000000000000000000bad", "k", "v")


def test_server_errors_and_outages_are_flowtel_exceptions(mlflow_server: MlflowServer,
                                                          mlflow_written: dict[str, Any]) -> None:
    proxy = FaultProxy(mlflow_server.port)
    try:
        with flowtel_to(proxy.url):
            proxy.mode = "503"
            with pytest.raises(flowtel.FlowtelException, match="HTTP 503") as unavailable:
                flowtel.get_trace(mlflow_written["ids"][0])
            assert unavailable.value.http_status == 503
            proxy.mode = "drop"
            with pytest.raises(flowtel.FlowtelException, match="Could not reach"):
                flowtel.search_traces(locations=["0"], return_type="list")
            proxy.mode = "forward"
            assert flowtel.get_trace(mlflow_written["ids"][0]) is not None
    finally:
        proxy.close()


# -- the same behaviour against the server and the embedded store ----------------------------------
@pytest.fixture(params=["server", "local"])
def backend(request: pytest.FixtureRequest, mlflow_server: MlflowServer, tmp_path: Any) -> Iterator[str]:
    """flowtel routed to a real MLflow server, or to a fresh embedded store; a fresh experiment."""
    if request.param == "server":
        with flowtel_to(mlflow_server.url, new_experiment(mlflow_server, "parity")):
            yield "server"
        return
    _runtime.set_destinations([create_local_destination(str(tmp_path / "traces.db"))])
    try:
        flowtel.set_experiment("parity")
        yield "local"
    finally:
        flowtel.flush()
        _experiments.reset()
        _runtime.set_destinations(None)


def _three_traces() -> list[str]:
    """Three traces one second apart (explicit start times, so the order is well defined)."""
    import time

    ids = []
    start = time.time_ns() - 10 * 10**9
    for i, session in enumerate(("a", "b", "a")):
        span = flowtel.start_span_no_context(
            f"t{i}", inputs={"i": i}, tags={"n": str(i)}, metadata={"mlflow.trace.session": session},
            start_time_ns=start + i * 10**9,
        )
        span.end(end_time_ns=start + i * 10**9 + 10**6)
        ids.append(span.trace_id)
    flowtel.flush()
    return ids


def test_tags_on_stored_traces_behave_the_same(backend: str) -> None:
    [trace_id, *_] = _three_traces()
    flowtel.set_trace_tag(trace_id, "reviewed", "yes")
    assert flowtel.get_trace(trace_id).info.tags["reviewed"] == "yes"
    flowtel.delete_trace_tag(trace_id, "reviewed")
    assert "reviewed" not in flowtel.get_trace(trace_id).info.tags
    with pytest.raises(flowtel.FlowtelException) as missing_tag:
        flowtel.delete_trace_tag(trace_id, "never-set")
    assert "never-set" in str(missing_tag.value)
    with pytest.raises(flowtel.TraceNotFoundError):
        flowtel.delete_trace_tag("tr-0000000000000000000000000000beef", "n")


def test_search_and_sessions_behave_the_same(backend: str) -> None:
    ids = _three_traces()
    newest_first = [t.info.trace_id for t in flowtel.search_traces(return_type="list")]
    assert newest_first == ids[::-1]
    assert [t.info.trace_id for t in flowtel.search_traces(filter_string="tags.n = '1'", return_type="list")] == [ids[1]]
    assert [t.info.trace_id for t in flowtel.search_traces(max_results=2, order_by=["timestamp_ms ASC"],
                                                           return_type="list")] == ids[:2]
    sessions = flowtel.search_sessions()
    assert [(s.id, [t.info.trace_id for t in s]) for s in sessions] == [("a", [ids[0], ids[2]]), ("b", [ids[1]])]
    with pytest.raises(flowtel.FlowtelException) as bad:
        flowtel.search_traces(filter_string="tags.n = ", return_type="list")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    assert flowtel.get_trace("tr-0000000000000000000000000000beef", silent=True) is None


def test_set_experiment_on_the_embedded_store(tmp_path: Any) -> None:
    _runtime.set_destinations([create_local_destination(str(tmp_path / "traces.db"))])
    try:
        alpha, beta = flowtel.set_experiment("alpha"), flowtel.set_experiment("beta")
        assert (alpha.experiment_id, beta.experiment_id) == ("1", "2")
        local_experiments._local_registries.clear()  # as another process would see the file
        assert flowtel.set_experiment("alpha").experiment_id == "1"
        assert flowtel.set_experiment(experiment_id="0").name == "Default"
        with pytest.raises(flowtel.FlowtelException, match="does not exist"):
            flowtel.set_experiment(experiment_id="77")
        flowtel.set_experiment(experiment_id="2")
        with flowtel.start_span("in-beta"):
            pass
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.set_experiment("alpha")  # traces started before keep their experiment
        flowtel.flush()
        assert flowtel.get_trace(trace_id).info.experiment_id == "2"
        assert flowtel.search_traces(return_type="list") == []
        assert [t.info.trace_id for t in flowtel.search_traces(locations=["2"], return_type="list")] == [trace_id]
    finally:
        _experiments.reset()
        _runtime.set_destinations(None)
