"""The shared core of the scripted LLM endpoint: recording, replies, HTTP plumbing, the server.

Provider wire formats live next to it, one module each (``openai.py``, ``anthropic.py``): each
registers a :class:`ProviderWire` (its routes, error body, default answer, in-stream error event)
and adds its ``enqueue_<provider>_*`` methods as a mixin over :class:`ServerCore`. The server tests
construct, :class:`tests._servers.llm.ScriptedLLMServer`, is the composition of those mixins.

Depends on the standard library only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import itertools
import json
import math
import re
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
    "JSONDict",
    "ProviderWire",
    "RecordedRequest",
    "ServerCore",
    "StreamErrorMode",
    "canonical_route",
    "providers",
    "register_wire",
    "routes",
]


# --------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------



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
    content_type: str = "text/event-stream; charset=utf-8"  # AWS event streams: application/vnd.amazon.eventstream


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


@dataclasses.dataclass(frozen=True)
class ProviderWire:
    """One provider's wire format, as the core needs it.

    Attributes:
        name: Provider name (``openai``); ``<NAME>_BASE_URL`` on the command line.
        routes: The ``POST`` paths it answers (canonical, with ``/v1``).
        base_path: Path its SDK's ``base_url`` ends with (``/v1`` for OpenAI, empty for Anthropic).
        error_body: ``(status, message, error_type, code, request_id) -> JSON`` error in its format.
        default_reply: ``(ctx, embedding_dimensions) -> reply``: the echo answer of an empty script.
        stream_error: ``(events_sent) -> SSE bytes``: its in-stream error event.
        route_of: ``path -> route`` for a provider whose paths carry parameters (Gemini's
            ``/v1beta/models/{model}:generateContent``), or None: its routes are matched exactly.
    """

    name: str
    routes: frozenset[str]
    base_path: str
    error_body: Callable[[int, str | None, str | None, str | None, str], JSONDict]
    default_reply: Callable[[_Context, int], _Reply]
    stream_error: Callable[[int], bytes]
    route_of: Callable[[str], str | None] | None = None


_WIRES: dict[str, ProviderWire] = {}  # route -> wire
_PROVIDERS: list[ProviderWire] = []  # registration order; the first one answers unknown paths


def register_wire(wire: ProviderWire) -> ProviderWire:
    """Make the server answer ``wire``'s routes (``tests/_servers/llm/__init__.py`` registers each provider once)."""
    for route in wire.routes:
        _WIRES[route] = wire
    _PROVIDERS.append(wire)
    return wire


def routes() -> frozenset[str]:
    """Every route the server answers (``POST`` only)."""
    return frozenset(_WIRES)


def providers() -> list[ProviderWire]:
    """Every registered provider wire, in registration order."""
    return list(_PROVIDERS)


def _wire_for(route: str | None) -> ProviderWire:
    """The provider owning ``route``; unknown paths are answered in the first provider's format."""
    return _WIRES.get(route or "") or _PROVIDERS[0]


def canonical_route(path: str) -> str | None:
    """Map a request path to a registered route, tolerating a missing ``/v1`` and a trailing slash."""
    for wire in _PROVIDERS:
        if wire.route_of is not None:
            found = wire.route_of(path)
            if found is not None:
                return found
    clean = path.rstrip("/") or "/"
    if not clean.startswith("/v1/"):
        clean = "/v1" + clean
    return clean if clean in _WIRES else None


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


def _merge(defaults: JSONDict, override: Mapping[str, Any] | None) -> JSONDict:
    """Shallow-merge ``override`` into ``defaults``; nested dicts are merged one level deep."""
    result = dict(defaults)
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = {**result[key], **value}
        else:
            result[key] = value
    return result


# --------------------------------------------------------------------------------------------------
# Errors, tool calls and streams (shared by the providers)
# --------------------------------------------------------------------------------------------------


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
    payload = _wire_for(ctx.request.route).error_body(status, message, error_type, code, ctx.request_id)
    return _json_reply(status, payload, headers)


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
    wire = _WIRES.get(route)
    if wire is None:  # pragma: no cover - canonical_route only yields registered routes
        return _error_reply(ctx, 404, message=f"Unknown path {ctx.request.path}")
    return wire.default_reply(ctx, embedding_dimensions)


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    """Per-connection handler; all state lives on the owning :class:`ServerCore`."""

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
            payload = _wire_for(route).error_body(413, message, None, None, "req_rejected")
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
            self.send_header("Content-Type", reply.content_type)
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

    def __init__(self, address: tuple[str, int], owner: ServerCore) -> None:
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
# The server core
# --------------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


class ServerCore:
    """A loopback HTTP server answering registered provider routes from a script (no provider of its own).

    :class:`tests._servers.llm.ScriptedLLMServer` adds each provider's ``<provider>_base_url`` and
    ``enqueue_<provider>_*`` methods (its mixin in ``openai.py``, ``anthropic.py``...).

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
            raise ValueError(f"ServerCore binds to IPv4 loopback only, got host={host!r}")
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

    def start(self) -> ServerCore:
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

    def __enter__(self) -> ServerCore:
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
            raise RuntimeError("ServerCore is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

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
            raise ValueError(f"unknown route {route!r}; expected one of {sorted(routes())}")
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

    # -- provider-neutral enqueue helpers ---------------------------------------------------------

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
                framed, _SSE_DONE if done else None, error_after, "disconnect", headers, _wire_for(ctx.request.route).stream_error
            )

        self._enqueue(render, route=route, stream=True, label="sse")
