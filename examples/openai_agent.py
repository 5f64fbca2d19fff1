"""A tool-using agent on the OpenAI SDK, traced with one line: ``flowtel.openai.autolog()``.

    python examples/openai_agent.py ["What should I wear in Paris today?"]

With ``OPENAI_API_KEY`` set it talks to the real API (model: ``OPENAI_MODEL``, default
``gpt-4o-mini``). Without it, it starts a local scripted OpenAI-compatible endpoint (the one the
test suite uses) and runs fully offline. Either way the agent loop is the same real SDK code:

* every model turn is streamed (``chat.completions.stream``; each span stays open while it
  streams and records the rebuilt completion: text, tool-call arguments, usage),
* the model is offered two tools; each tool call it asks for runs as a ``TOOL`` span,
* every SDK call is a ``CHAT_MODEL`` span with inputs, outputs, tools and token usage, nested
  under the ``AGENT`` span of ``run_agent``.

The trace goes to flowtel's default destination (the embedded store, or ``MLFLOW_TRACKING_URI``);
the script prints its span tree at the end (then try ``flowtel traces show latest``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flowtel
from flowtel import SpanType

flowtel.openai.autolog()  # before or after `import openai`: patched when it is imported

import openai  # noqa: E402

MAX_STEPS = 5
SYSTEM = "You are a concise travel assistant. Use the tools, then answer in one or two sentences."
TOOL_SPECS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "clothing_advice",
            "description": "What to wear for a temperature in degrees Celsius.",
            "parameters": {
                "type": "object", "properties": {"celsius": {"type": "number"}}, "required": ["celsius"],
            },
        },
    },
]


@flowtel.trace(span_type=SpanType.TOOL)
def get_weather(city: str) -> dict[str, Any]:
    """A stand-in weather service."""
    table = {"paris": (14, "light rain"), "berlin": (9, "cloudy"), "rome": (21, "sunny")}
    celsius, sky = table.get(city.lower(), (18, "clear"))
    return {"city": city, "celsius": celsius, "sky": sky}


@flowtel.trace(span_type=SpanType.TOOL)
def clothing_advice(celsius: float) -> str:
    if celsius < 10:
        return "a warm coat"
    if celsius < 17:
        return "a light jacket and an umbrella"
    return "a t-shirt"


TOOLS: dict[str, Callable[..., Any]] = {"get_weather": get_weather, "clothing_advice": clothing_advice}
_CLIENT: list[openai.OpenAI] = []  # set by main(); kept out of run_agent's recorded inputs


@flowtel.trace(span_type=SpanType.AGENT)
def run_agent(question: str, *, model: str) -> str:
    """Stream each model turn; run the tools it asks for; stop when it answers."""
    client = _CLIENT[0]
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    completions = client.chat.completions
    stream_helper = getattr(completions, "stream", None) or client.beta.chat.completions.stream  # openai<1.92
    for _ in range(MAX_STEPS):
        with stream_helper(
            model=model, messages=messages, tools=TOOL_SPECS, stream_options={"include_usage": True}
        ) as stream:
            for event in stream:
                if event.type == "content.delta":
                    print(event.delta, end="", flush=True)
            message = stream.get_final_completion().choices[0].message
        if not message.tool_calls:
            print()
            return message.content or ""
        messages.append({
            "role": "assistant",
            "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments}}
                for c in message.tool_calls
            ],
        })
        for call in message.tool_calls:
            result = TOOLS[call.function.name](**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    return "(no answer within the step limit)"


@contextlib.contextmanager
def openai_client() -> Iterator[tuple[openai.OpenAI, str]]:
    """The real API when ``OPENAI_API_KEY`` is set, else the local scripted endpoint."""
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    if os.environ.get("OPENAI_API_KEY"):
        with openai.OpenAI() as client:
            yield client, model
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        usage = {"prompt_tokens": 120, "completion_tokens": 18}
        server.enqueue_openai_chat(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}], usage=usage)
        server.enqueue_openai_chat(tool_calls=[{"name": "clothing_advice", "arguments": {"celsius": 14}}], usage=usage)
        server.enqueue_openai_chat(
            content="It is 14 °C with light rain in Paris: take a light jacket and an umbrella.",
            usage={"prompt_tokens": 190, "completion_tokens": 21},
        )
        print(f"(offline: scripted OpenAI-compatible endpoint at {server.openai_base_url})")
        with openai.OpenAI(base_url=server.openai_base_url, api_key="sk-offline-demo", max_retries=0) as client:
            yield client, model


def print_trace(trace_id: str) -> None:
    trace = flowtel.get_trace(trace_id)
    if trace is None:
        return
    spans = sorted(trace.data.spans, key=lambda s: s.start_time_ns)
    depth = {s.span_id: 0 for s in spans}
    print(f"\ntrace {trace_id}  tokens={trace.info.trace_metadata.get('mlflow.trace.tokenUsage')}")
    for span in spans:
        if span.parent_id in depth:
            depth[span.span_id] = depth[span.parent_id] + 1
        usage = span.get_attribute("mlflow.chat.tokenUsage")
        extra = f"  tokens={usage['total_tokens']}" if usage else ""
        ms = ((span.end_time_ns or span.start_time_ns) - span.start_time_ns) / 1e6
        print(f"{'  ' * depth[span.span_id]}- {span.name} [{span.span_type}] {ms:.1f} ms{extra}")


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "What should I wear in Paris today?"
    with openai_client() as (client, model):
        _CLIENT[:] = [client]
        run_agent(question, model=model)
    flowtel.flush()
    trace_id = flowtel.get_last_active_trace_id()
    if trace_id:
        print_trace(trace_id)


if __name__ == "__main__":
    main()
