"""Run and model links, routing by trace location, and the 3.18 helpers, as a user switching from
``mlflow.trace`` relies on them: checked against a real server of each supported MLflow version,
read back by that version's own client."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import mlflow
import pytest
from mlflow.entities.trace_location import MlflowExperimentLocation

import flowtel
import flowtel.tracing
from flowtel import ConfigError, FlowtelException
from flowtel.entities import TraceMetadataKey
from flowtel.testing import TraceCapture
from flowtel.tracing import _experiments, _runtime
from tests._mlflow_helpers import flowtel_to, new_experiment
from tests._servers.mlflow_server import MlflowServer
from tests._servers.mlflow_versions import run_mlflow_client

# Reads with the real client of the server's version (in its own interpreter).
_SEARCH_SCRIPT = """
import json, sys
import mlflow
p = json.load(sys.stdin)
mlflow.set_tracking_uri(p["url"])
kwargs = {"run_id": p["run_id"]} if p.get("run_id") else {}
traces = mlflow.search_traces(locations=p["experiments"], return_type="list", **kwargs)
print(json.dumps(sorted(t.info.trace_id for t in traces)))
"""


def _search(server: MlflowServer, experiments: list[str], run_id: str | None = None) -> list[str]:
    payload = {"url": server.url, "experiments": experiments, "run_id": run_id}
    return list(run_mlflow_client(server.version or "", _SEARCH_SCRIPT, payload))


@pytest.fixture
def mlflow_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """mlflow (in process) and flowtel both pointed at the server, as in a user's program."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    _runtime.reset()
    try:
        yield mlflow_server.url
    finally:
        flowtel.flush()
        mlflow.set_tracking_uri(previous)
        _experiments.reset()  # the set_experiment() choice is process-wide: not for the next test


@flowtel.trace
def _answer(question: str) -> str:
    return "Paris"


# -- runs ----------------------------------------------------------------------------------------
def test_trace_inside_mlflow_run_is_found_by_mlflow_search_traces_run_id(
    mlflow_server: MlflowServer, mlflow_uri: str
) -> None:
    experiment_id = new_experiment(mlflow_server, "run-link")
    mlflow.set_experiment(experiment_id=experiment_id)
    with mlflow.start_run() as run:
        _answer("inside")
        inside = flowtel.get_last_active_trace_id()
    _answer("outside")
    flowtel.flush()
    # The run's experiment is where the trace went (as with mlflow.trace), and it is linked.
    assert _search(mlflow_server, [experiment_id], run_id=run.info.run_id) == [inside]
    trace = flowtel.get_trace(inside)
    assert trace is not None and trace.info.trace_metadata[TraceMetadataKey.SOURCE_RUN] == run.info.run_id
    assert [t.info.trace_id for t in flowtel.search_traces(locations=[experiment_id], run_id=run.info.run_id,
                                                           return_type="list")] == [inside]


def test_start_span_run_id_and_link_traces_to_run(mlflow_server: MlflowServer, mlflow_uri: str) -> None:
    experiment_id = new_experiment(mlflow_server, "run-id")
    client = mlflow.MlflowClient(mlflow_server.url)
    run_a = client.create_run(experiment_id).info.run_id
    run_b = client.create_run(experiment_id).info.run_id
    flowtel.set_experiment(experiment_id=experiment_id)
    with flowtel.start_span("root", run_id=run_a):
        pass
    first = flowtel.get_last_active_trace_id()
    _answer("later linked")
    second = flowtel.get_last_active_trace_id()
    flowtel.flush()
    flowtel.tracing.link_traces_to_run([second], run_id=run_b)
    assert _search(mlflow_server, [experiment_id], run_id=run_a) == [first]
    assert _search(mlflow_server, [experiment_id], run_id=run_b) == [second]


def test_mlflow_run_id_env_links_without_importing_a_run(flowtel_traces: TraceCapture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_RUN_ID", "run-from-env")
    monkeypatch.setenv("MLFLOW_ACTIVE_MODEL_ID", "m-env")
    flowtel.tracing._links.forget_environment()
    _answer("q")
    metadata = flowtel_traces.last.info.trace_metadata
    assert metadata[TraceMetadataKey.SOURCE_RUN] == "run-from-env"
    assert metadata[TraceMetadataKey.MODEL_ID] == "m-env"


def test_active_model_set_in_flowtel_wins_over_env(flowtel_traces: TraceCapture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ACTIVE_MODEL_ID", "m-env")
    flowtel.tracing.set_active_model(model_id="m-1")
    _answer("q")
    flowtel.tracing.clear_active_model()
    flowtel.tracing._links.forget_environment()
    _answer("q")
    assert [t.info.trace_metadata[TraceMetadataKey.MODEL_ID] for t in flowtel_traces.traces] == ["m-1", "m-env"]


def test_run_id_on_a_child_span_is_ignored_with_a_warning(flowtel_traces: TraceCapture,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowtel"), flowtel.start_span("root"), \
            flowtel.start_span("child", run_id="r-1"):
        pass
    assert TraceMetadataKey.SOURCE_RUN not in flowtel_traces.last.info.trace_metadata
    assert "can only be used for root spans" in caplog.text


def test_no_run_no_link(flowtel_traces: TraceCapture) -> None:
    _answer("q")
    assert TraceMetadataKey.SOURCE_RUN not in flowtel_traces.last.info.trace_metadata


# -- routing -------------------------------------------------------------------------------------
def test_context_local_destinations_route_two_concurrent_tasks_to_two_experiments(
    mlflow_server: MlflowServer,
) -> None:
    exp_a, exp_b = new_experiment(mlflow_server, "tenant-a"), new_experiment(mlflow_server, "tenant-b")
    ready = {"a": asyncio.Event(), "b": asyncio.Event()}

    @flowtel.trace
    async def handle(tenant: str, other: str) -> str:
        ready[tenant].set()
        await ready[other].wait()  # both requests are in flight at once
        return tenant

    async def request(tenant: str, other: str, experiment_id: str) -> None:
        flowtel.tracing.set_destination(MlflowExperimentLocation(experiment_id=experiment_id), context_local=True)
        await handle(tenant, other)

    async def main() -> None:
        await asyncio.gather(request("a", "b", exp_a), request("b", "a", exp_b))

    with flowtel_to(mlflow_server.url) as memory:
        asyncio.run(main())
        flowtel.flush()
        by_tenant = {json.loads(t.data.spans[0].to_dict()["attributes"]["mlflow.spanOutputs"]): t.info.trace_id
                     for t in memory.traces}
    assert _search(mlflow_server, [exp_a]) == [by_tenant["a"]]
    assert _search(mlflow_server, [exp_b]) == [by_tenant["b"]]


def test_global_location_then_reset(flowtel_traces: TraceCapture) -> None:
    flowtel.tracing.set_destination(MlflowExperimentLocation(experiment_id="42"))
    _answer("q")
    assert [t.info.experiment_id for t in flowtel_traces.traces] == ["42"]
    flowtel.tracing.reset()  # as mlflow.tracing.reset(): the destination is forgotten
    assert flowtel.tracing._links._routed_experiment_id() is None


def test_explicit_trace_destination_wins_over_set_destination(flowtel_traces: TraceCapture) -> None:
    flowtel.tracing.set_destination(flowtel.TraceLocation.from_experiment_id("7"), context_local=True)
    with flowtel.start_span("x", trace_destination=MlflowExperimentLocation(experiment_id="8")):
        pass
    _answer("q")
    assert [t.info.experiment_id for t in flowtel_traces.traces] == ["8", "7"]


def test_set_destination_refuses_anything_else() -> None:
    with pytest.raises(ConfigError, match="MlflowExperimentLocation"):
        flowtel.tracing.set_destination(object())
    with pytest.raises(ConfigError, match="context_local"):
        flowtel.tracing.set_destination(context_local=True)


# -- 3.18 helpers ----------------------------------------------------------------------------------
def test_set_span_chat_tools(flowtel_traces: TraceCapture) -> None:
    tools = [{"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                               "parameters": {"type": "object", "properties": {}}}}]
    with flowtel.start_span("llm") as span:
        flowtel.tracing.set_span_chat_tools(span, tools)
    assert flowtel_traces.last.data.spans[0].get_attribute("mlflow.chat.tools") == tools
    with flowtel.start_span("llm") as span, pytest.raises(FlowtelException):
        flowtel.tracing.set_span_chat_tools(span, {"not": "a list"})  # type: ignore[arg-type]


def test_session_hierarchy_and_list_session_ids(mlflow_server: MlflowServer) -> None:
    experiment_id = new_experiment(mlflow_server, "sessions")
    with flowtel_to(mlflow_server.url, experiment_id):
        flowtel.tracing.set_session_hierarchy(["trip", "episode"])
        with flowtel.start_span("turn"):
            flowtel.update_current_trace(session_id=["trip-2", "ep-2"])
        trace_id = flowtel.get_last_active_trace_id()
        flowtel.flush()
        trace = flowtel.get_trace(trace_id)
    tags = mlflow.MlflowClient(mlflow_server.url).get_experiment(experiment_id).tags
    assert json.loads(tags["mlflow.experiment.sessionHierarchy"]) == {
        "version": 1, "levels": [{"name": "trip"}, {"name": "episode"}]}
    assert trace is not None and trace.info.trace_metadata[TraceMetadataKey.TRACE_SESSION] == '["trip-2","ep-2"]'
    with pytest.raises(FlowtelException, match="non-empty list"):
        flowtel.tracing.set_session_hierarchy(["a", "a"])
