"""A secret given as an input, a header or a nested field never reaches any destination: the
embedded store (its file bytes), the real MLflow server, or a real OTLP receiver. And with
content capture off, no message content reaches them either, whatever recorded it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

import flowtel
from flowtel.exporters import LocalStoreExporter, OtlpExporter
from flowtel.exporters.mlflow._exporter import create_mlflow_destination

SECRET = "sk-proj-TOPSECRET-0123456789abcdef"
CONTENT = "my-private-question-about-paris"


@pytest.fixture
def destinations(tmp_path: Path, mlflow_server: Any, otlp_http_receiver: Any) -> dict[str, Any]:
    experiment_id = mlflow_server.create_experiment(f"secrets-{tmp_path.name}")
    mlflow_exporter = create_mlflow_destination(mlflow_server.url).exporter
    local = LocalStoreExporter(tmp_path / "store.db")
    otlp = OtlpExporter(otlp_http_receiver.endpoint, protocol="http/protobuf")
    flowtel.tracing.set_destination(mlflow_exporter, local, otlp)
    return {"experiment_id": experiment_id, "db": tmp_path / "store.db", "otlp": otlp_http_receiver,
            "server": mlflow_server}


def _everything_sent(dest: dict[str, Any], trace_ids: list[str]) -> list[str]:
    assert flowtel.flush(60)
    stats = flowtel.get_delivery_stats()
    assert all(sum(d["dropped"].values()) == 0 for d in stats["destinations"]), stats
    texts = []
    client = mlflow.MlflowClient(tracking_uri=dest["server"].url)
    for trace_id in trace_ids:
        texts.append(client.get_trace(trace_id).to_json())
    db = dest["db"]
    texts.append(b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*")).decode("latin-1"))
    texts.append(b"".join(r.message.SerializeToString() for r in dest["otlp"].attempts if r.message)
                 .decode("latin-1"))
    texts.append(repr([dict(r.headers) for r in dest["otlp"].attempts]))
    texts.append(repr([s.attributes for s in dest["otlp"].spans()]))
    return texts


def test_secrets_never_reach_any_destination(destinations: dict[str, Any]) -> None:
    @flowtel.trace(attributes={"api_key": SECRET})
    def call_service(api_key: str, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        span = flowtel.get_current_active_span()
        assert span is not None
        span.set_attribute("Authorization", f"Bearer {SECRET}")
        span.add_event(flowtel.SpanEvent("sent", attributes={"x-api-key": SECRET}))
        return {"access_token": SECRET, "ok": True}

    with flowtel.start_span("root", trace_destination=destinations["experiment_id"]):
        call_service(SECRET, {"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}"},
                     {"nested": {"deeper": {"password": SECRET, "client_secret": SECRET}}})
    trace_id = flowtel.get_last_active_trace_id()
    assert trace_id is not None
    texts = _everything_sent(destinations, [trace_id])
    assert len(destinations["otlp"].spans()) == 2
    for text in texts:
        assert SECRET not in text
    assert "[REDACTED]" in texts[0]


def test_sdk_api_key_and_auth_header_never_recorded(destinations: dict[str, Any], llm_server: Any) -> None:
    openai = pytest.importorskip("openai")
    flowtel.openai.autolog()
    try:
        client = openai.OpenAI(base_url=llm_server.openai_base_url, api_key=SECRET, max_retries=0,
                               default_headers={"X-Api-Key": SECRET})
        with flowtel.start_span("agent", trace_destination=destinations["experiment_id"]):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        trace_id = flowtel.get_last_active_trace_id()
        assert trace_id is not None
        assert llm_server.last_request().header("authorization") == f"Bearer {SECRET}"  # it was used
        for text in _everything_sent(destinations, [trace_id]):
            assert SECRET not in text
    finally:
        flowtel.openai.autolog(disable=True)


def test_no_content_mode_holds_for_integrations_and_all_destinations(destinations: dict[str, Any],
                                                                     llm_server: Any) -> None:
    openai = pytest.importorskip("openai")
    flowtel.openai.autolog()
    llm_server.enqueue_openai_chat(content=f"answer about {CONTENT}")
    try:
        client = openai.OpenAI(base_url=llm_server.openai_base_url, api_key="sk-test", max_retries=0)
        with flowtel.tracing.configure(capture_content=False):
            with flowtel.start_span("agent", trace_destination=destinations["experiment_id"]) as span:
                span.set_inputs({"question": CONTENT})
                client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": CONTENT}])
        trace_id = flowtel.get_last_active_trace_id()
        assert trace_id is not None
        texts = _everything_sent(destinations, [trace_id])
        for text in texts:
            assert CONTENT not in text
        stored = mlflow.MlflowClient(tracking_uri=destinations["server"].url).get_trace(trace_id)
        chat = [s for s in stored.data.spans if s.span_type == "CHAT_MODEL"][0]
        assert chat.get_attribute("mlflow.chat.tokenUsage")["total_tokens"] > 0
    finally:
        flowtel.openai.autolog(disable=True)
