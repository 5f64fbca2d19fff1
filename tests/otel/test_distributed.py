"""Distributed tracing: W3C trace context over HTTP, and a trace that crosses two processes
arriving as ONE trace at the real MLflow server (and as one tree at an OTLP receiver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import flowtel
from flowtel.exporters import InMemoryExporter
from flowtel.tracing import _runtime
from tests._servers.mlflow_server import MlflowServer
from tests._servers.otlp_receivers import OtlpHttpReceiver

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(__file__).with_name("_remote_service.py")


# -- the header helpers -----------------------------------------------------------------------------
def test_headers_carry_the_current_span() -> None:
    flowtel.tracing.set_destination(InMemoryExporter())
    assert flowtel.get_tracing_context_headers_for_http_request() == {}  # outside a trace

    with flowtel.start_span("caller") as span:
        token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
        try:
            headers = flowtel.get_tracing_context_headers_for_http_request()
        finally:
            otel_context.detach(token)

    version, trace_hex, span_hex, flags = headers["traceparent"].split("-")
    assert (version, trace_hex, span_hex, flags) == ("00", span.trace_id.removeprefix("tr-"), span.span_id, "01")
    assert headers["baggage"] == "tenant=acme"


def test_headers_continue_the_trace_case_insensitively() -> None:
    memory = InMemoryExporter()
    flowtel.tracing.set_destination(memory)
    trace_hex, parent_hex = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"

    headers = {"Traceparent": f"00-{trace_hex}-{parent_hex}-01"}
    with flowtel.set_tracing_context_from_http_request_headers(headers), flowtel.start_span("callee") as span, \
            flowtel.start_span("step"):
        pass
    assert flowtel.flush(10)

    assert span.trace_id == f"tr-{trace_hex}"
    [trace] = memory.traces
    assert [s.name for s in trace.data.spans] == ["callee", "step"]
    assert trace.data.spans[0].parent_id is None  # the MLflow view of this process starts here
    parent = trace.remote_parent  # type: ignore[attr-defined]
    assert (f"{parent.span_id:016x}", parent.is_remote) == (parent_hex, True)


@pytest.mark.parametrize("headers", [{}, {"traceparent": "00-zz-yy-01"}, {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}])
def test_missing_or_invalid_traceparent_is_an_error(headers: dict[str, str]) -> None:
    with pytest.raises(flowtel.FlowtelException, match="traceparent"), \
            flowtel.set_tracing_context_from_http_request_headers(headers):
        pass


# -- two processes ------------------------------------------------------------------------------------
@pytest.fixture
def remote_env(mlflow_server: MlflowServer, otlp_http_receiver: OtlpHttpReceiver, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Both processes: the MLflow server as destination, plus OTLP export to the receiver."""
    experiment_id = mlflow_server.create_experiment(f"distributed-{tmp_path.name}")
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_http_receiver.endpoint,
        "FLOWTEL_OTLP_CONVENTIONS": "mlflow",  # span names as recorded
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _runtime.reset()
    return env


def start_service(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWTEL_", "MLFLOW_", "OTEL_"))}
    child_env.update(env, PYTHONPATH=str(REPO_ROOT), FLOWTEL_SPOOL_ENABLED="false",
                     FLOWTEL_STORE_PATH=str(tmp_path / "service.db"))
    proc = subprocess.Popen([sys.executable, str(SERVICE)], env=child_env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the service listens (or exits)
    if not line.startswith("PORT "):
        proc.kill()
        raise AssertionError(f"service did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, int(line.split()[1])


def test_a_trace_across_two_processes_is_one_trace_in_mlflow(
    remote_env: dict[str, str], mlflow_server: MlflowServer, otlp_http_receiver: OtlpHttpReceiver, tmp_path: Path
) -> None:
    proc, port = start_service(remote_env, tmp_path)

    @flowtel.trace(span_type="AGENT")
    def caller(question: str) -> str:
        flowtel.update_current_trace(tags={"app": "demo"}, session_id="sess-2")
        with flowtel.start_span("call weather service", span_type="TOOL"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/answer", data=json.dumps({"question": question}).encode(),
                headers={"Content-Type": "application/json", **flowtel.get_tracing_context_headers_for_http_request()},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                reply = json.loads(response.read())
        assert reply["delivered"] is True
        return str(reply["answer"])

    try:
        assert caller("Weather in Paris?") == "Sunny in Paris"
    finally:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    assert flowtel.flush(30)
    trace_id = flowtel.get_last_active_trace_id()

    client = mlflow_server.client()
    found = client.search_traces(locations=[remote_env["MLFLOW_EXPERIMENT_ID"]])
    assert [t.info.trace_id for t in found] == [trace_id]  # one trace, not one per process
    trace = client.get_trace(trace_id)
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"caller", "call weather service", "answer", "lookup"}
    assert spans["caller"].parent_id is None
    assert spans["answer"].parent_id == spans["call weather service"].span_id  # across the process boundary
    assert spans["lookup"].parent_id == spans["answer"].span_id
    assert (trace.info.tags["app"], trace.info.trace_metadata["mlflow.trace.session"]) == ("demo", "sess-2")
    assert trace.info.tags["mlflow.traceName"] == "caller"

    # The OTLP backend gets the same single tree, with the callee's root under the caller's span.
    received = otlp_http_receiver.wait_for_spans(4)
    assert {s.trace_id for s in received} == {trace_id.removeprefix("tr-")}
    by_name = {s.name: s for s in received}
    assert len(received) == 4
    assert by_name["answer"].parent_span_id == by_name["call weather service"].span_id
