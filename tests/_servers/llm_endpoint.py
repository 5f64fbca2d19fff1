"""A scripted, loopback-only LLM endpoint that the real ``openai`` and ``anthropic`` SDKs talk to.

``ScriptedLLMServer`` is a stdlib :class:`http.server.ThreadingHTTPServer` running in a background
thread on ``127.0.0.1:<free port>``. It speaks the real wire formats of

* OpenAI: ``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/responses`` (JSON and SSE),
  ``POST /v1/embeddings`` (float and base64 encodings), ``POST /v1/completions`` (legacy, JSON and SSE);
* Anthropic: ``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens``;

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

The module depends on the standard library only and can be run directly::

    python tests/_servers/llm_endpoint.py --port 8765

which serves default echo answers until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import ipaddress
import itertools
import json
import math
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Union
from urllib.parse import urlsplit

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "OPENAI_CHAT_COMPLETIONS",
    "OPENAI_COMPLETIONS",
    "OPENAI_EMBEDDINGS",
    "OPENAI_RESPONSES",
    "ROUTES",
    "RecordedRequest",
    "ScriptedLLMServer",
    "StreamErrorMode",
    "main",
]

# --------------------------------------------------------------------------------------------------
# Routes and limits
# --------------------------------------------------------------------------------------------------

OPENAI_CHAT_COMPLETIONS = "/v1/chat/completions"
OPENAI_RESPONSES = "/v1/responses"
OPENAI_EMBEDDINGS = "/v1/embeddings"
OPENAI_COMPLETIONS = "/v1/completions"
ANTHROPIC_MESSAGES = "/v1/messages"
ANTHROPIC_COUNT_TOKENS = "/v1/messages/count_tokens"

#: Every route the server answers (``POST`` only).
ROUTES: frozenset[str] = frozenset(
    {
        OPENAI_CHAT_COMPLETIONS,
        OPENAI_RESPONSES,
        OPENAI_EMBEDDINGS,
        OPENAI_COMPLETIONS,
        ANTHROPIC_MESSAGES,
        ANTHROPIC_COUNT_TOKENS,
    }
)
_ANTHROPIC_ROUTES = frozenset({ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS})

_DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
_DEFAULT_MAX_RECORDED_REQUESTS = 10_000
_DEFAULT_MAX_SCRIPT = 10_000
_DEFAULT_MAX_CONNECTIONS = 128
_DEFAULT_REQUEST_TIMEOUT_S = 30.0
_MAX_ERRORS = 1_000
_MAX_SCHEMA_DEPTH = 8
_MAX_HEADER_LINES = 200
_MAX_EMBEDDING_DIMENSIONS = 65_536

StreamErrorMode = Literal["disconnect", "event"]
"""How ``error_after`` breaks a stream: drop the TCP connection mid-body, or send an error event."""

JSONDict = dict[str, Any]

# --------------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it.

    Attributes:
        index: 0-based arrival order over the server's lifetime.
        method: HTTP method, e.g. ``"POST"``.
        path: request path without the query string, exactly as sent (e.g. ``/v1/chat/completions``).
        query: the raw query string (``""`` if none), e.g. ``"beta=true"`` for Anthropic beta calls.
        headers: header names lower-cased; repeated headers joined with ``", "``.
        body: the raw request body.
        json: the parsed JSON body, or ``None`` if the body was empty or not JSON.
        route: the canonical route (one of :data:`ROUTES`) or ``None`` for an unknown path.
        scripted: whether a scripted answer (rather than the default answer) served the request.
    """

    index: int
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    json: Any
    route: str | None
    scripted: bool

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return header ``name`` (case-insensitive) or ``default``."""
        return self.headers.get(name.lower(), default)

    @property
    def stream(self) -> bool:
        """Whether the JSON body asked for a streamed answer (``"stream": true``)."""
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def model(self) -> str | None:
        """The ``model`` field of the JSON body, if any."""
        if isinstance(self.json, dict) and isinstance(self.json.get("model"), str):
            return str(self.json["model"])
        return None


def canonical_route(path: str) -> str | None:
    """Map a request path to one of :data:`ROUTES`, tolerating a missing ``/v1`` and a trailing slash."""
    clean = path.rstrip("/") or "/"
    if not clean.startswith("/v1/"):
        clean = "/v1" + clean
    return clean if clean in ROUTES else None


# --------------------------------------------------------------------------------------------------
# Replies (what the handler writes)
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _JsonReply:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    content_type: str = "application/json"


@dataclasses.dataclass
class _SseReply:
    events: list[bytes]
    headers: list[tuple[str, str]]
    disconnect_after: int | None = None
    hold_after: int | None = None


_Reply = Union[_JsonReply, _SseReply]


@dataclasses.dataclass
class _Context:
    """What a renderer gets: the request plus id/timestamp helpers of the owning server."""

    request: RecordedRequest
    new_id: Callable[[str], str]
    now: int
    request_id: str

    @property
    def body(self) -> JSONDict:
        return self.request.json if isinstance(self.request.json, dict) else {}


_Renderer = Callable[[_Context], _Reply]


@dataclasses.dataclass
class _Script:
    route: str | None
    stream: bool | None
    render: _Renderer
    label: str


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _JsonReply:
    return _JsonReply(status=status, body=_dumps(payload).encode("utf-8"), headers=_header_list(headers))


def _header_list(headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in (headers or {}).items()]


def _sse_data(payload: Any) -> bytes:
    """OpenAI framing: a ``data:`` line and a blank line (no ``event:`` line)."""
    return b"data: " + _dumps(payload).encode("utf-8") + b"\n\n"


def _sse_event(event: str, payload: Any) -> bytes:
    """Named-event framing used by Anthropic and the OpenAI Responses API."""
    return b"event: " + event.encode("utf-8") + b"\ndata: " + _dumps(payload).encode("utf-8") + b"\n\n"


_SSE_DONE = b"data: [DONE]\n\n"


# --------------------------------------------------------------------------------------------------
# Small helpers: text extraction, token estimates, splitting
# --------------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_PIECE_RE = re.compile(r"\s*\S+")


def _estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


def _split_text(text: str) -> list[str]:
    """Split text into word-sized stream pieces whose concatenation is ``text``."""
    pieces = _PIECE_RE.findall(text)
    rest = text[sum(len(p) for p in pieces) :]
    if rest:
        if pieces:
            pieces[-1] += rest
        else:
            pieces = [rest]
    return pieces


def _pieces(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return _split_text(value)
    return [str(p) for p in value]


def _split_json_args(arguments: str, parts: int = 3) -> list[str]:
    """Split a JSON argument string into ``parts`` roughly equal, non-empty pieces."""
    if not arguments:
        return []
    size = max(1, math.ceil(len(arguments) / parts))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def _text_of(content: Any, depth: int = 0) -> str:
    """Best-effort plain text of a message ``content`` (string or list of typed parts)."""
    if depth > 4:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(t for t in (_text_of(part, depth + 1) for part in content) if t)
    if isinstance(content, dict):
        for key in ("text", "content", "input_text", "output"):
            if key in content:
                return _text_of(content[key], depth + 1)
    return ""


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return _text_of(messages)
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            text = _text_of(message.get("content"))
            if text:
                return text
    return ""


def _all_text(body: JSONDict) -> str:
    parts = [
        _text_of(body.get(key))
        for key in ("system", "instructions", "messages", "input", "prompt")
        if body.get(key) is not None
    ]
    return " ".join(p for p in parts if p)


def _echo(text: str) -> str:
    return f"Echo: {text}" if text else "Echo."


def _deterministic_vector(text: str, dimensions: int) -> list[float]:
    """A unit-length pseudo-embedding derived from SHA-256 of the text (stable across runs)."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        values.extend((b / 127.5) - 1.0 for b in digest)
        counter += 1
    vector = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # float32 round trip so float and base64 encodings carry identical values
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vector]


def _example_from_schema(schema: Any, root: Any, depth: int = 0) -> Any:
    """Build a minimal JSON instance that satisfies a (strict, structured-output) JSON schema."""
    if depth > _MAX_SCHEMA_DEPTH or not isinstance(schema, dict):
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return _example_from_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example_from_schema((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {str(k): _example_from_schema(v, root, depth + 1) for k, v in properties.items()}
    if kind == "array":
        count = min(int(schema.get("minItems", 0) or 0), 3)
        return [_example_from_schema(schema.get("items") or {}, root, depth + 1) for _ in range(count)]
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return "1970-01-01T00:00:00Z"
        if fmt == "date":
            return "1970-01-01"
        if fmt == "uuid":
            return "00000000-0000-0000-0000-000000000000"
        return "x" * min(int(schema.get("minLength", 0) or 0), 64)
    if kind == "integer":
        return int(schema.get("minimum", 0) or 0)
    if kind == "number":
        return float(schema.get("minimum", 0) or 0)
    if kind == "boolean":
        return False
    return None


def _structured_default(body: JSONDict) -> str | None:
    """If the request asks for structured output, return a schema-conforming JSON string."""
    fmt: Any = None
    response_format = body.get("response_format")  # chat completions
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_object":
            return "{}"
        if response_format.get("type") == "json_schema":
            fmt = (response_format.get("json_schema") or {}).get("schema")
    text = body.get("text")  # responses API
    if fmt is None and isinstance(text, dict) and isinstance(text.get("format"), dict):
        if text["format"].get("type") == "json_object":
            return "{}"
        if text["format"].get("type") == "json_schema":
            fmt = text["format"].get("schema")
    for key in ("output_config", "output_format"):  # anthropic
        cfg = body.get(key)
        if fmt is None and isinstance(cfg, dict):
            inner = cfg.get("format") if key == "output_config" else cfg
            if isinstance(inner, dict) and inner.get("type") == "json_schema":
                fmt = inner.get("schema")
    if fmt is None:
        return None
    return _dumps(_example_from_schema(fmt, fmt))


# --------------------------------------------------------------------------------------------------
# Usage blocks (wire format per API)
# --------------------------------------------------------------------------------------------------


def _merge(defaults: JSONDict, override: Mapping[str, Any] | None) -> JSONDict:
    """Shallow-merge ``override`` into ``defaults``; nested dicts are merged one level deep."""
    result = dict(defaults)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    return result


def _chat_usage(usage: Mapping[str, Any] | None, prompt: int, completion: int) -> JSONDict:
    u = dict(usage or {})
    p = int(u.get("prompt_tokens", prompt))
    c = int(u.get("completion_tokens", completion))
    defaults: JSONDict = {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    return _merge(defaults, u)


def _completion_usage(usage: Mapping[str, Any] | None, prompt: int, completion: int) -> JSONDict:
    u = dict(usage or {})
    p = int(u.get("prompt_tokens", prompt))
    c = int(u.get("completion_tokens", completion))
    return _merge({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}, u)


def _responses_usage(usage: Mapping[str, Any] | None, prompt: int, completion: int) -> JSONDict:
    u = dict(usage or {})
    i = int(u.get("input_tokens", prompt))
    o = int(u.get("output_tokens", completion))
    defaults: JSONDict = {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": i + o,
    }
    return _merge(defaults, u)


def _anthropic_usage(usage: Mapping[str, Any] | None, prompt: int, completion: int) -> JSONDict:
    u = dict(usage or {})
    creation = int(u.get("cache_creation_input_tokens", 0) or 0)
    defaults: JSONDict = {
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": creation, "ephemeral_1h_input_tokens": 0},
        "output_tokens": completion,
        "service_tier": "standard",
    }
    return _merge(defaults, u)


# --------------------------------------------------------------------------------------------------
# Errors (wire format per provider)
# --------------------------------------------------------------------------------------------------

_OPENAI_ERROR_TYPES: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist or you do not have access to it."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _openai_error_body(status: int, message: str | None, error_type: str | None, code: str | None) -> JSONDict:
    default_type, default_code, default_message = _OPENAI_ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}")
    )
    return {
        "error": {
            "message": message if message is not None else default_message,
            "type": error_type if error_type is not None else default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
    }


def _anthropic_error_body(status: int, message: str | None, error_type: str | None, request_id: str) -> JSONDict:
    default_type, default_message = _ANTHROPIC_ERROR_TYPES.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
    )
    return {
        "type": "error",
        "error": {
            "type": error_type if error_type is not None else default_type,
            "message": message if message is not None else default_message,
        },
        "request_id": request_id,
    }


def _error_reply(
    ctx: _Context,
    status: int,
    *,
    message: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> _JsonReply:
    """An error in the wire format of the provider that owns the request's route."""
    if ctx.request.route in _ANTHROPIC_ROUTES:
        payload = _anthropic_error_body(status, message, error_type, ctx.request_id)
    else:
        payload = _openai_error_body(status, message, error_type, code)
    return _json_reply(status, payload, headers)


# --------------------------------------------------------------------------------------------------
# OpenAI chat completions
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _ToolCall:
    id: str | None
    name: str
    arguments: str
    argument_chunks: list[str] | None


def _tool_calls(specs: Sequence[Mapping[str, Any]] | None) -> list[_ToolCall]:
    """Accept ``{"name", "arguments", "id"?, "arguments_chunks"?}`` or the wire shape ``{"id", "function": {...}}``."""
    result: list[_ToolCall] = []
    for spec in specs or ():
        nested = spec.get("function")
        function: Mapping[str, Any] = nested if isinstance(nested, Mapping) else spec
        if "name" not in function:
            raise ValueError(f"tool call spec needs a name: {dict(spec)!r}")
        arguments = function.get("arguments", spec.get("input", {}))
        if not isinstance(arguments, str):
            arguments = _dumps(arguments)
        chunks = spec.get("arguments_chunks")
        if chunks is not None:
            chunks = [str(c) for c in chunks]
            if "".join(chunks) != arguments and "arguments" in function:
                raise ValueError("arguments_chunks must concatenate to arguments")
            arguments = "".join(chunks)
        result.append(
            _ToolCall(
                id=spec.get("id") or spec.get("call_id"),
                name=str(function["name"]),
                arguments=arguments,
                argument_chunks=chunks,
            )
        )
    return result


@dataclasses.dataclass(frozen=True)
class _ChatSpec:
    content: str | Sequence[str] | None = None
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    finish_reason: str | None = None
    id: str | None = None
    include_usage: bool | None = None
    chunks: Sequence[Mapping[str, Any]] | None = None
    refusal: str | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    extra_fields: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    error_after: int | None = None
    error_mode: StreamErrorMode = "disconnect"


def _chat_default_content(body: JSONDict) -> str:
    structured = _structured_default(body)
    return structured if structured is not None else _echo(_last_user_text(body.get("messages")))


def _render_chat_json(spec: _ChatSpec, ctx: _Context) -> _Reply:
    body = ctx.body
    content_pieces = _pieces(spec.content) if spec.content is not None else None
    calls = _tool_calls(spec.tool_calls)
    if content_pieces is None and not calls and spec.refusal is None:
        content_pieces = [_chat_default_content(body)]
    content = "".join(content_pieces) if content_pieces is not None else None
    message: JSONDict = {"role": "assistant", "content": content, "refusal": spec.refusal, "annotations": []}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id or ctx.new_id("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ]
    completion_text = (content or "") + "".join(c.arguments for c in calls) + (spec.refusal or "")
    payload: JSONDict = {
        "id": spec.id or ctx.new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": ctx.now,
        "model": spec.model or ctx.request.model or "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": spec.finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": _chat_usage(spec.usage, max(1, _estimate_tokens(_all_text(body))), _estimate_tokens(completion_text)),
        "service_tier": spec.service_tier or "default",
        "system_fingerprint": spec.system_fingerprint or "fp_scripted",
    }
    payload.update(spec.extra_fields or {})
    return _json_reply(200, payload, spec.headers)


def _stream_options_include_usage(body: JSONDict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _render_chat_stream(spec: _ChatSpec, ctx: _Context) -> _Reply:
    body = ctx.body
    include_usage = spec.include_usage if spec.include_usage is not None else _stream_options_include_usage(body)
    envelope: JSONDict = {
        "id": spec.id or ctx.new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": ctx.now,
        "model": spec.model or ctx.request.model or "gpt-4o-mini",
        "service_tier": spec.service_tier or "default",
        "system_fingerprint": spec.system_fingerprint or "fp_scripted",
    }
    envelope.update(spec.extra_fields or {})

    def chunk(delta: JSONDict, finish_reason: str | None = None) -> JSONDict:
        data: JSONDict = {
            **envelope,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return data

    chunks: list[JSONDict] = []
    completion_text = ""
    if spec.chunks is not None:
        for raw in spec.chunks:
            data = {**envelope, **raw}
            if include_usage and "usage" not in raw:
                data["usage"] = None
            chunks.append(data)
            for choice in raw.get("choices") or ():
                delta = choice.get("delta") or {}
                completion_text += str(delta.get("content") or "")
        usage_chunk_present = any(raw.get("usage") for raw in spec.chunks)
    else:
        usage_chunk_present = False
        calls = _tool_calls(spec.tool_calls)
        content_pieces = _pieces(spec.content)
        if spec.content is None and not calls and spec.refusal is None:
            content_pieces = _split_text(_chat_default_content(body))
        completion_text = "".join(content_pieces) + "".join(c.arguments for c in calls) + (spec.refusal or "")
        if content_pieces or spec.refusal is not None or not calls:
            chunks.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            chunks.extend(chunk({"content": piece}) for piece in content_pieces)
            if spec.refusal is not None:
                chunks.extend(chunk({"refusal": piece}) for piece in _split_text(spec.refusal))
            first_role: JSONDict = {}
        else:
            first_role = {"role": "assistant", "content": None, "refusal": None}
        for index, call in enumerate(calls):
            header: JSONDict = {
                **(first_role if index == 0 else {}),
                "tool_calls": [
                    {
                        "index": index,
                        "id": call.id or ctx.new_id("call_"),
                        "type": "function",
                        "function": {"name": call.name, "arguments": ""},
                    }
                ],
            }
            chunks.append(chunk(header))
            arg_pieces = call.argument_chunks if call.argument_chunks is not None else _split_json_args(call.arguments)
            chunks.extend(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) for piece in arg_pieces
            )
        chunks.append(chunk({}, spec.finish_reason or ("tool_calls" if calls else "stop")))
    if include_usage and not usage_chunk_present:
        usage = _chat_usage(spec.usage, max(1, _estimate_tokens(_all_text(body))), _estimate_tokens(completion_text))
        chunks.append({**envelope, "choices": [], "usage": usage})
    events = [_sse_data(c) for c in chunks]
    return _finish_stream(events, _SSE_DONE, spec.error_after, spec.error_mode, spec.headers, _openai_stream_error)


def _openai_stream_error(sequence_number: int) -> bytes:
    del sequence_number
    return _sse_data(
        {"error": {"message": "The server had an error while processing your request.", "type": "server_error",
                   "param": None, "code": None}}
    )


def _check_error_after(error_after: int | None, error_mode: str) -> None:
    if error_after is not None and error_after < 0:
        raise ValueError("error_after must be >= 0")
    if error_mode not in ("disconnect", "event"):
        raise ValueError(f"error_mode must be 'disconnect' or 'event', got {error_mode!r}")


def _finish_stream(
    events: list[bytes],
    terminator: bytes | None,
    error_after: int | None,
    error_mode: StreamErrorMode,
    headers: Mapping[str, str] | None,
    error_event: Callable[[int], bytes],
) -> _SseReply:
    """Append the terminator, or cut the stream after ``error_after`` events."""
    if terminator is not None:
        events = [*events, terminator]
    if error_after is None:
        return _SseReply(events=events, headers=_header_list(headers))
    kept = events[:error_after]
    if error_mode == "event":
        return _SseReply(events=[*kept, error_event(len(kept))], headers=_header_list(headers))
    return _SseReply(events=kept, headers=_header_list(headers), disconnect_after=len(kept))


# --------------------------------------------------------------------------------------------------
# OpenAI legacy completions
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _CompletionSpec:
    text: str | Sequence[str] | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    finish_reason: str = "stop"
    id: str | None = None
    include_usage: bool | None = None
    headers: Mapping[str, str] | None = None
    error_after: int | None = None
    error_mode: StreamErrorMode = "disconnect"


def _render_completion(spec: _CompletionSpec, ctx: _Context) -> _Reply:
    body = ctx.body
    pieces = _pieces(spec.text) if spec.text is not None else _split_text(_echo(_text_of(body.get("prompt"))))
    text = "".join(pieces)
    envelope: JSONDict = {
        "id": spec.id or ctx.new_id("cmpl-"),
        "object": "text_completion",
        "created": ctx.now,
        "model": spec.model or ctx.request.model or "gpt-3.5-turbo-instruct",
        "system_fingerprint": None,
    }
    prompt_tokens = max(1, _estimate_tokens(_text_of(body.get("prompt"))))
    usage = _completion_usage(spec.usage, prompt_tokens, _estimate_tokens(text))
    if not ctx.request.stream:
        payload = {
            **envelope,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": spec.finish_reason}],
            "usage": usage,
        }
        return _json_reply(200, payload, spec.headers)
    include_usage = spec.include_usage if spec.include_usage is not None else _stream_options_include_usage(body)
    chunks: list[JSONDict] = []
    for piece, finish in [*((p, None) for p in pieces), ("", spec.finish_reason)]:
        data: JSONDict = {
            **envelope,
            "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            data["usage"] = None
        chunks.append(data)
    if include_usage:
        chunks.append({**envelope, "choices": [], "usage": usage})
    events = [_sse_data(c) for c in chunks]
    return _finish_stream(events, _SSE_DONE, spec.error_after, spec.error_mode, spec.headers, _openai_stream_error)


# --------------------------------------------------------------------------------------------------
# OpenAI Responses API
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ResponsesSpec:
    output_text: str | Sequence[str] | None = None
    function_calls: Sequence[Mapping[str, Any]] | None = None
    output: Sequence[Mapping[str, Any]] | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    id: str | None = None
    status: str = "completed"
    extra_fields: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    error_after: int | None = None
    error_mode: StreamErrorMode = "disconnect"


_RESPONSE_ECHO_FIELDS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def _responses_input_text(body: JSONDict) -> str:
    value = body.get("input")
    if isinstance(value, list):
        return _last_user_text(value)
    return _text_of(value)


def _response_object(
    spec: _ResponsesSpec,
    ctx: _Context,
    response_id: str,
    *,
    status: str,
    output: list[JSONDict],
    usage: JSONDict | None,
) -> JSONDict:
    body = ctx.body
    payload: JSONDict = {
        "id": response_id,
        "object": "response",
        "created_at": ctx.now,
        "status": status,
        "background": False,
        "completed_at": ctx.now if status == "completed" else None,
        "error": (
            {"code": "server_error", "message": "The model failed to generate a response."}
            if status == "failed"
            else None
        ),
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": spec.model or ctx.request.model or "gpt-4o-mini",
        "output": output,
        "service_tier": "default",
        "usage": usage,
    }
    for key, default in _RESPONSE_ECHO_FIELDS.items():
        value = body.get(key, default)
        if key == "text" and isinstance(value, dict):
            value = {**default, **value}
        payload[key] = value if value is not None or default is None else default
    payload.update(spec.extra_fields or {})
    return payload


def _responses_items(spec: _ResponsesSpec, ctx: _Context) -> tuple[list[JSONDict], list[list[str]]]:
    """Final output items plus, per item, the stream pieces of its text/arguments."""
    items: list[JSONDict] = []
    pieces: list[list[str]] = []
    if spec.output is not None:
        for raw in spec.output:
            item = dict(raw)
            if item.get("type") == "message":
                item.setdefault("id", ctx.new_id("msg_"))
                item.setdefault("status", "completed")
                item.setdefault("role", "assistant")
                text = "".join(str(c.get("text", "")) for c in item.get("content", []) if isinstance(c, Mapping))
                pieces.append(_split_text(text))
            elif item.get("type") == "function_call":
                item.setdefault("id", ctx.new_id("fc_"))
                item.setdefault("call_id", ctx.new_id("call_"))
                item.setdefault("status", "completed")
                if not isinstance(item.get("arguments"), str):
                    item["arguments"] = _dumps(item.get("arguments", {}))
                pieces.append(_split_json_args(item["arguments"]))
            else:
                item.setdefault("id", ctx.new_id("item_"))
                pieces.append([])
            items.append(item)
        return items, pieces
    text_pieces = _pieces(spec.output_text) if spec.output_text is not None else None
    calls = _tool_calls(spec.function_calls)
    if text_pieces is None and not calls:
        structured = _structured_default(ctx.body)
        text_pieces = _split_text(structured if structured is not None else _echo(_responses_input_text(ctx.body)))
    if text_pieces is not None:
        items.append(
            {
                "id": ctx.new_id("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(text_pieces), "annotations": [], "logprobs": []}],
            }
        )
        pieces.append(text_pieces)
    for call in calls:
        items.append(
            {
                "id": ctx.new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "arguments": call.arguments,
                "call_id": call.id or ctx.new_id("call_"),
                "name": call.name,
            }
        )
        pieces.append(call.argument_chunks if call.argument_chunks is not None else _split_json_args(call.arguments))
    return items, pieces


def _responses_output_text(items: list[JSONDict]) -> str:
    parts: list[str] = []
    for item in items:
        if item.get("type") == "message":
            parts.extend(str(c.get("text", "")) for c in item.get("content", []) if isinstance(c, Mapping))
        elif item.get("type") == "function_call":
            parts.append(str(item.get("arguments", "")))
    return "".join(parts)


def _render_responses(spec: _ResponsesSpec, ctx: _Context) -> _Reply:
    items, item_pieces = _responses_items(spec, ctx)
    usage = _responses_usage(
        spec.usage, max(1, _estimate_tokens(_all_text(ctx.body))), _estimate_tokens(_responses_output_text(items))
    )
    response_id = spec.id or ctx.new_id("resp_")
    final = _response_object(spec, ctx, response_id, status=spec.status, output=items, usage=usage)
    if not ctx.request.stream:
        return _json_reply(200, final, spec.headers)

    events: list[bytes] = []
    sequence = itertools.count()

    def emit(event_type: str, **fields: Any) -> None:
        events.append(_sse_event(event_type, {"type": event_type, "sequence_number": next(sequence), **fields}))

    in_progress = _response_object(spec, ctx, response_id, status="in_progress", output=[], usage=None)
    emit("response.created", response=in_progress)
    emit("response.in_progress", response=in_progress)
    for output_index, (item, pieces) in enumerate(zip(items, item_pieces)):
        item_id = item["id"]
        if item.get("type") == "message":
            emit(
                "response.output_item.added",
                output_index=output_index,
                item={**item, "status": "in_progress", "content": []},
            )
            for content_index, part in enumerate(item.get("content", [])):
                text = str(part.get("text", ""))
                part_pieces = pieces if len(item.get("content", [])) == 1 else _split_text(text)
                emit(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=output_index,
                    content_index=content_index,
                    part={**part, "text": ""},
                )
                for piece in part_pieces:
                    emit(
                        "response.output_text.delta",
                        item_id=item_id,
                        output_index=output_index,
                        content_index=content_index,
                        delta=piece,
                        logprobs=[],
                    )
                emit(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=output_index,
                    content_index=content_index,
                    text=text,
                    logprobs=[],
                )
                emit(
                    "response.content_part.done",
                    item_id=item_id,
                    output_index=output_index,
                    content_index=content_index,
                    part=part,
                )
        elif item.get("type") == "function_call":
            emit(
                "response.output_item.added",
                output_index=output_index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            for piece in pieces:
                emit("response.function_call_arguments.delta", item_id=item_id, output_index=output_index, delta=piece)
            emit(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=output_index,
                arguments=item["arguments"],
            )
        else:
            emit("response.output_item.added", output_index=output_index, item=item)
        emit("response.output_item.done", output_index=output_index, item=item)
    terminal = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}
    emit(terminal.get(spec.status, "response.completed"), response=final)

    def error_event(sequence_number: int) -> bytes:
        return _sse_event(
            "error",
            {
                "type": "error",
                "code": "server_error",
                "message": "The server had an error while processing your request.",
                "param": None,
                "sequence_number": sequence_number,
            },
        )

    return _finish_stream(events, None, spec.error_after, spec.error_mode, spec.headers, error_event)


# --------------------------------------------------------------------------------------------------
# OpenAI embeddings
# --------------------------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[str]:
    """One text key per vector the request asks for (str, [str], [int] tokens, or [[int]])."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [_dumps(value)]
        return [v if isinstance(v, str) else _dumps(v) for v in value]
    return [_dumps(value)]


def _render_embeddings(
    ctx: _Context,
    embeddings: Sequence[Sequence[float]] | None,
    model: str | None,
    usage: Mapping[str, Any] | None,
    dimensions: int,
    headers: Mapping[str, str] | None,
) -> _Reply:
    body = ctx.body
    texts = _embedding_inputs(body.get("input"))
    requested = body.get("dimensions")
    dims = min(requested, _MAX_EMBEDDING_DIMENSIONS) if isinstance(requested, int) and requested > 0 else dimensions
    vectors = [list(map(float, v)) for v in embeddings] if embeddings is not None else [
        _deterministic_vector(t, dims) for t in texts
    ]
    as_base64 = body.get("encoding_format") == "base64"
    data: list[JSONDict] = []
    for index, vector in enumerate(vectors):
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii") if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    prompt = max(1, sum(_estimate_tokens(t) for t in texts))
    payload: JSONDict = {
        "object": "list",
        "data": data,
        "model": model or ctx.request.model or "text-embedding-3-small",
        "usage": _merge({"prompt_tokens": prompt, "total_tokens": prompt}, usage),
    }
    return _json_reply(200, payload, headers)


# --------------------------------------------------------------------------------------------------
# Anthropic messages
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _AnthropicSpec:
    content: str | Sequence[Mapping[str, Any]] | None = None
    usage: Mapping[str, Any] | None = None
    model: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    id: str | None = None
    events: Sequence[Mapping[str, Any]] | None = None
    ping: bool = True
    extra_fields: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    error_after: int | None = None
    error_mode: StreamErrorMode = "disconnect"


def _anthropic_blocks(spec: _AnthropicSpec, ctx: _Context) -> tuple[list[JSONDict], list[list[str]]]:
    """Final content blocks plus, per block, its stream pieces (text, thinking, or tool-input JSON)."""
    raw: Sequence[Mapping[str, Any]]
    if spec.content is None:
        structured = _structured_default(ctx.body)
        text = structured if structured is not None else _echo(_last_user_text(ctx.body.get("messages")))
        raw = [{"type": "text", "text": text}]
    elif isinstance(spec.content, str):
        raw = [{"type": "text", "text": spec.content}]
    else:
        raw = spec.content
    blocks: list[JSONDict] = []
    pieces: list[list[str]] = []
    for source in raw:
        block = dict(source)
        chunks = block.pop("chunks", None)
        kind = block.get("type")
        if kind == "text":
            if chunks is not None:
                block["text"] = "".join(chunks)
            block["text"] = str(block.get("text", ""))
            pieces.append(list(chunks) if chunks is not None else _split_text(block["text"]))
        elif kind in ("tool_use", "server_tool_use"):
            block.setdefault("id", ctx.new_id("toolu_" if kind == "tool_use" else "srvtoolu_"))
            if chunks is not None:
                block["input"] = json.loads("".join(chunks))
            block.setdefault("input", {})
            pieces.append(list(chunks) if chunks is not None else _split_json_args(_dumps(block["input"])))
        elif kind == "thinking":
            if chunks is not None:
                block["thinking"] = "".join(chunks)
            block.setdefault("thinking", "")
            block.setdefault("signature", "c2NyaXB0ZWQtc2lnbmF0dXJl")
            pieces.append(list(chunks) if chunks is not None else _split_text(block["thinking"]))
        else:
            pieces.append([])
        blocks.append(block)
    return blocks, pieces


def _anthropic_output_text(blocks: list[JSONDict]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "thinking":
            parts.append(str(block.get("thinking", "")))
        elif "input" in block:
            parts.append(_dumps(block["input"]))
    return "".join(parts)


def _render_anthropic(spec: _AnthropicSpec, ctx: _Context) -> _Reply:
    body = ctx.body
    model = spec.model or ctx.request.model or "claude-haiku-4-5"
    message_id = spec.id or ctx.new_id("msg_")

    def error_event(sequence_number: int) -> bytes:
        del sequence_number
        return _sse_event(
            "error",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
             "request_id": ctx.request_id},
        )

    if spec.events is not None:  # raw event mode: event name = payload["type"]
        events = [_sse_event(str(e["type"]), dict(e)) for e in spec.events]
        return _finish_stream(events, None, spec.error_after, spec.error_mode, spec.headers, error_event)

    blocks, block_pieces = _anthropic_blocks(spec, ctx)
    usage = _anthropic_usage(
        spec.usage, max(1, _estimate_tokens(_all_text(body))), _estimate_tokens(_anthropic_output_text(blocks))
    )
    stop_reason = spec.stop_reason or (
        "tool_use" if any(b.get("type") == "tool_use" for b in blocks) else "end_turn"
    )
    message: JSONDict = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": spec.stop_sequence,
        "usage": usage,
    }
    message.update(spec.extra_fields or {})
    if not ctx.request.stream:
        return _json_reply(200, message, spec.headers)

    out: list[bytes] = []

    def emit(payload: JSONDict) -> None:
        out.append(_sse_event(str(payload["type"]), payload))

    start_usage = {**usage, "output_tokens": min(1, int(usage.get("output_tokens", 0)))}
    emit(
        {
            "type": "message_start",
            "message": {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage},
        }
    )
    for index, (block, pieces) in enumerate(zip(blocks, block_pieces)):
        kind = block.get("type")
        if kind == "text":
            start_block: JSONDict = {**block, "text": ""}
        elif kind in ("tool_use", "server_tool_use"):
            start_block = {**block, "input": {}}
        elif kind == "thinking":
            start_block = {**block, "thinking": "", "signature": ""}
        else:
            start_block = block
        emit({"type": "content_block_start", "index": index, "content_block": start_block})
        if index == 0 and spec.ping:
            out.append(_sse_event("ping", {"type": "ping"}))
        if kind == "text":
            for piece in pieces:
                emit({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
        elif kind in ("tool_use", "server_tool_use"):
            for piece in ["", *pieces]:
                emit(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    }
                )
        elif kind == "thinking":
            for piece in pieces:
                delta = {"type": "thinking_delta", "thinking": piece}
                emit({"type": "content_block_delta", "index": index, "delta": delta})
            emit(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": block["signature"]},
                }
            )
        emit({"type": "content_block_stop", "index": index})
    delta_usage = {
        key: usage[key]
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
        if key in usage
    }
    emit(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": spec.stop_sequence},
            "usage": delta_usage,
        }
    )
    emit({"type": "message_stop"})
    return _finish_stream(out, None, spec.error_after, spec.error_mode, spec.headers, error_event)


# --------------------------------------------------------------------------------------------------
# Default answers (empty script)
# --------------------------------------------------------------------------------------------------


def _default_reply(ctx: _Context, embedding_dimensions: int) -> _Reply:
    route = ctx.request.route
    if ctx.request.method != "POST" and route is not None:
        return _error_reply(ctx, 405, message=f"Method {ctx.request.method} not allowed on {route}")
    if route is None:
        return _error_reply(ctx, 404, message=f"Unknown path {ctx.request.path}", code="unknown_url")
    if ctx.request.json is None or not isinstance(ctx.request.json, dict):
        return _error_reply(ctx, 400, message="Request body must be a JSON object.")
    if route == OPENAI_CHAT_COMPLETIONS:
        return _render_chat_stream(_ChatSpec(), ctx) if ctx.request.stream else _render_chat_json(_ChatSpec(), ctx)
    if route == OPENAI_COMPLETIONS:
        return _render_completion(_CompletionSpec(), ctx)
    if route == OPENAI_RESPONSES:
        return _render_responses(_ResponsesSpec(), ctx)
    if route == OPENAI_EMBEDDINGS:
        return _render_embeddings(ctx, None, None, None, embedding_dimensions, None)
    if route == ANTHROPIC_MESSAGES:
        return _render_anthropic(_AnthropicSpec(), ctx)
    if route == ANTHROPIC_COUNT_TOKENS:
        return _json_reply(200, {"input_tokens": max(1, _estimate_tokens(_all_text(ctx.body)))})
    return _error_reply(ctx, 404, message=f"Unknown path {ctx.request.path}")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    """Per-connection handler; all state lives on the owning :class:`ScriptedLLMServer`."""

    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: without it a response's header and body writes meet the client's delayed ACK
    # and every request takes ~40 ms on loopback.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "flowtel-scripted-llm/1"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.owner.request_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's per-request stderr logging."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def _read_body(self) -> bytes:
        limit = self.server.owner.max_body_bytes
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            for _ in range(1_000_000):
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    for _ in range(_MAX_HEADER_LINES):  # trailers
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise _BodyTooLarge()
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            raise _BodyTooLarge()
        length = int(self.headers.get("content-length") or 0)
        if length > limit:
            raise _BodyTooLarge()
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        route = canonical_route(split.path)
        try:
            body = self._read_body()
        except (_BodyTooLarge, ValueError):
            # The unread body makes the connection unusable: answer and close it.
            self.close_connection = True
            message = "Request body too large or malformed."
            payload = (
                _anthropic_error_body(413, message, None, "req_rejected")
                if route in _ANTHROPIC_ROUTES
                else _openai_error_body(413, message, None, None)
            )
            self._send_json(_json_reply(413, payload, {"Connection": "close"}), request_id="req_rejected")
            return
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                parsed = None
        request, script, ctx = owner._accept(self.command, split.path, split.query, headers, body, parsed, route)
        try:
            reply = owner._render(script, ctx)
        except Exception as exc:  # a bug in a script or renderer: answer 500 and remember why
            owner._note_error(f"rendering {script.label if script else 'default'} for {request.path} failed: "
                              + "".join(traceback.format_exception_only(type(exc), exc)).strip())
            reply = _error_reply(ctx, 500, message=f"scripted server failed to render the answer: {exc!r}")
        if isinstance(reply, _SseReply):
            self._send_sse(reply, ctx.request_id)
        else:
            self._send_json(reply, ctx.request_id)

    def _common_headers(self, request_id: str, extra: list[tuple[str, str]]) -> None:
        names = {name.lower() for name, _ in extra}
        if "x-request-id" not in names:
            self.send_header("x-request-id", request_id)
        if "request-id" not in names:
            self.send_header("request-id", request_id)
        for name, value in extra:
            self.send_header(name, value)

    def _send_json(self, reply: _JsonReply, request_id: str) -> None:
        try:
            self.send_response(reply.status)
            names = {name.lower() for name, _ in reply.headers}
            if "content-type" not in names:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self._common_headers(request_id, reply.headers)
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in reply.headers):
                self.close_connection = True
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_sse(self, reply: _SseReply, request_id: str) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self._common_headers(request_id, reply.headers)
            self.end_headers()
            for index, event in enumerate(reply.events):
                if index == reply.hold_after:
                    self.wfile.flush()
                    self.server.owner._release_held.wait(self.server.owner.request_timeout)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            if reply.disconnect_after is not None:
                # Drop the connection mid-body: no terminating zero-length chunk.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that tracks its handler threads and sockets so ``stop()`` is bounded."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: ScriptedLLMServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._connections: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer.server_bind``'s ``socket.getfqdn()`` (a resolver lookup)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            if len(self._connections) >= self.owner.max_connections:
                self.owner._note_error(f"connection limit {self.owner.max_connections} reached; refusing")
                self.shutdown_request(request)
                return
            thread = threading.Thread(
                target=self._run_connection, args=(request, client_address), daemon=True, name="scripted-llm-conn"
            )
            self._connections[thread] = request
        thread.start()

    def _run_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, (ConnectionError, TimeoutError)):
            return
        if isinstance(exc, OSError) and self.owner._stopping:
            return
        self.owner._note_error("handler error: " + "".join(traceback.format_exception(exc)).strip())

    def close_connections(self, timeout: float) -> None:
        """Shut down every open client socket, then join their threads (bounded by ``timeout``)."""
        with self._conn_lock:
            items = list(self._connections.items())
        for _, sock in items:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for thread, _ in items:
            thread.join(max(0.0, deadline - time.monotonic()))


# --------------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


class ScriptedLLMServer:
    """A loopback HTTP server speaking the OpenAI and Anthropic wire formats, answering from a script.

    Construct, :meth:`start` (or use as a context manager), point SDK clients at :attr:`openai_base_url`
    / :attr:`anthropic_base_url` with ``max_retries=0``, enqueue answers, assert on :attr:`requests`.

    Args:
        host: IPv4 loopback address to bind (non-loopback hosts are rejected).
        port: TCP port; ``0`` picks a free one.
        strict: when the script holds no answer for a request, reply HTTP 500 (and record an error)
            instead of the default echo answer.
        embedding_dimensions: vector length of default embeddings when the request has no ``dimensions``.
        max_body_bytes: larger request bodies get HTTP 413.
        max_recorded_requests: the request log keeps the newest this many (see :attr:`dropped_requests`).
        max_script: maximum number of queued answers.
        max_connections: concurrent connections beyond this are refused.
        request_timeout: socket timeout (seconds) for reading a request on a connection.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        strict: bool = False,
        embedding_dimensions: int = 8,
        max_body_bytes: int = _DEFAULT_MAX_BODY_BYTES,
        max_recorded_requests: int = _DEFAULT_MAX_RECORDED_REQUESTS,
        max_script: int = _DEFAULT_MAX_SCRIPT,
        max_connections: int = _DEFAULT_MAX_CONNECTIONS,
        request_timeout: float = _DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"ScriptedLLMServer binds to IPv4 loopback only, got host={host!r}")
        if not 0 < embedding_dimensions <= _MAX_EMBEDDING_DIMENSIONS:
            raise ValueError(f"embedding_dimensions must be in 1..{_MAX_EMBEDDING_DIMENSIONS}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self.strict = strict
        self.embedding_dimensions = embedding_dimensions
        self.max_body_bytes = max_body_bytes
        self.max_script = max_script
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self._lock = threading.Condition()
        self._script: deque[_Script] = deque()
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded_requests)
        self._request_count = 0
        self._dropped = 0
        self._errors: deque[str] = deque(maxlen=_MAX_ERRORS)
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._release_held = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ScriptedLLMServer:
        """Bind and serve in a background thread. Returns ``self``. Idempotent while running."""
        if self._httpd is not None:
            return self
        self._stopping = False
        httpd = _HTTPServer((self.host, self._requested_port), self)
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="scripted-llm-server"
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def release_held_streams(self) -> None:
        """Let streams enqueued with ``hold_after`` send the rest of their events (from now on, none is held)."""
        self._release_held.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close open connections and join threads (each wait bounded by ``timeout``)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping = True
        self._release_held.set()
        httpd.shutdown()
        httpd.close_connections(timeout)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout)
        self._httpd = self._thread = None

    def __enter__(self) -> ScriptedLLMServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is currently serving."""
        return self._httpd is not None

    @property
    def port(self) -> int:
        """The bound TCP port (only valid while running)."""
        if self._httpd is None:
            raise RuntimeError("ScriptedLLMServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``: ``http://127.0.0.1:PORT/v1``."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)``: ``http://127.0.0.1:PORT``."""
        return self.base_url

    # -- recorded requests -------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def dropped_requests(self) -> int:
        """How many old records were evicted because of ``max_recorded_requests``."""
        with self._lock:
            return self._dropped

    def requests_for(self, route: str) -> list[RecordedRequest]:
        """Recorded requests whose canonical route (or raw path) equals ``route``."""
        wanted = canonical_route(route) or route
        return [r for r in self.requests if r.route == wanted or r.path == route]

    def last_request(self, route: str | None = None) -> RecordedRequest:
        """The newest recorded request (optionally for ``route``); raises ``LookupError`` if none."""
        matching = self.requests if route is None else self.requests_for(route)
        if not matching:
            raise LookupError(f"no request recorded{'' if route is None else f' for {route}'}")
        return matching[-1]

    def clear_requests(self) -> None:
        """Forget recorded requests (the arrival index keeps counting)."""
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, count: int, timeout: float = 10.0, route: str | None = None) -> list[RecordedRequest]:
        """Block until at least ``count`` requests (for ``route``) have arrived; return them.

        Uses a condition variable (no polling sleeps). Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        wanted = None if route is None else (canonical_route(route) or route)

        def matching() -> list[RecordedRequest]:
            return [r for r in self._requests if wanted is None or r.route == wanted or r.path == wanted]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} request(s), got {len(matching())} within {timeout}s")
            return matching()

    # -- errors --------------------------------------------------------------------------------------

    @property
    def errors(self) -> list[str]:
        """Server-side problems: script/request mismatches, render failures, handler exceptions."""
        with self._lock:
            return list(self._errors)

    def clear_errors(self) -> None:
        """Forget recorded server-side errors (for tests that provoke them on purpose)."""
        with self._lock:
            self._errors.clear()

    def reset(self) -> None:
        """Clear the script, the recorded requests and the recorded errors."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self._errors.clear()

    def _note_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    # -- script --------------------------------------------------------------------------------------

    def pending(self, route: str | None = None) -> int:
        """Number of queued answers (for ``route``, counting route-agnostic ones too)."""
        wanted = None if route is None else (canonical_route(route) or route)
        with self._lock:
            return sum(1 for s in self._script if wanted is None or s.route in (None, wanted))

    def clear_script(self) -> None:
        """Drop every queued answer."""
        with self._lock:
            self._script.clear()

    def assert_script_consumed(self) -> None:
        """Raise ``AssertionError`` if queued answers remain (lists their labels)."""
        with self._lock:
            left = [s.label for s in self._script]
        if left:
            raise AssertionError(f"{len(left)} scripted answer(s) never requested: {left}")

    def _enqueue(self, render: _Renderer, *, route: str | None, stream: bool | None = None, label: str) -> None:
        """Queue a renderer ``(ctx) -> reply`` for the next request of ``route`` (any route if ``None``)."""
        canonical = None if route is None else canonical_route(route)
        if route is not None and canonical is None:
            raise ValueError(f"unknown route {route!r}; expected one of {sorted(ROUTES)}")
        with self._lock:
            if len(self._script) >= self.max_script:
                raise RuntimeError(f"script is full ({self.max_script} answers queued)")
            self._script.append(_Script(route=canonical, stream=stream, render=render, label=label))

    def _accept(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        parsed: Any,
        route: str | None,
    ) -> tuple[RecordedRequest, _Script | None, _Context]:
        """Atomically take the matching scripted answer and record the request."""
        with self._lock:
            script: _Script | None = None
            if method == "POST" and route is not None:
                for index, candidate in enumerate(self._script):
                    if candidate.route is None or candidate.route == route:
                        script = candidate
                        del self._script[index]
                        break
            request = RecordedRequest(
                index=self._request_count,
                method=method,
                path=path,
                query=query,
                headers=MappingProxyType(headers),
                body=body,
                json=parsed,
                route=route,
                scripted=script is not None,
            )
            self._request_count += 1
            if self._requests.maxlen is not None and len(self._requests) == self._requests.maxlen:
                self._dropped += 1
            self._requests.append(request)
            self._lock.notify_all()
        ctx = _Context(request=request, new_id=self._new_id, now=int(time.time()), request_id=self._new_id("req_"))
        return request, script, ctx

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            number = next(self._ids)
        return f"{prefix}scripted{number:06d}"

    def _render(self, script: _Script | None, ctx: _Context) -> _Reply:
        request = ctx.request
        if script is None:
            if self.strict and request.route is not None and request.method == "POST":
                self._note_error(f"strict mode: no scripted answer for {request.method} {request.path}")
                return _error_reply(ctx, 500, message=f"no scripted answer for {request.path}")
            return _default_reply(ctx, self.embedding_dimensions)
        if script.stream is not None and script.stream != request.stream:
            wanted = "a streaming" if script.stream else "a non-streaming"
            message = f"scripted answer {script.label} expects {wanted} request, got stream={request.stream}"
            self._note_error(message)
            return _error_reply(ctx, 500, message=message)
        return script.render(ctx)

    # -- typed enqueue helpers ---------------------------------------------------------------------

    def enqueue_openai_chat(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        finish_reason: str | None = None,
        refusal: str | None = None,
        id: str | None = None,  # noqa: A002 - mirrors the wire field
        system_fingerprint: str | None = None,
        service_tier: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one chat completion (``POST /v1/chat/completions``).

        Rendered as a ``chat.completion`` JSON object, or as a chunk stream (word-sized content pieces,
        tool-call arguments split in 3) if the request has ``stream: true`` (usage chunk only if the
        request set ``stream_options.include_usage``).

        Args:
            content: assistant text; ``None`` with no ``tool_calls`` means the default echo text.
            tool_calls: ``[{"name": ..., "arguments": dict | str, "id": optional}]`` (or wire shape).
            usage: wire-format usage overrides (``prompt_tokens``, ``completion_tokens``,
                ``prompt_tokens_details``...); missing counts are estimated, ``total_tokens`` summed.
            model: response ``model`` (default: the request's model).
            finish_reason: default ``"tool_calls"`` if tool calls else ``"stop"``.
            refusal: the message's ``refusal`` text.
            extra_fields: merged into the top-level object (each chunk when streamed).
            headers: extra response headers.
        """
        spec = _ChatSpec(
            content=content, tool_calls=tool_calls, usage=usage, model=model, finish_reason=finish_reason, id=id,
            refusal=refusal, system_fingerprint=system_fingerprint, service_tier=service_tier,
            extra_fields=extra_fields, headers=headers,
        )
        self._enqueue(
            lambda ctx: _render_chat_stream(spec, ctx) if ctx.request.stream else _render_chat_json(spec, ctx),
            route=OPENAI_CHAT_COMPLETIONS,
            label="openai_chat",
        )

    def enqueue_openai_chat_stream(
        self,
        content: str | Sequence[str] | None = None,
        *,
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        chunks: Sequence[Mapping[str, Any]] | None = None,
        include_usage: bool | None = None,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        finish_reason: str | None = None,
        refusal: str | None = None,
        id: str | None = None,  # noqa: A002
        system_fingerprint: str | None = None,
        service_tier: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        error_after: int | None = None,
        error_mode: StreamErrorMode = "disconnect",
        headers: Mapping[str, str] | None = None,
        hold_after: int | None = None,
    ) -> None:
        """Queue one streamed chat completion; the request must have ``stream: true``.

        Emits ``data: {chat.completion.chunk}`` events: a role chunk, one chunk per content piece, per
        tool call a header chunk (id, name, ``arguments: ""``) followed by argument-delta chunks, a
        finish chunk (empty delta + ``finish_reason``), optionally a usage chunk (``choices: []``),
        then ``data: [DONE]``.

        Args:
            content: a string (split into word-sized pieces) or the exact list of content pieces.
            tool_calls: like :meth:`enqueue_openai_chat`; add ``"arguments_chunks": [...]`` to control
                exactly how the argument JSON is split across chunks.
            chunks: raw mode: chunk dicts (e.g. ``{"choices": [...]}``) merged onto the envelope
                (``id``, ``object``, ``created``, ``model``...); ``content``/``tool_calls`` are ignored.
            include_usage: send the final usage chunk; ``None`` follows ``stream_options.include_usage``.
            error_after: break the stream after this many SSE events (``[DONE]`` counts as one).
            error_mode: ``"disconnect"`` (drop the connection: SDK raises ``APIConnectionError``) or
                ``"event"`` (send ``data: {"error": {...}}``: SDK raises ``APIError``).
            hold_after: send this many SSE events, then hold the stream open (the client blocks
                reading) until :meth:`release_held_streams` or :meth:`stop` -- e.g. to cancel a
                reader deterministically while it waits for the next chunk.
        """
        _check_error_after(error_after, error_mode)
        spec = _ChatSpec(
            content=content, tool_calls=tool_calls, usage=usage, model=model, finish_reason=finish_reason, id=id,
            include_usage=include_usage, chunks=chunks, refusal=refusal, system_fingerprint=system_fingerprint,
            service_tier=service_tier, extra_fields=extra_fields, headers=headers, error_after=error_after,
            error_mode=error_mode,
        )

        def render(ctx: _Context) -> _Reply:
            reply = _render_chat_stream(spec, ctx)
            if isinstance(reply, _SseReply):
                reply.hold_after = hold_after
            return reply

        self._enqueue(render, route=OPENAI_CHAT_COMPLETIONS, stream=True, label="openai_chat_stream")

    def enqueue_openai_completion(
        self,
        text: str | Sequence[str] | None = None,
        *,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        finish_reason: str = "stop",
        id: str | None = None,  # noqa: A002
        include_usage: bool | None = None,
        error_after: int | None = None,
        error_mode: StreamErrorMode = "disconnect",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one legacy completion (``POST /v1/completions``, ``object: "text_completion"``).

        Rendered as JSON, or as a stream of ``text_completion`` chunks + ``[DONE]`` when the request
        streams (``error_after``/``error_mode`` apply then).
        """
        _check_error_after(error_after, error_mode)
        spec = _CompletionSpec(
            text=text, usage=usage, model=model, finish_reason=finish_reason, id=id, include_usage=include_usage,
            headers=headers, error_after=error_after, error_mode=error_mode,
        )
        self._enqueue(lambda ctx: _render_completion(spec, ctx), route=OPENAI_COMPLETIONS, label="openai_completion")

    def enqueue_openai_responses(
        self,
        output_text: str | Sequence[str] | None = None,
        *,
        function_calls: Sequence[Mapping[str, Any]] | None = None,
        output: Sequence[Mapping[str, Any]] | None = None,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        status: Literal["completed", "incomplete", "failed"] = "completed",
        id: str | None = None,  # noqa: A002
        extra_fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one Responses API answer (``POST /v1/responses``); JSON, or SSE if the request streams.

        Args:
            output_text: assistant text (a ``message`` item with one ``output_text`` part); a list gives
                the exact stream deltas. ``None`` with no function calls means the default echo.
            function_calls: ``[{"name", "arguments": dict | str, "call_id"?, "arguments_chunks"?}]``,
                emitted as ``function_call`` items after the message.
            output: raw mode: the exact ``output`` items (ids/status filled in when missing).
            usage: wire-format overrides (``input_tokens``, ``output_tokens``,
                ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``).
            status: the final response status.

        Request fields such as ``instructions``, ``tools``, ``text``, ``temperature`` and ``metadata``
        are echoed into the response object, as the real API does.
        """
        spec = _ResponsesSpec(
            output_text=output_text, function_calls=function_calls, output=output, usage=usage, model=model, id=id,
            status=status, extra_fields=extra_fields, headers=headers,
        )
        self._enqueue(lambda ctx: _render_responses(spec, ctx), route=OPENAI_RESPONSES, label="openai_responses")

    def enqueue_openai_responses_stream(
        self,
        output_text: str | Sequence[str] | None = None,
        *,
        function_calls: Sequence[Mapping[str, Any]] | None = None,
        output: Sequence[Mapping[str, Any]] | None = None,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        status: Literal["completed", "incomplete", "failed"] = "completed",
        id: str | None = None,  # noqa: A002
        extra_fields: Mapping[str, Any] | None = None,
        error_after: int | None = None,
        error_mode: StreamErrorMode = "disconnect",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one streamed Responses API answer; the request must have ``stream: true``.

        Events (each ``event: <type>\\ndata: {...}``, with increasing ``sequence_number``):
        ``response.created``, ``response.in_progress``, per item ``response.output_item.added``, for
        messages ``response.content_part.added`` / ``response.output_text.delta`` ... /
        ``response.output_text.done`` / ``response.content_part.done``, for function calls
        ``response.function_call_arguments.delta`` ... / ``.done``, ``response.output_item.done``, and
        finally ``response.completed`` (or ``.incomplete`` / ``.failed``) carrying usage.
        There is no ``[DONE]`` sentinel on this API. ``error_mode="event"`` sends an ``error`` event.
        """
        _check_error_after(error_after, error_mode)
        spec = _ResponsesSpec(
            output_text=output_text, function_calls=function_calls, output=output, usage=usage, model=model, id=id,
            status=status, extra_fields=extra_fields, headers=headers, error_after=error_after, error_mode=error_mode,
        )
        self._enqueue(
            lambda ctx: _render_responses(spec, ctx),
            route=OPENAI_RESPONSES,
            stream=True,
            label="openai_responses_stream",
        )

    def enqueue_openai_embeddings(
        self,
        embeddings: Sequence[Sequence[float]] | None = None,
        *,
        model: str | None = None,
        usage: Mapping[str, Any] | None = None,
        dimensions: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one embeddings answer (``POST /v1/embeddings``).

        ``embeddings=None`` derives one deterministic unit vector per input. The vectors are sent as
        float lists, or as base64 little-endian float32 when the request has
        ``encoding_format: "base64"`` -- which the openai SDK sends by default and decodes itself. Scripted
        vectors therefore round-trip through float32: use float32-exact values (0.5, -0.25, ...) when
        asserting equality. A request's ``dimensions`` overrides ``dimensions`` for derived vectors.
        """
        dims = dimensions if dimensions is not None else self.embedding_dimensions
        self._enqueue(
            lambda ctx: _render_embeddings(ctx, embeddings, model, usage, dims, headers),
            route=OPENAI_EMBEDDINGS,
            label="openai_embeddings",
        )

    def enqueue_anthropic_message(
        self,
        content: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        stop_reason: str | None = None,
        stop_sequence: str | None = None,
        id: str | None = None,  # noqa: A002
        extra_fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one Anthropic message (``POST /v1/messages``); JSON, or SSE if the request streams.

        Args:
            content: a string (one ``text`` block) or content blocks: ``{"type": "text", "text": ...}``,
                ``{"type": "tool_use", "name": ..., "input": {...}, "id"?}``,
                ``{"type": "thinking", "thinking": ..., "signature"?}``; any block may carry
                ``"chunks": [...]`` to fix its stream deltas. ``None`` means the default echo text.
            usage: wire-format overrides: ``input_tokens``, ``output_tokens``,
                ``cache_read_input_tokens``, ``cache_creation_input_tokens``, ``cache_creation``...
            stop_reason: default ``"tool_use"`` if any tool_use block else ``"end_turn"``.
        """
        spec = _AnthropicSpec(
            content=content, usage=usage, model=model, stop_reason=stop_reason, stop_sequence=stop_sequence, id=id,
            extra_fields=extra_fields, headers=headers,
        )
        self._enqueue(lambda ctx: _render_anthropic(spec, ctx), route=ANTHROPIC_MESSAGES, label="anthropic_message")

    def enqueue_anthropic_stream(
        self,
        content: str | Sequence[Mapping[str, Any]] | None = None,
        *,
        events: Sequence[Mapping[str, Any]] | None = None,
        usage: Mapping[str, Any] | None = None,
        model: str | None = None,
        stop_reason: str | None = None,
        stop_sequence: str | None = None,
        id: str | None = None,  # noqa: A002
        ping: bool = True,
        extra_fields: Mapping[str, Any] | None = None,
        error_after: int | None = None,
        error_mode: StreamErrorMode = "disconnect",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one streamed Anthropic message; the request must have ``stream: true``.

        Events (``event: <type>\\ndata: {...}``): ``message_start`` (usage with input and cache
        tokens), per block ``content_block_start`` / ``content_block_delta`` (``text_delta``,
        ``input_json_delta`` starting with an empty ``partial_json``, ``thinking_delta`` +
        ``signature_delta``) / ``content_block_stop``, a ``ping`` after the first block start,
        ``message_delta`` (stop_reason + cumulative usage) and ``message_stop``.

        Args:
            content: as for :meth:`enqueue_anthropic_message`.
            events: raw mode: the exact event payloads (the SSE event name is each payload's ``type``).
            error_after: break after this many SSE events (``ping`` counts).
            error_mode: ``"disconnect"`` (SDK raises ``APIConnectionError``) or ``"event"`` (an
                ``event: error`` with ``overloaded_error``; SDK raises its typed status error).
        """
        _check_error_after(error_after, error_mode)
        spec = _AnthropicSpec(
            content=content, usage=usage, model=model, stop_reason=stop_reason, stop_sequence=stop_sequence, id=id,
            events=events, ping=ping, extra_fields=extra_fields, headers=headers, error_after=error_after,
            error_mode=error_mode,
        )
        self._enqueue(
            lambda ctx: _render_anthropic(spec, ctx), route=ANTHROPIC_MESSAGES, stream=True, label="anthropic_stream"
        )

    def enqueue_error(
        self,
        status: int,
        body: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        route: str | None = None,
    ) -> None:
        """Queue an HTTP error answer for the next request (of ``route``, or of any route if ``None``).

        Without ``body`` the error is rendered in the wire format of the provider owning the request's
        route: OpenAI ``{"error": {"message", "type", "param", "code"}}`` or Anthropic
        ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with a type matching
        ``status`` (e.g. 429 -> ``rate_limit_error``, 529 -> ``overloaded_error``). ``headers`` are
        sent as-is, e.g. ``{"retry-after": "1"}`` or ``{"x-should-retry": "false"}``.
        """
        if not 400 <= status <= 599:
            raise ValueError("enqueue_error expects a 4xx/5xx status")

        def render(ctx: _Context) -> _Reply:
            if body is None:
                return _error_reply(ctx, status, message=message, error_type=error_type, code=code, headers=headers)
            if isinstance(body, bytes):
                raw = body
            elif isinstance(body, str):
                raw = body.encode("utf-8")
            else:
                raw = _dumps(body).encode("utf-8")
            return _JsonReply(status=status, body=raw, headers=_header_list(headers))

        self._enqueue(render, route=route, label=f"error_{status}")

    def enqueue_raw(
        self,
        status: int,
        body: bytes | str | Mapping[str, Any] | Sequence[Any],
        *,
        route: str | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an arbitrary non-streamed HTTP answer (status, body, content type, headers)."""
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = _dumps(body).encode("utf-8")
        self._enqueue(
            lambda ctx: _JsonReply(status=status, body=raw, headers=_header_list(headers), content_type=content_type),
            route=route,
            label=f"raw_{status}",
        )

    def enqueue_sse(
        self,
        events: Sequence[tuple[str | None, Any]],
        *,
        route: str,
        done: bool = False,
        error_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an arbitrary SSE stream: ``(event_name_or_None, payload)`` pairs; ``done`` appends ``[DONE]``.

        A ``str`` payload is sent verbatim as the ``data:`` value; anything else is JSON-encoded.
        """
        _check_error_after(error_after, "disconnect")
        framed: list[bytes] = []
        for name, payload in events:
            data = payload if isinstance(payload, str) else _dumps(payload)
            prefix = b"" if name is None else b"event: " + name.encode("utf-8") + b"\n"
            framed.append(prefix + b"data: " + data.encode("utf-8") + b"\n\n")

        def render(ctx: _Context) -> _Reply:
            return _finish_stream(
                framed, _SSE_DONE if done else None, error_after, "disconnect", headers, _openai_stream_error
            )

        self._enqueue(render, route=route, stream=True, label="sse")


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


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
    print(f"OPENAI_BASE_URL={server.openai_base_url}", flush=True)
    print(f"ANTHROPIC_BASE_URL={server.anthropic_base_url}", flush=True)
    try:
        stop.wait(args.max_seconds)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
