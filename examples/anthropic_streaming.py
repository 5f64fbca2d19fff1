"""A streaming chat on the Anthropic SDK, traced with one line: ``flowtel.anthropic.autolog()``.

    python examples/anthropic_streaming.py ["Explain tracing in two sentences."]

With ``ANTHROPIC_API_KEY`` set it talks to the real API (model: ``ANTHROPIC_MODEL``, default
``claude-haiku-4-5``). Without it, it starts a local scripted Anthropic-compatible endpoint (the one
the test suite uses) and runs fully offline.

The ``messages.stream()`` span opens when the request is sent and stays open while the text
streams; it ends when the stream does, with the whole message rebuilt from the events, the time to
the first token and the token usage (cache reads/writes included).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import flowtel

flowtel.anthropic.autolog()

import anthropic  # noqa: E402


@contextlib.contextmanager
def anthropic_client() -> Iterator[tuple[anthropic.Anthropic, str]]:
    """The real API when ``ANTHROPIC_API_KEY`` is set, else the local scripted endpoint."""
    model = os.environ.get("ANTHROPIC_MODEL", "claude-haiku-4-5")
    if os.environ.get("ANTHROPIC_API_KEY"):
        with anthropic.Anthropic() as client:
            yield client, model
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue_anthropic_message(
            "Tracing records each step of a request as a span with its inputs, outputs and timing. "
            "Nested spans form a tree that shows where time and tokens went.",
            usage={"input_tokens": 24, "output_tokens": 31, "cache_read_input_tokens": 120},
        )
        print(f"(offline: scripted Anthropic-compatible endpoint at {server.anthropic_base_url})")
        with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-offline", max_retries=0) as client:
            yield client, model


@flowtel.trace
def chat(client: anthropic.Anthropic, model: str, question: str) -> str:
    with client.messages.stream(
        model=model,
        max_tokens=256,
        system="You are a precise technical writer.",
        messages=[{"role": "user", "content": question}],
    ) as stream:
        for text in stream.text_stream:
            print(text, end="", flush=True)
        print()
        return stream.get_final_text()


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "Explain tracing in two sentences."
    with anthropic_client() as (client, model):
        chat(client, model, question)
    flowtel.flush()
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id() or "")
    if trace is not None:
        span = next(s for s in trace.data.spans if s.name.endswith("stream"))
        print(f"\n{span.name} [{span.span_type}] chunks={span.get_attribute('flowtel.stream.chunks')} "
              f"first token after {span.get_attribute('gen_ai.response.time_to_first_chunk'):.3f} s "
              f"tokens={span.get_attribute('mlflow.chat.tokenUsage')}")


if __name__ == "__main__":
    main()
