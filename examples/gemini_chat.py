"""A streamed Gemini chat with a function tool, traced with ``flowtel.gemini.autolog()``.

    python examples/gemini_chat.py ["What's the weather in Paris?"]

With ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``) set it talks to the real Gemini API (model:
``GEMINI_MODEL``, default ``gemini-2.5-flash``). Without it, it starts the local scripted Gemini
endpoint the test suite uses and runs fully offline.

The model answers with a function call; the Python tool runs (its ``@flowtel.trace`` span nests
under the SDK call that ran it: automatic function calling), and the final answer streams.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flowtel

flowtel.gemini.autolog()

from google import genai  # noqa: E402
from google.genai import types  # noqa: E402


@flowtel.trace(span_type="TOOL")
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    return f"Sunny and 22 degrees in {city}."


@contextlib.contextmanager
def gemini_client() -> Iterator[tuple[Any, str]]:
    model = os.environ.get("GEMINI_MODEL", "gemini-2.5-flash")
    if os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
        yield genai.Client(), model
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue_gemini(function_calls=[{"name": "get_weather", "args": {"city": "Paris"}}])
        server.enqueue_gemini_stream("It is sunny and 22 degrees in Paris.", thoughts="The tool said sunny.",
                                     usage={"thoughtsTokenCount": 6})
        print(f"(offline: scripted Gemini endpoint at {server.gemini_base_url})")
        yield genai.Client(api_key="AIza-offline", http_options=types.HttpOptions(base_url=server.gemini_base_url)), model


@flowtel.trace(span_type="AGENT")
def ask(client: Any, model: str, question: str) -> str:
    config = types.GenerateContentConfig(tools=[get_weather])
    first = client.models.generate_content(model=model, contents=question, config=config)  # runs the tool
    history = [*(first.automatic_function_calling_history or []), first.candidates[0].content] \
        if first.function_calls else [question]
    answer = ""
    for chunk in client.models.generate_content_stream(model=model, contents=history):
        answer += chunk.text or ""
        print(chunk.text or "", end="", flush=True)
    print()
    return answer


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "What's the weather in Paris?"
    with gemini_client() as (client, model):
        ask(client, model, question)
    flowtel.flush()
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id() or "")
    if trace is not None:
        for span in sorted(trace.data.spans, key=lambda s: s.start_time_ns):
            print(f"{span.name} [{span.span_type}] tokens={span.get_attribute('mlflow.chat.tokenUsage')}")


if __name__ == "__main__":
    main()
