"""The Bedrock runtime (boto3 ``bedrock-runtime``) wire format of the scripted LLM endpoint.

``POST /model/{modelId}/converse`` and ``/invoke`` (JSON), ``/converse-stream`` and
``/invoke-with-response-stream`` (the AWS event-stream binary framing,
``application/vnd.amazon.eventstream``: prelude, CRC32s, typed headers, JSON payloads -- encoded here,
parsed by botocore's own decoder). ``invoke`` bodies follow the model family of ``modelId``:
Anthropic (Messages API), Amazon Titan (text and embeddings), Meta Llama, Cohere Command R. Errors as
``{"message"}`` with the ``x-amzn-ErrorType`` header. Point ``boto3.client("bedrock-runtime",
endpoint_url=...)`` at :attr:`BedrockScripts.bedrock_endpoint_url`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from tests._servers.llm._core import (
    JSONDict,
    ProviderWire,
    ServerCore,
    _Context,
    _deterministic_vector,
    _echo,
    _estimate_tokens,
    _json_reply,
    _Reply,
    _split_text,
    _SseReply,
)

__all__ = [
    "BEDROCK_CONVERSE",
    "BEDROCK_CONVERSE_STREAM",
    "BEDROCK_INVOKE",
    "BEDROCK_INVOKE_STREAM",
    "BedrockScripts",
    "WIRE",
    "event_message",
]

BEDROCK_CONVERSE = "/model/{modelId}/converse"
BEDROCK_CONVERSE_STREAM = "/model/{modelId}/converse-stream"
BEDROCK_INVOKE = "/model/{modelId}/invoke"
BEDROCK_INVOKE_STREAM = "/model/{modelId}/invoke-with-response-stream"
_OPERATIONS = {"converse": BEDROCK_CONVERSE, "converse-stream": BEDROCK_CONVERSE_STREAM, "invoke": BEDROCK_INVOKE,
               "invoke-with-response-stream": BEDROCK_INVOKE_STREAM}
_PATH_RE = re.compile(r"^/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)$")
_ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}
EVENT_STREAM = "application/vnd.amazon.eventstream"


# -- the AWS event-stream framing -----------------------------------------------------------------
def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def event_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message: ``total length, headers length, prelude CRC32, headers, payload, CRC32``."""
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + encoded + payload
    return body + struct.pack("!I", binascii.crc32(body) & 0xFFFFFFFF)


def _event(event_type: str, payload: Any) -> bytes:
    return event_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                         json.dumps(payload).encode())


def _exception(exception_type: str, message: str) -> bytes:
    return event_message(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


def _chunk(payload: Any) -> bytes:
    """An ``invoke-with-response-stream`` event: the model's JSON, base64 in ``{"bytes"}``."""
    return _event("chunk", {"bytes": base64.b64encode(json.dumps(payload).encode()).decode()})


# -- routes, errors ------------------------------------------------------------------------------
def _route_of(path: str) -> str | None:
    match = _PATH_RE.match(path.rstrip("/"))
    return _OPERATIONS[match.group(2)] if match else None


def _model_of(ctx: _Context) -> str:
    match = _PATH_RE.match(ctx.request.path)
    return unquote(match.group(1)) if match else "anthropic.claude-3-haiku-20240307-v1:0"


def _error_body(status: int, message: str | None, error_type: str | None, code: str | None, request_id: str) -> JSONDict:
    del code, request_id
    return {"message": message or "scripted error", "__type": error_type or _ERROR_TYPES.get(status, "ServiceException")}


def _stream_error(events_sent: int) -> bytes:
    del events_sent
    return _exception("modelStreamErrorException", "The model stream failed.")


# -- answers -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _BedrockSpec:
    text: str | Sequence[str] | None = None
    tool_uses: Sequence[Mapping[str, Any]] | None = None
    reasoning: str | None = None
    usage: Mapping[str, Any] | None = None
    stop_reason: str | None = None
    error_after: int | None = None
    hold_after: int | None = None


def _prompt_text(body: JSONDict) -> str:
    for message in reversed(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(str(b.get("text")) for b in content or () if isinstance(b, dict) and b.get("text"))
    for key in ("inputText", "prompt", "message"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ""


def _pieces(spec: _BedrockSpec, ctx: _Context) -> list[str]:
    if spec.text is None:
        return [] if spec.tool_uses else _split_text(_echo(_prompt_text(ctx.body)))
    return _split_text(spec.text) if isinstance(spec.text, str) else list(spec.text)


def _counts(spec: _BedrockSpec, ctx: _Context, text: str) -> tuple[int, int]:
    usage = spec.usage or {}
    return (int(usage.get("inputTokens", max(1, _estimate_tokens(_prompt_text(ctx.body))))),
            int(usage.get("outputTokens", max(1, _estimate_tokens(text)))))


def _converse_usage(spec: _BedrockSpec, ctx: _Context, text: str) -> JSONDict:
    prompt, completion = _counts(spec, ctx, text)
    usage: JSONDict = {"inputTokens": prompt, "outputTokens": completion, "totalTokens": prompt + completion}
    usage.update({k: v for k, v in (spec.usage or {}).items() if k not in usage})
    return usage


def _tool_uses(spec: _BedrockSpec) -> list[JSONDict]:
    return [{"toolUseId": t.get("id", f"tooluse_{i}"), "name": t["name"], "input": dict(t.get("input") or {})}
            for i, t in enumerate(spec.tool_uses or ())]


def _render_converse(spec: _BedrockSpec, ctx: _Context) -> _Reply:
    pieces = _pieces(spec, ctx)
    text = "".join(pieces)
    uses = _tool_uses(spec)
    stop = spec.stop_reason or ("tool_use" if uses else "end_turn")
    if ctx.request.route == BEDROCK_CONVERSE_STREAM:
        events = [_event("messageStart", {"role": "assistant"})]
        index = 0
        if spec.reasoning:
            events.append(_event("contentBlockDelta", {"contentBlockIndex": index,
                                                       "delta": {"reasoningContent": {"text": spec.reasoning}}}))
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if pieces:
            events += [_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": p}}) for p in pieces]
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        for use in uses:
            events.append(_event("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            arguments = json.dumps(use["input"])
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                events.append(_event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}))
            events.append(_event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        events.append(_event("messageStop", {"stopReason": stop}))
        events.append(_event("metadata", {"usage": _converse_usage(spec, ctx, text), "metrics": {"latencyMs": 12}}))
        return _stream_reply(spec, events)
    content: list[JSONDict] = []
    if spec.reasoning:
        content.append({"reasoningContent": {"reasoningText": {"text": spec.reasoning}}})
    if text:
        content.append({"text": text})
    content += [{"toolUse": use} for use in uses]
    return _json_reply(200, {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
                             "usage": _converse_usage(spec, ctx, text), "metrics": {"latencyMs": 12}})


def _stream_reply(spec: _BedrockSpec, events: list[bytes]) -> _SseReply:
    if spec.error_after is not None:
        events = [*events[: spec.error_after], _stream_error(spec.error_after)]
    return _SseReply(events=events, headers=[], hold_after=spec.hold_after, content_type=EVENT_STREAM)


def _family(model: str) -> str:
    name = model.split(":")[0].lower()
    name = name.split(".", 1)[1] if name.split(".", 1)[0] in ("us", "eu", "apac", "global") else name  # inference profiles
    for family in ("anthropic", "amazon.titan-embed", "amazon.titan", "meta", "cohere"):
        if name.startswith(family):
            return family
    return "anthropic"


def _invoke_body(spec: _BedrockSpec, ctx: _Context, family: str, text: str) -> JSONDict:
    prompt, completion = _counts(spec, ctx, text)
    if family == "amazon.titan-embed":
        return {"embedding": _deterministic_vector(_prompt_text(ctx.body), 8), "inputTextTokenCount": prompt}
    if family == "amazon.titan":
        return {"inputTextTokenCount": prompt, "results": [
            {"tokenCount": completion, "outputText": text, "completionReason": "FINISH"}]}
    if family == "meta":
        return {"generation": text, "prompt_token_count": prompt, "generation_token_count": completion,
                "stop_reason": "stop"}
    if family == "cohere":
        return {"response_id": ctx.new_id("r"), "text": text, "generation_id": ctx.new_id("g"), "chat_history": [],
                "finish_reason": "COMPLETE", "meta": {"billed_units": {"input_tokens": prompt, "output_tokens": completion}}}
    content: list[JSONDict] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": u["toolUseId"], "name": u["name"], "input": u["input"]} for u in _tool_uses(spec)]
    return {"id": ctx.new_id("msg_bdrk_"), "type": "message", "role": "assistant", "model": _model_of(ctx),
            "content": content, "stop_reason": spec.stop_reason or ("tool_use" if spec.tool_uses else "end_turn"),
            "stop_sequence": None, "usage": {"input_tokens": prompt, "output_tokens": completion}}


def _invoke_chunks(spec: _BedrockSpec, ctx: _Context, family: str, pieces: list[str]) -> list[JSONDict]:
    text = "".join(pieces)
    prompt, completion = _counts(spec, ctx, text)
    if family == "amazon.titan":
        chunks = [{"outputText": p, "index": 0, "totalOutputTextTokenCount": None, "completionReason": None,
                   "inputTextTokenCount": prompt if i == 0 else None} for i, p in enumerate(pieces)]
        chunks[-1].update(totalOutputTextTokenCount=completion, completionReason="FINISH")
    elif family == "meta":
        chunks = [{"generation": p, "prompt_token_count": prompt if i == 0 else None, "generation_token_count": i + 1,
                   "stop_reason": None} for i, p in enumerate(pieces)]
        chunks[-1]["stop_reason"] = "stop"
    elif family == "cohere":
        chunks = [{"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces]
        chunks.append({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
                       "response": {"text": text, "finish_reason": "COMPLETE"}})
    else:
        chunks = [
            {"type": "message_start", "message": {"id": ctx.new_id("msg_bdrk_"), "type": "message", "role": "assistant",
                                                  "model": _model_of(ctx), "content": [], "stop_reason": None,
                                                  "usage": {"input_tokens": prompt, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in pieces),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": completion}},
            {"type": "message_stop"},
        ]
    chunks[-1]["amazon-bedrock-invocationMetrics"] = {"inputTokenCount": prompt, "outputTokenCount": completion,
                                                      "invocationLatency": 20, "firstByteLatency": 5}
    return chunks


def _render_invoke(spec: _BedrockSpec, ctx: _Context) -> _Reply:
    family = _family(_model_of(ctx))
    pieces = _pieces(spec, ctx)
    if ctx.request.route == BEDROCK_INVOKE_STREAM:
        return _stream_reply(spec, [_chunk(c) for c in _invoke_chunks(spec, ctx, family, pieces)])
    text = "".join(pieces)
    prompt, completion = _counts(spec, ctx, text)
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(prompt), "X-Amzn-Bedrock-Output-Token-Count": str(completion)}
    return _json_reply(200, _invoke_body(spec, ctx, family, text), headers)


def _render(spec: _BedrockSpec, ctx: _Context) -> _Reply:
    if ctx.request.route in (BEDROCK_CONVERSE, BEDROCK_CONVERSE_STREAM):
        return _render_converse(spec, ctx)
    return _render_invoke(spec, ctx)


def _default_reply(ctx: _Context, embedding_dimensions: int) -> _Reply:
    del embedding_dimensions
    return _render(_BedrockSpec(), ctx)


WIRE = ProviderWire(
    "bedrock", frozenset(_OPERATIONS.values()), "", _error_body, _default_reply, _stream_error, route_of=_route_of,
)


class BedrockScripts(ServerCore):
    """The Bedrock part of :class:`tests._servers.llm.ScriptedLLMServer`: endpoint and ``enqueue_bedrock_*``."""

    @property
    def bedrock_endpoint_url(self) -> str:
        """For ``boto3.client("bedrock-runtime", endpoint_url=...)``."""
        return self.base_url

    def enqueue_bedrock(
        self,
        text: str | Sequence[str] | None = None,
        *,
        tool_uses: Sequence[Mapping[str, Any]] | None = None,
        reasoning: str | None = None,
        usage: Mapping[str, Any] | None = None,
        stop_reason: str | None = None,
        error_after: int | None = None,
        hold_after: int | None = None,
        route: str | None = None,
    ) -> None:
        """Queue one answer for the next Bedrock runtime call (of ``route``: one of the ``BEDROCK_*``).

        Rendered for the operation and model family the request asks for: Converse JSON or its event
        stream, or the family's ``invoke`` body or chunk stream.

        Args:
            text: the model's text (streamed in word-sized pieces; a list gives the exact pieces).
            tool_uses: ``[{"name", "input": {...}, "id"?}]`` (Converse and Anthropic).
            reasoning: a reasoning block before the answer (Converse).
            usage: ``inputTokens``/``outputTokens`` and extra Converse usage fields
                (``cacheReadInputTokens``, ``cacheWriteInputTokens``).
            error_after: streams: send this many events, then a ``modelStreamErrorException``.
            hold_after: streams: hold after this many events until :meth:`release_held_streams`.
        """
        spec = _BedrockSpec(text, tool_uses, reasoning, usage, stop_reason, error_after, hold_after)
        self._enqueue(lambda ctx: _render(spec, ctx), route=route, label="bedrock")
