"""Overhead of the SDK integrations: the same real SDK call against the same local endpoint, with
the integration off and on.

    python benchmarks/bench_integrations.py [--calls 200] [--repeats 7] [--quick]

Every case talks HTTP to the scripted endpoint of the test suite (a thread of this process, on
loopback), so the baseline is a real SDK round trip. "off" calls the SDK with flowtel's integration
disabled (originals restored); "on" with it enabled, traces delivered to an exporter that drops
them (the delivery worker still runs, its CPU shows up as GIL contention as in an application).
Blocks of calls alternate off/on; the figures are medians over the blocks of the per-call wall time
and of the per-call CPU time of the calling thread (``time.thread_time``: the instrumentation's own
work, without the endpoint's thread and the delivery worker, and much less sensitive to a busy
machine). Timings are informational only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flowtel  # noqa: E402
from flowtel.exporters import ExportResult, TraceExporter  # noqa: E402
from flowtel.tracing import _runtime  # noqa: E402
from tests._servers.llm import ScriptedLLMServer  # noqa: E402

USER = [{"role": "user", "content": "What is the capital of France? Answer in a few words, please."}]
CLAUDE = "claude-haiku-4-5"


class _NullExporter(TraceExporter):
    name = "null"

    def export(self, traces: Sequence[flowtel.Trace]) -> ExportResult:
        return ExportResult()


def _cases(server: ScriptedLLMServer) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, integration, one call) for each benchmarked SDK call."""
    import anthropic
    import openai

    oa = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-bench", max_retries=0)
    an = anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-bench", max_retries=0)
    loop = asyncio.new_event_loop()
    aoa = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="sk-bench", max_retries=0)

    def chat() -> Any:
        return oa.chat.completions.create(model="gpt-4o-mini", messages=USER)

    def chat_stream() -> Any:
        return list(oa.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True))

    def chat_async() -> Any:
        return loop.run_until_complete(aoa.chat.completions.create(model="gpt-4o-mini", messages=USER))

    def embeddings() -> Any:
        return oa.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

    def messages() -> Any:
        return an.messages.create(model=CLAUDE, max_tokens=64, messages=USER)

    def messages_stream() -> Any:
        with an.messages.stream(model=CLAUDE, max_tokens=64, messages=USER) as stream:
            return stream.get_final_message()

    cases = [
        ("openai chat", "openai", chat),
        ("openai chat stream", "openai", chat_stream),
        ("openai chat async", "openai", chat_async),
        ("openai embeddings", "openai", embeddings),
        ("anthropic messages", "anthropic", messages),
        ("anthropic stream()", "anthropic", messages_stream),
    ]
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        pass
    else:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=server.openai_base_url, api_key="sk-bench", max_retries=0)
        cases.append(("langchain ChatOpenAI", "langchain+openai", lambda: llm.invoke("What is the capital of France?")))
    for more in (_litellm_cases, _gemini_cases, _bedrock_cases):
        try:
            cases += more(server)
        except ImportError as exc:  # the library is not installed: its rows are left out
            print(f"(skipped: {exc})")
    return cases


def _litellm_cases(server: ScriptedLLMServer) -> list[tuple[str, str, Callable[[], Any]]]:
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    options = {"api_base": server.openai_base_url, "api_key": "sk-bench", "max_retries": 0}

    def completion() -> Any:
        return litellm.completion("openai/gpt-4o-mini", USER, **options)

    def completion_stream() -> Any:
        return list(litellm.completion("openai/gpt-4o-mini", USER, stream=True, **options))

    # litellm+openai: both integrations on, as flowtel.autolog() does; one span per call
    return [("litellm completion", "litellm+openai", completion),
            ("litellm stream", "litellm+openai", completion_stream)]


def _gemini_cases(server: ScriptedLLMServer) -> list[tuple[str, str, Callable[[], Any]]]:
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="AIza-bench", http_options=types.HttpOptions(base_url=server.gemini_base_url))
    question = USER[0]["content"]

    def generate() -> Any:
        return client.models.generate_content(model="gemini-2.0-flash", contents=question)

    def generate_stream() -> Any:
        return list(client.models.generate_content_stream(model="gemini-2.0-flash", contents=question))

    return [("gemini generate", "gemini", generate), ("gemini stream", "gemini", generate_stream)]


def _bedrock_cases(server: ScriptedLLMServer) -> list[tuple[str, str, Callable[[], Any]]]:
    import json

    import boto3
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime", endpoint_url=server.bedrock_endpoint_url, region_name="us-east-1",
        aws_access_key_id="AKIABENCH", aws_secret_access_key="bench", config=Config(retries={"total_max_attempts": 1}),
    )
    model = "anthropic.claude-3-5-haiku-20241022-v1:0"
    messages = [{"role": "user", "content": [{"text": USER[0]["content"]}]}]
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": USER})

    def converse() -> Any:
        return client.converse(modelId=model, messages=messages)

    def converse_stream() -> Any:
        return list(client.converse_stream(modelId=model, messages=messages)["stream"])

    def invoke() -> Any:
        return json.loads(client.invoke_model(modelId=model, body=body)["body"].read())

    return [("bedrock converse", "bedrock", converse), ("bedrock converse_stream", "bedrock", converse_stream),
            ("bedrock invoke_model", "bedrock", invoke)]


def _switch(integration: str, on: bool) -> None:
    for name in integration.split("+"):
        getattr(flowtel, name).autolog(disable=not on)


def _block(fn: Callable[[], Any], calls: int) -> tuple[float, float]:
    """(wall, calling-thread CPU) microseconds per call."""
    wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - wall) / calls / 1000, (time.thread_time_ns() - cpu) / calls / 1000


def measure(fn: Callable[[], Any], integration: str, calls: int, repeats: int) -> dict[str, float]:
    """Median microseconds per call, wall and CPU, with the integration off and on."""
    for on in (False, True):
        _switch(integration, on)
        for _ in range(min(calls, 20)):
            fn()
    samples: dict[str, list[float]] = {"off": [], "on": [], "off_cpu": [], "on_cpu": []}
    for _ in range(repeats):
        for on in (False, True):
            _switch(integration, on)
            wall, cpu = _block(fn, calls)
            samples["on" if on else "off"].append(wall)
            samples["on_cpu" if on else "off_cpu"].append(cpu)
        flowtel.flush()
    _switch(integration, False)
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="off/on block pairs")
    parser.add_argument("--quick", action="store_true", help="fewer calls (smoke run)")
    args = parser.parse_args(argv)
    calls, repeats = (30, 3) if args.quick else (args.calls, args.repeats)
    _runtime.set_destinations([_runtime.Destination(exporter=_NullExporter())])
    header = (f"{'case':<24} {'off us':>7} {'on us':>7} {'+us':>6} {'ratio':>6}   "
              f"{'off cpu us':>10} {'on cpu us':>9} {'+cpu us':>8} {'ratio':>6}")
    print(f"{calls} calls per block, {repeats} alternating off/on blocks, median per call")
    print(header)
    print("-" * len(header))
    with ScriptedLLMServer(max_recorded_requests=100) as server:
        for name, integration, fn in _cases(server):
            m = measure(fn, integration, calls, repeats)
            print(
                f"{name:<24} {m['off']:>7.0f} {m['on']:>7.0f} {m['on'] - m['off']:>6.0f} {m['on'] / m['off']:>6.2f}   "
                f"{m['off_cpu']:>10.0f} {m['on_cpu']:>9.0f} {m['on_cpu'] - m['off_cpu']:>8.0f} "
                f"{m['on_cpu'] / m['off_cpu']:>6.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
