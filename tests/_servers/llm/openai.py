"""The OpenAI wire format of the scripted LLM endpoint.

``POST /v1/chat/completions`` (JSON and SSE), ``POST /v1/responses`` (JSON and SSE),
``POST /v1/embeddings`` (float and base64 encodings), ``POST /v1/completions`` (legacy, JSON and
SSE); errors as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tests._servers.llm._core import (
    _MAX_EMBEDDING_DIMENSIONS,
    _SSE_DONE,
    JSONDict,
    ProviderWire,
    ServerCore,
    StreamErrorMode,
    _all_text,
    _check_error_after,
    _Context,
    _default_reply,
    _deterministic_vector,
    _dumps,
    _echo,
    _estimate_tokens,
    _finish_stream,
    _json_reply,
    _last_user_text,
    _merge,
    _pieces,
    _Reply,
    _split_json_args,
    _split_text,
    _sse_data,
    _sse_event,
    _SseReply,
    _structured_default,
    _text_of,
    _tool_calls,
)

__all__ = [
    "OPENAI_CHAT_COMPLETIONS",
    "OPENAI_COMPLETIONS",
    "OPENAI_EMBEDDINGS",
    "OPENAI_RESPONSES",
    "OpenAIScripts",
    "WIRE",
]


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


OPENAI_CHAT_COMPLETIONS = "/v1/chat/completions"
OPENAI_RESPONSES = "/v1/responses"
OPENAI_EMBEDDINGS = "/v1/embeddings"
OPENAI_COMPLETIONS = "/v1/completions"


# --------------------------------------------------------------------------------------------------
# Usage and errors (OpenAI wire format)
# --------------------------------------------------------------------------------------------------


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


def _error_body(status: int, message: str | None, error_type: str | None, code: str | None, request_id: str) -> JSONDict:
    del request_id  # OpenAI errors carry it in the x-request-id header only
    return _openai_error_body(status, message, error_type, code)


# --------------------------------------------------------------------------------------------------
# Chat completions
# --------------------------------------------------------------------------------------------------


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
# Default answers and the wire
# --------------------------------------------------------------------------------------------------


def _default_reply(ctx: _Context, embedding_dimensions: int) -> _Reply:
    route = ctx.request.route
    if route == OPENAI_CHAT_COMPLETIONS:
        return _render_chat_stream(_ChatSpec(), ctx) if ctx.request.stream else _render_chat_json(_ChatSpec(), ctx)
    if route == OPENAI_COMPLETIONS:
        return _render_completion(_CompletionSpec(), ctx)
    if route == OPENAI_RESPONSES:
        return _render_responses(_ResponsesSpec(), ctx)
    return _render_embeddings(ctx, None, None, None, embedding_dimensions, None)


WIRE = ProviderWire(
    "openai",
    frozenset({OPENAI_CHAT_COMPLETIONS, OPENAI_RESPONSES, OPENAI_EMBEDDINGS, OPENAI_COMPLETIONS}),
    "/v1",
    _error_body,
    _default_reply,
    _openai_stream_error,
)


class OpenAIScripts(ServerCore):
    """The OpenAI half of :class:`tests._servers.llm.ScriptedLLMServer`: base URL and ``enqueue_openai_*``."""

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``: ``http://127.0.0.1:PORT/v1``."""
        return self.base_url + "/v1"

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
