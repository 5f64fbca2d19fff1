"""``MlflowSpanExporter``: plain OpenTelemetry spans to the real MLflow server's ``/v1/traces``,
directly and through ``OTEL_TRACES_EXPORTER=flowtel_mlflow``."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

import flowtel
from flowtel.exporters import MlflowSpanExporter
from tests._servers.mlflow_server import MlflowServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_application_spans_become_an_mlflow_trace(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    name = f"bridge-{tmp_path.name}"  # does not exist yet: created on first export
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(MlflowSpanExporter(mlflow_server.url, experiment_name=name)))
    tracer = provider.get_tracer("shop")

    with tracer.start_as_current_span("GET /answer") as root, tracer.start_as_current_span("chat gpt-4o-mini") as llm:
        llm.set_attributes({
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 2,
        })
    provider.shutdown()

    client = mlflow_server.client()
    experiment = client.get_experiment_by_name(name)
    [found] = client.search_traces(locations=[experiment.experiment_id])
    trace_id = f"tr-{root.get_span_context().trace_id:032x}"
    assert found.info.trace_id == trace_id
    trace = client.get_trace(trace_id)
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"GET /answer", "chat gpt-4o-mini"}
    assert spans["chat gpt-4o-mini"].parent_id == spans["GET /answer"].span_id
    assert spans["chat gpt-4o-mini"].attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert trace.info.tags["service.name"] == "shop"
    assert trace.info.token_usage["input_tokens"] == 7  # the server read the GenAI attributes


def test_failures_are_reported_not_raised(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    provider = TracerProvider()
    span = provider.get_tracer("t").start_span("x")
    span.end()
    exporter = MlflowSpanExporter(dead, experiment_id="0", timeout=0.5)
    assert exporter.export([span]) is SpanExportResult.FAILURE  # retried within the timeout, then given up
    exporter.shutdown()
    assert exporter.export([span]) is SpanExportResult.FAILURE

    with pytest.raises(flowtel.ConfigError, match="MLFLOW_TRACKING_URI"):
        MlflowSpanExporter()


def test_otel_traces_exporter_entry_point(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    [entry_point] = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name="flowtel_mlflow")
    assert entry_point.load() is MlflowSpanExporter

    experiment_id = mlflow_server.create_experiment(f"entry-point-{tmp_path.name}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWTEL_", "MLFLOW_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(REPO_ROOT), OTEL_TRACES_EXPORTER="flowtel_mlflow", OTEL_SERVICE_NAME="checkout",
        OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
        MLFLOW_TRACKING_URI=mlflow_server.url, MLFLOW_EXPERIMENT_ID=experiment_id,
    )
    # What opentelemetry-instrument does at start-up: the SDK configurator reads OTEL_* variables.
    script = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator

        _OTelSDKConfigurator().configure()
        with trace.get_tracer("checkout").start_as_current_span("POST /checkout") as span:
            span.set_attribute("cart.items", 3)
        trace.get_tracer_provider().shutdown()  # flushes the batch span processor
        print(f"{span.get_span_context().trace_id:032x}")
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    trace_id = "tr-" + done.stdout.strip().splitlines()[-1]

    trace = mlflow_server.client().get_trace(trace_id)
    [span] = trace.data.spans
    assert (span.name, span.attributes["cart.items"]) == ("POST /checkout", 3)
    assert trace.info.experiment_id == experiment_id
    assert trace.info.tags["service.name"] == "checkout"
