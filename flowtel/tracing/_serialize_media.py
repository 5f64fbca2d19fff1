"""Binary content and base64 media in captured values: detected, sniffed for a content type,
and replaced by a readable marker (``"[binary image/png 123456 bytes]"``) or, when the capture
limits extract attachments, by an ``mlflow-attachment://`` reference to the parked bytes; see
"Binary data" in :mod:`flowtel.tracing._serialize`."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from flowtel import _attachments


def binary_marker(size: int, mime: str | None = None) -> str:
    """Readable stand-in for binary content, e.g. ``"[binary image/png 1234 bytes]"``."""
    return f"[binary {mime} {size} bytes]" if mime else f"[binary {size} bytes]"


def _media(size: int, mime: str | None, data: Callable[[], bytes], limits: Any) -> str:
    """The stand-in for media: an attachment reference when ``limits.extract_attachments`` (a
    :class:`~flowtel.tracing._serialize.CaptureLimits`; None: no extraction) and
    the content type is known (the bytes parked for the trace), else (bytes of unknown type, a
    payload that does not decode) a size marker."""
    if limits is not None and limits.extract_attachments and mime:
        cap = limits.max_attachment_bytes
        if cap and size > cap:
            return _attachments.too_large_marker(size, cap)
        try:
            payload = data()
        except (binascii.Error, ValueError):
            return binary_marker(size, mime)
        return _attachments.park(mime or "application/octet-stream", payload)
    return binary_marker(size, mime)


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, whitespace ignored."""
    compact = "".join(text.split()).translate(_URLSAFE_TO_STD)
    return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)


# Media --------------------------------------------------------------------------------------------

_MEDIA_MIN_CHARS: Final = 256  # key-based base64 detection threshold (~192 bytes decoded)
_BARE_DATA_MIN_CHARS: Final = 1024  # a "data" string this long needs no media hint key
_DATA_URI_RE: Final = re.compile(
    # Case-sensitive on purpose: the fast path looks for the literal ";base64," in its output.
    r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w.+-]+=[\w.+%-]*)*;base64,", re.ASCII
)
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/_\-\r\n]+={0,2}\s*", re.ASCII)
_MIME_HINT_KEYS: Final = ("media_type", "mime_type", "mimeType", "mediaType", "content_type")
_MAGIC: Final = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF", "application/pdf"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (8, b"WEBP", "image/webp"),
    (8, b"WAVE", "audio/wav"),
    (4, b"ftyp", "video/mp4"),
)


def _mime_from_magic(head: bytes) -> str | None:
    """Sniff a content type from the first bytes of a payload."""
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return None


def _sniff_base64(payload: str) -> str | None:
    """Content type of a base64 payload from its first decoded bytes."""
    head = payload[:24].translate(_URLSAFE_TO_STD)
    try:
        return _mime_from_magic(base64.b64decode(head[: len(head) - len(head) % 4]))
    except (binascii.Error, ValueError):
        return None


_URLSAFE_TO_STD: Final = str.maketrans("-_", "+/")


def _base64_decoded_size(payload: str) -> int:
    """Decoded size of base64 text without decoding it."""
    n = len(payload)
    if "\n" in payload or "\r" in payload or " " in payload:
        n -= payload.count("\n") + payload.count("\r") + payload.count(" ")
    stripped = payload.rstrip()
    padding = len(stripped) - len(stripped.rstrip("="))
    return max(0, n * 3 // 4 - padding)


def _data_uri_marker(text: str, limits: Any = None) -> str | None:
    """Marker for a ``data:<mime>;base64,...`` string, ``None`` if ``text`` is not one."""
    match = _DATA_URI_RE.match(text)
    if match is None:
        return None
    payload = text[match.end() :]
    mime = match["mime"] or _sniff_base64(payload)
    return _media(_base64_decoded_size(payload), mime.lower() if mime else None, lambda: _b64decode(payload), limits)


def _keyed_media_marker(key: str, text: str, source: Mapping[Any, Any],
                        limits: Any = None) -> str | None:
    """Marker for base64 media stored under a known key (``b64_json`` or a media ``data`` field)."""
    if len(text) < _MEDIA_MIN_CHARS:
        return None
    hint = _mime_hint(source)
    if key == "data" and hint is None and len(text) < _BARE_DATA_MIN_CHARS and not _is_base64_source(source):
        return None
    if _BASE64_RE.fullmatch(text) is None:
        return None
    mime = hint if hint and "/" in hint else _sniff_base64(text)
    return _media(_base64_decoded_size(text), mime, lambda: _b64decode(text), limits)


def _mime_hint(source: Mapping[Any, Any]) -> str | None:
    """A sibling content-type field (Anthropic ``media_type``, Gemini ``mime_type``, audio ``format``)."""
    try:
        for name in _MIME_HINT_KEYS:
            hint = source.get(name)
            if isinstance(hint, str):
                return hint
        fmt = source.get("format")
        if isinstance(fmt, str) and fmt.isalnum():
            return f"audio/{fmt}" if fmt in ("wav", "mp3", "flac", "ogg", "opus", "aac", "pcm16") else fmt
    except Exception:  # noqa: BLE001 - a hostile mapping only loses the hint
        return None
    return None


def _is_base64_source(source: Mapping[Any, Any]) -> bool:
    """Anthropic-style ``{"type": "base64", ...}`` source block."""
    try:
        return source.get("type") == "base64"
    except Exception:  # noqa: BLE001
        return False
