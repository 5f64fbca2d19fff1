"""Spans of the LiteLLM, Gemini and Bedrock integrations, delivered to a real MLflow server and read
back with the MLflow client: span types, chat attributes, token usage, inputs and outputs intact."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest

import flowtel
from flowtel.tracing import _runtime
from tests._servers.llm import ScriptedLLMServer
from tests._servers.mlflow_server import MlflowServer


@pytest.fixture
def mlflow_tracking(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", mlflow_server.create_experiment(f"integrations-{uuid4().hex[:8]}"))
    _runtime.reset()
    yield mlflow_server


def _litellm(server: ScriptedLLMServer) -> tuple[str, Callable[[], Any]]:
    pytest.importorskip("litellm.main")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return "litellm", lambda: litellm.completion(
        "openai/gpt-4o-mini", [{"role": "user", "content": "Capital of France?"}],
        api_base=server.openai_base_url, api_key="sk-roundtrip", max_retries=0)


def _gemini(server: ScriptedLLMServer) -> tuple[str, Callable[[], Any]]:
    genai = pytest.importorskip("google.genai")
    client = genai.Client(api_key="AIza-roundtrip", http_options={"base_url": server.gemini_base_url})
    return "gemini", lambda: client.models.generate_content(model="gemini-2.0-flash", contents="Capital of France?")


def _bedrock(server: ScriptedLLMServer) -> tuple[str, Callable[[], Any]]:
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("bedrock-runtime", endpoint_url=server.bedrock_endpoint_url, region_name="us-east-1",
                          aws_access_key_id="AKIAROUNDTRIP", aws_secret_access_key="roundtrip-secret")
    return "bedrock", lambda: client.converse(
        modelId="anthropic.claude-3-haiku-20240307-v1:0",
        messages=[{"role": "user", "content": [{"text": "Capital of France?"}]}])


@pytest.mark.parametrize("case", [_litellm, _gemini, _bedrock], ids=["litellm", "gemini", "bedrock"])
def test_span_reads_back_from_a_real_mlflow_server(
    case: Callable[[ScriptedLLMServer], tuple[str, Callable[[], Any]]], llm_server: ScriptedLLMServer,
    mlflow_tracking: MlflowServer,
) -> None:
    name, call = case(llm_server)
    getattr(flowtel, name).autolog()
    try:
        call()
    finally:
        getattr(flowtel, name).autolog(disable=True)
    trace_id = flowtel.get_last_active_trace_id()
    assert trace_id is not None and flowtel.flush(30)

    trace = mlflow_tracking.client().get_trace(trace_id)
    [span] = trace.data.spans
    assert span.span_type == "CHAT_MODEL"
    assert span.get_attribute("mlflow.message.format") == name
    assert span.get_attribute("mlflow.llm.provider") in ("openai", "gemini", "bedrock")
    usage = span.get_attribute("mlflow.chat.tokenUsage")
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert json.loads(trace.info.trace_metadata["mlflow.trace.tokenUsage"])["total_tokens"] == usage["total_tokens"]
    assert "Capital of France?" in json.dumps(span.inputs)
    assert "Echo: Capital of France?" in json.dumps(span.outputs)
    assert "secret" not in json.dumps(trace.to_dict()) and "sk-roundtrip" not in json.dumps(trace.to_dict())
