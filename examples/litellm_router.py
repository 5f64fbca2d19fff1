"""One question to two providers through LiteLLM, traced with ``flowtel.autolog()``.

    python examples/litellm_router.py ["What is the capital of France?"]

With ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` set it calls the real APIs (models:
``LITELLM_OPENAI_MODEL``, default ``openai/gpt-4o-mini``; ``LITELLM_ANTHROPIC_MODEL``, default
``anthropic/claude-haiku-4-5``). Without keys it starts the local scripted endpoint the test suite
uses and runs fully offline.

``flowtel.autolog()`` switches on the LiteLLM and the OpenAI integrations together: LiteLLM calls
the ``openai`` SDK underneath, yet each call is one ``litellm-completion`` span, its tokens counted
once, nested under the ``ask_both`` span.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flowtel

flowtel.autolog()
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-table download on import

import litellm  # noqa: E402


@contextlib.contextmanager
def providers() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``(model, call options)`` per provider: the real APIs when keys are set, else the local endpoint."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("ANTHROPIC_API_KEY"):
        found = []
        if os.environ.get("OPENAI_API_KEY"):
            found.append((os.environ.get("LITELLM_OPENAI_MODEL", "openai/gpt-4o-mini"), {}))
        if os.environ.get("ANTHROPIC_API_KEY"):
            found.append((os.environ.get("LITELLM_ANTHROPIC_MODEL", "anthropic/claude-haiku-4-5"), {}))
        yield found
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._servers.llm import ScriptedLLMServer

    with ScriptedLLMServer() as server:
        server.enqueue_openai_chat("Paris.", usage={"prompt_tokens": 14, "completion_tokens": 2})
        server.enqueue_anthropic_message("The capital of France is Paris.", usage={"input_tokens": 15, "output_tokens": 8})
        print(f"(offline: scripted OpenAI/Anthropic-compatible endpoint at {server.base_url})")
        yield [
            ("openai/gpt-4o-mini", {"api_base": server.openai_base_url, "api_key": "sk-offline"}),
            ("anthropic/claude-haiku-4-5", {"api_base": server.anthropic_base_url, "api_key": "sk-ant-offline"}),
        ]


@flowtel.trace(span_type="AGENT")
def ask_both(question: str, targets: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    messages = [{"role": "user", "content": question}]
    return {model: litellm.completion(model, messages, **options).choices[0].message.content
            for model, options in targets}


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "What is the capital of France?"
    with providers() as targets:
        for model, answer in ask_both(question, targets).items():
            print(f"{model}: {answer}")
    flowtel.flush()
    trace = flowtel.get_trace(flowtel.get_last_active_trace_id() or "")
    if trace is not None:
        for span in trace.data.spans:
            print(f"{span.name} [{span.span_type}] provider={span.get_attribute('mlflow.llm.provider')} "
                  f"tokens={span.get_attribute('mlflow.chat.tokenUsage')}")
        print(f"trace tokens: {trace.info.trace_metadata.get('mlflow.trace.tokenUsage')}")


if __name__ == "__main__":
    main()
