"""A Bedrock Converse stream, traced with ``flowtel.bedrock.autolog()``.

    python examples/bedrock_converse.py ["Explain tracing in two sentences."]

With AWS credentials in the environment (``AWS_ACCESS_KEY_ID``, or ``AWS_PROFILE``) it calls the
real Bedrock runtime (region ``AWS_REGION``, default ``us-east-1``; model ``BEDROCK_MODEL``, default
``anthropic.claude-3-5-haiku-20241022-v1:0``). Without them it starts the local scripted Bedrock
endpoint the test suite uses (it speaks the AWS event-stream framing) and runs fully offline.

The client is created before ``autolog()`` on purpose: every ``bedrock-runtime`` client is traced.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

import flowtel


@contextlib.contextmanager
def bedrock_client() -> Iterator[tuple[Any, str]]:
    model = os.environ.get("BEDROCK_MODEL", "anthropic.claude-3-5-haiku-20241022-v1:0")
    if os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"):
        yield boto3.client("bedrock-runtime", region_name=os.environ.get("AWS_REGION", "us-east-1")), model
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import BEDROCK_CONVERSE_STREAM, ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue_bedrock(
            "Tracing records each step of a request as a span. Nested spans show where time and tokens went.",
            usage={"inputTokens": 21, "outputTokens": 19}, route=BEDROCK_CONVERSE_STREAM,
        )
        print(f"(offline: scripted Bedrock runtime at {server.bedrock_endpoint_url})")
        yield boto3.client(
            "bedrock-runtime", endpoint_url=server.bedrock_endpoint_url, region_name="us-east-1",
            aws_access_key_id="AKIAOFFLINE", aws_secret_access_key="offline",
            config=Config(retries={"total_max_attempts": 1}),
        ), model


@flowtel.trace
def chat(client: Any, model: str, question: str) -> str:
    response = client.converse_stream(
        modelId=model, system=[{"text": "You are a precise technical writer."}],
        messages=[{"role": "user", "content": [{"text": question}]}],
    )
    answer = ""
    for event in response["stream"]:
        text = event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
        answer += text
        print(text, end="", flush=True)
    print()
    return answer


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "Explain tracing in two sentences."
    with bedrock_client() as (client, model):
        flowtel.bedrock.autolog()  # after the client exists: it is traced all the same
        chat(client, model, question)
    flowtel.flush()
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id() or "")
    if trace is not None:
        span = next(s for s in trace.data.spans if s.name.startswith("BedrockRuntime"))
        print(f"\n{span.name} [{span.span_type}] chunks={span.get_attribute('flowtel.stream.chunks')} "
              f"first token after {span.get_attribute('gen_ai.response.time_to_first_chunk'):.3f} s "
              f"tokens={span.get_attribute('mlflow.chat.tokenUsage')}")


if __name__ == "__main__":
    main()
