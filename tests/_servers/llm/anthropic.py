"""The Anthropic wire format of the scripted LLM endpoint.

``POST /v1/messages`` (JSON and SSE) and ``POST /v1/messages/count_tokens``; errors as
``{"type": "error", "error": {"type", "message"}, "request_id"}``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from tests._servers.llm._core import (
    JSONDict,
    ProviderWire,
    ServerCore,
    StreamErrorMode,
    _all_text,
    _check_error_after,
    _Context,
    _default_reply,
    _dumps,
    _echo,
    _estimate_tokens,
    _finish_stream,
    _json_reply,
    _last_user_text,
    _merge,
    _Reply,
    _split_json_args,
    _split_text,
    _sse_event,
    _structured_default,
)

__all__ = [
    "ANTHROPIC_COUNT_TOKENS",
    "ANTHROPIC_MESSAGES",
    "AnthropicScripts",
    "WIRE",
]


# --------------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------------


ANTHROPIC_MESSAGES = "/v1/messages"
ANTHROPIC_COUNT_TOKENS = "/v1/messages/count_tokens"


# --------------------------------------------------------------------------------------------------
# Usage and errors (Anthropic wire format)
# --------------------------------------------------------------------------------------------------


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


def _error_body(status: int, message: str | None, error_type: str | None, code: str | None, request_id: str) -> JSONDict:
    del code  # Anthropic errors have no code
    return _anthropic_error_body(status, message, error_type, request_id)


# --------------------------------------------------------------------------------------------------
# Messages
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
# Default answers and the wire
# --------------------------------------------------------------------------------------------------


def _default_reply(ctx: _Context, embedding_dimensions: int) -> _Reply:
    del embedding_dimensions
    if ctx.request.route == ANTHROPIC_COUNT_TOKENS:
        return _json_reply(200, {"input_tokens": max(1, _estimate_tokens(_all_text(ctx.body)))})
    return _render_anthropic(_AnthropicSpec(), ctx)


def _stream_error(sequence_number: int) -> bytes:
    del sequence_number
    return _sse_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


WIRE = ProviderWire(
    "anthropic",
    frozenset({ANTHROPIC_MESSAGES, ANTHROPIC_COUNT_TOKENS}),
    "",
    _error_body,
    _default_reply,
    _stream_error,
)


class AnthropicScripts(ServerCore):
    """The Anthropic half of :class:`tests._servers.llm.ScriptedLLMServer`: base URL and ``enqueue_anthropic_*``."""

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)``: ``http://127.0.0.1:PORT``."""
        return self.base_url

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
