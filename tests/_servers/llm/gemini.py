"""The Gemini API (``google-genai``) wire format of the scripted LLM endpoint.

``POST /v1beta/models/{model}:generateContent`` (JSON), ``:streamGenerateContent?alt=sse`` (SSE,
``data: {GenerateContentResponse}`` per chunk) and ``:batchEmbedContents``; errors as
``{"error": {"code", "message", "status"}}``. Point ``genai.Client(http_options={"base_url": ...})``
at :attr:`GeminiScripts.gemini_base_url`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from tests._servers.llm._core import (
    JSONDict,
    ProviderWire,
    ServerCore,
    StreamErrorMode,
    _check_error_after,
    _Context,
    _deterministic_vector,
    _dumps,
    _echo,
    _estimate_tokens,
    _finish_stream,
    _json_reply,
    _merge,
    _Reply,
    _split_text,
    _sse_data,
)

__all__ = [
    "GEMINI_EMBED",
    "GEMINI_GENERATE",
    "GEMINI_STREAM",
    "GeminiScripts",
    "WIRE",
]

GEMINI_GENERATE = "/v1beta/models/{model}:generateContent"
GEMINI_STREAM = "/v1beta/models/{model}:streamGenerateContent"
GEMINI_EMBED = "/v1beta/models/{model}:batchEmbedContents"
_METHODS = {"generateContent": GEMINI_GENERATE, "streamGenerateContent": GEMINI_STREAM,
            "batchEmbedContents": GEMINI_EMBED}
_PATH_RE = re.compile(r"^/v1[a-z0-9]*/models/[^/]+:(generateContent|streamGenerateContent|batchEmbedContents)$")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def _route_of(path: str) -> str | None:
    match = _PATH_RE.match(path.rstrip("/"))
    return _METHODS[match.group(1)] if match else None


def _model_of(ctx: _Context) -> str:
    match = re.search(r"/models/([^/:]+):", ctx.request.path)
    return match.group(1) if match else "gemini-2.0-flash"


def _error_body(status: int, message: str | None, error_type: str | None, code: str | None, request_id: str) -> JSONDict:
    del code, request_id
    return {"error": {"code": status, "message": message or "scripted error",
                      "status": error_type or _STATUS.get(status, "UNKNOWN")}}


def _contents_text(body: JSONDict) -> str:
    texts: list[str] = []
    for content in body.get("contents") or ():
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts = [str(p.get("text")) for p in content.get("parts") or () if isinstance(p, dict) and p.get("text")]
    return " ".join(texts)


@dataclasses.dataclass(frozen=True)
class _GeminiSpec:
    text: str | Sequence[str] | None = None
    function_calls: Sequence[Mapping[str, Any]] | None = None
    thoughts: str | None = None
    usage: Mapping[str, Any] | None = None
    model_version: str | None = None
    finish_reason: str = "STOP"
    error_after: int | None = None
    error_mode: StreamErrorMode = "disconnect"
    hold_after: int | None = None


def _usage(spec: _GeminiSpec, ctx: _Context, text: str) -> JSONDict:
    prompt = max(1, _estimate_tokens(_contents_text(ctx.body)))
    candidates = max(1, _estimate_tokens(text))
    usage = _merge({"promptTokenCount": prompt, "candidatesTokenCount": candidates}, spec.usage)
    usage.setdefault("totalTokenCount", usage["promptTokenCount"] + usage["candidatesTokenCount"]
                     + usage.get("thoughtsTokenCount", 0))
    return usage


def _pieces(spec: _GeminiSpec, ctx: _Context) -> list[str]:
    if spec.text is None:
        return [] if spec.function_calls else _split_text(_echo(_contents_text(ctx.body)))
    return _split_text(spec.text) if isinstance(spec.text, str) else list(spec.text)


def _calls(spec: _GeminiSpec) -> list[JSONDict]:
    return [{"functionCall": {"name": c["name"], "args": dict(c.get("args") or {}), **({"id": c["id"]} if c.get("id") else {})}}
            for c in spec.function_calls or ()]


def _response(parts: list[JSONDict], spec: _GeminiSpec, ctx: _Context, *, finish: bool, usage: JSONDict | None) -> JSONDict:
    candidate: JSONDict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = spec.finish_reason
    payload: JSONDict = {"candidates": [candidate], "modelVersion": spec.model_version or _model_of(ctx),
                         "responseId": ctx.new_id("resp_")}
    if usage is not None:
        payload["usageMetadata"] = usage
    return payload


def _render_generate(spec: _GeminiSpec, ctx: _Context) -> _Reply:
    pieces = _pieces(spec, ctx)
    text = "".join(pieces)
    if ctx.request.route == GEMINI_STREAM:
        events: list[bytes] = []
        if spec.thoughts:
            events.append(_sse_data(_response([{"text": spec.thoughts, "thought": True}], spec, ctx, finish=False,
                                              usage=None)))
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1 and not spec.function_calls
            events.append(_sse_data(_response([{"text": piece}], spec, ctx, finish=last,
                                              usage=_usage(spec, ctx, text) if last else None)))
        if spec.function_calls:
            events.append(_sse_data(_response(_calls(spec), spec, ctx, finish=True, usage=_usage(spec, ctx, text))))
        reply = _finish_stream(events, None, spec.error_after, spec.error_mode, None, _stream_error)
        reply.hold_after = spec.hold_after
        return reply
    parts: list[JSONDict] = [{"text": spec.thoughts, "thought": True}] if spec.thoughts else []
    if text:
        parts.append({"text": text})
    parts.extend(_calls(spec))
    return _json_reply(200, _response(parts, spec, ctx, finish=True, usage=_usage(spec, ctx, text)))


def _render_embed(ctx: _Context, vectors: Sequence[Sequence[float]] | None, dimensions: int) -> _Reply:
    requests = ctx.body.get("requests") or []
    texts = [_dumps(r.get("content")) for r in requests if isinstance(r, dict)]
    values = [list(v) for v in vectors] if vectors is not None else [_deterministic_vector(t, dimensions) for t in texts]
    return _json_reply(200, {"embeddings": [{"values": v} for v in values]})


def _default_reply(ctx: _Context, embedding_dimensions: int) -> _Reply:
    if ctx.request.route == GEMINI_EMBED:
        return _render_embed(ctx, None, embedding_dimensions)
    return _render_generate(_GeminiSpec(), ctx)


def _stream_error(events_sent: int) -> bytes:
    del events_sent
    return _sse_data({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}})


WIRE = ProviderWire(
    "gemini", frozenset({GEMINI_GENERATE, GEMINI_STREAM, GEMINI_EMBED}), "", _error_body, _default_reply,
    _stream_error, route_of=_route_of,
)


class GeminiScripts(ServerCore):
    """The Gemini part of :class:`tests._servers.llm.ScriptedLLMServer`: base URL and ``enqueue_gemini_*``."""

    @property
    def gemini_base_url(self) -> str:
        """For ``genai.Client(http_options={"base_url": ...})``: the SDK adds ``/v1beta/models/...``."""
        return self.base_url

    def enqueue_gemini(
        self,
        text: str | Sequence[str] | None = None,
        *,
        function_calls: Sequence[Mapping[str, Any]] | None = None,
        thoughts: str | None = None,
        usage: Mapping[str, Any] | None = None,
        model_version: str | None = None,
        finish_reason: str = "STOP",
        error_after: int | None = None,
        error_mode: StreamErrorMode = "disconnect",
    ) -> None:
        """Queue one ``generateContent`` answer: JSON, or SSE chunks for ``streamGenerateContent``.

        Args:
            text: the model's text (streamed in word-sized pieces; a list gives the exact pieces).
                ``None`` without function calls: the default echo.
            function_calls: ``[{"name", "args": {...}, "id"?}]`` as ``functionCall`` parts.
            thoughts: a ``thought: true`` part before the answer (thinking models).
            usage: ``usageMetadata`` overrides (``thoughtsTokenCount``, ``cachedContentTokenCount``...).
            error_after: break the stream after this many SSE events.

        :meth:`enqueue_gemini_stream` also takes ``hold_after``: send that many events, then hold the
        stream open until :meth:`release_held_streams` (to cancel a reader while it waits).
        """
        _check_error_after(error_after, error_mode)
        spec = _GeminiSpec(text, function_calls, thoughts, usage, model_version, finish_reason, error_after, error_mode)
        self._enqueue(lambda ctx: _render_generate(spec, ctx), route=GEMINI_GENERATE, label="gemini")

    def enqueue_gemini_stream(self, text: str | Sequence[str] | None = None, **options: Any) -> None:
        """Like :meth:`enqueue_gemini`, for the next ``streamGenerateContent`` request."""
        error_after = options.get("error_after")
        _check_error_after(error_after, options.get("error_mode", "disconnect"))
        spec = _GeminiSpec(text, **options)
        self._enqueue(lambda ctx: _render_generate(spec, ctx), route=GEMINI_STREAM, label="gemini_stream")

    def enqueue_gemini_embeddings(self, vectors: Sequence[Sequence[float]] | None = None) -> None:
        """Queue one ``batchEmbedContents`` answer (``None``: a deterministic vector per request)."""
        dims = self.embedding_dimensions
        self._enqueue(lambda ctx: _render_embed(ctx, vectors, dims), route=GEMINI_EMBED, label="gemini_embeddings")
