"""A scripted, loopback-only LLM endpoint that the real ``openai`` and ``anthropic`` SDKs talk to.

``ScriptedLLMServer`` is a stdlib :class:`http.server.ThreadingHTTPServer` running in a background
thread on ``127.0.0.1:<free port>``. It speaks the real wire formats of

* OpenAI: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/responses`` (JSON and SSE),
  ``POST /v1/embeddings`` (float and base64 encodings), ``POST /v1/completions`` (legacy, JSON and SSE);
* Anthropic: ``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens``;
* Gemini (``google-genai``): ``POST /v1beta/models/{model}:generateContent`` (JSON),
  ``:streamGenerateContent?alt=sse`` (SSE) and ``:batchEmbedContents``;
* Bedrock runtime (boto3): ``POST /model/{modelId}/converse`` / ``invoke`` (JSON) and
  ``converse-stream`` / ``invoke-with-response-stream`` (AWS event-stream binary framing);

so that instrumentation tests run the real SDK code paths over real HTTP, without network access,
API keys, or patching SDK internals.

Usage::

    with ScriptedLLMServer() as server:
        server.enqueue_openai_chat(content="Paris")
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="sk-test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.requests[0].headers["authorization"] == "Bearer sk-test"

    anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="sk-ant-test", max_retries=0)

Always construct clients with ``max_retries=0`` in tests: both SDKs otherwise retry 408/409/429/5xx
responses and dropped connections (with back-off sleeps), which would consume further scripted
responses or fall back to default echo answers.

Scripting: every ``enqueue_*`` call appends one answer to a FIFO script. A request takes the oldest
scripted answer whose route matches its path (answers enqueued with ``route=None``, e.g. by
:meth:`ScriptedLLMServer.enqueue_error`, match any route). With no matching answer the server
replies with a deterministic default "echo" answer for the route (``strict=True`` turns that into
an HTTP 500 and a recorded error instead). ``enqueue_openai_chat``, ``enqueue_openai_completion``,
``enqueue_openai_responses`` and ``enqueue_anthropic_message`` describe *what* the model answers and
are rendered as JSON or as an SSE stream depending on the request's ``stream`` flag (so LangChain /
LangGraph streaming works with them). The ``*_stream`` variants give chunk-level control and
require a streaming request (a non-streaming request gets an HTTP 500 and a recorded error).

Streams are sent with ``Transfer-Encoding: chunked``, one HTTP chunk per SSE event. ``error_after=n``
sends ``n`` SSE events and then drops the connection without the terminating chunk, which the SDKs
surface as ``APIConnectionError`` while iterating; ``error_mode="event"`` sends the provider's
in-stream error event instead.

Every request is recorded (method, path, query, lower-cased headers, raw body, parsed JSON) in a
thread-safe, bounded log; :meth:`ScriptedLLMServer.wait_for_requests` blocks on a condition variable
(never sleeps). Unexpected server-side problems (script mismatches, handler exceptions) are collected
in :attr:`ScriptedLLMServer.errors`.

Layout: ``_core.py`` (recording, replies, HTTP plumbing, the server core), one module per provider
wire format (``openai.py``, ``anthropic.py``: routes, renderers, ``enqueue_<provider>_*`` mixin),
composed here into :class:`ScriptedLLMServer`. Adding a provider's fake: one module defining a
``ProviderWire`` and a mixin, plus its wire and its base class below.

The package depends on the standard library only and can be run directly::

    python -m tests._servers.llm --port 8765

which serves default echo answers until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from typing import Any

from tests._servers.llm import anthropic, bedrock, gemini, openai
from tests._servers.llm._core import (
    RecordedRequest,
    StreamErrorMode,
    canonical_route,
    providers,
    register_wire,
    routes,
)
from tests._servers.llm.anthropic import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES, AnthropicScripts
from tests._servers.llm.bedrock import (
    BEDROCK_CONVERSE,
    BEDROCK_CONVERSE_STREAM,
    BEDROCK_INVOKE,
    BEDROCK_INVOKE_STREAM,
    BedrockScripts,
)
from tests._servers.llm.gemini import GEMINI_EMBED, GEMINI_GENERATE, GEMINI_STREAM, GeminiScripts
from tests._servers.llm.openai import (
    OPENAI_CHAT_COMPLETIONS,
    OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
    OpenAIScripts,
)

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "BEDROCK_CONVERSE",
    "BEDROCK_CONVERSE_STREAM",
    "BEDROCK_INVOKE",
    "BEDROCK_INVOKE_STREAM",
    "GEMINI_EMBED",
    "GEMINI_GENERATE",
    "GEMINI_STREAM",
    "OPENAI_CHAT_COMPLETIONS",
    "OPENAI_COMPLETIONS",
    "OPENAI_EMBEDDINGS",
    "OPENAI_RESPONSES",
    "ROUTES",
    "RecordedRequest",
    "ScriptedLLMServer",
    "StreamErrorMode",
    "canonical_route",
    "main",
]

for _wire in (openai.WIRE, anthropic.WIRE, gemini.WIRE, bedrock.WIRE):  # the first one also answers unknown paths
    register_wire(_wire)

#: Every route the server answers (``POST`` only).
ROUTES: frozenset[str] = routes()


class ScriptedLLMServer(OpenAIScripts, AnthropicScripts, GeminiScripts, BedrockScripts):
    """A loopback HTTP server speaking the OpenAI and Anthropic wire formats, answering from a script.

    Construct, :meth:`start` (or use as a context manager), point SDK clients at :attr:`openai_base_url`
    / :attr:`anthropic_base_url` with ``max_retries=0``, enqueue answers, assert on :attr:`requests`.
    Constructor arguments: see :class:`tests._servers.llm._core.ServerCore`.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Serve default echo answers on loopback until SIGINT/SIGTERM (or ``--max-seconds``)."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI/Anthropic-compatible endpoint (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="IPv4 loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    args = parser.parse_args(argv)
    try:
        server = ScriptedLLMServer(host=args.host, port=args.port)
    except ValueError as exc:
        parser.error(str(exc))
    server.start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    for wire in providers():
        print(f"{wire.name.upper()}_BASE_URL={server.base_url}{wire.base_path}", flush=True)
    try:
        stop.wait(args.max_seconds)
    finally:
        server.stop()
    return 0
