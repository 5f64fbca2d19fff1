"""Trace attachments: binary media (images, audio, PDFs) taken out of span inputs and outputs and
kept next to the trace, as MLflow does (``mlflow-attachment://`` references, uploaded to
``<artifactLocation>/attachments/<id>``, rendered inline by the MLflow UI).

The encoder meets the bytes where it would otherwise write a ``"[binary ...]"`` marker, but it
does not know which trace the value belongs to (it runs on the caller's thread, for any span).
So it parks the bytes here under a fresh id and writes a reference whose ``trace_id`` is a
placeholder; when the trace is finalised on the delivery worker, :func:`bind` takes the
attachments its spans reference and writes the real trace id into those references. Parked
bytes are bounded (:data:`_MAX_PARKED_BYTES`): past it the oldest are dropped, counted and
warned about (their references then point at nothing), so memory never grows without bound.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Attachment", "PENDING_TRACE_ID", "REF_SCHEME", "attachments_of", "bind", "dropped_count",
           "has_pending_refs", "park", "parse_ref", "ref", "set_attachments", "too_large_marker", "with_trace_id"]

REF_SCHEME: Final = "mlflow-attachment://"
PENDING_TRACE_ID: Final = "flowtel-pending-trace"
_PENDING_QUERY: Final = "trace_id=" + PENDING_TRACE_ID
_MAX_PARKED_BYTES: Final = 256 * 1024 * 1024
_REF_ID_RE: Final = re.compile(r"mlflow-attachment://([0-9a-f-]{36})\?[^\"\\]*" + re.escape(_PENDING_QUERY))
_logger = logging.getLogger("flowtel")


@dataclass(frozen=True)
class Attachment:
    """One attachment: its id (the reference's host part), content type and bytes."""

    attachment_id: str
    content_type: str
    data: bytes


def ref(attachment_id: str, content_type: str, size: int, trace_id: str = PENDING_TRACE_ID) -> str:
    """``mlflow-attachment://<id>?content_type=<mime>&trace_id=<trace id>&size=<n>`` (MLflow's form)."""
    query = urllib.parse.urlencode({"content_type": content_type, "trace_id": trace_id, "size": str(size)})
    return f"{REF_SCHEME}{attachment_id}?{query}"


def parse_ref(text: str) -> dict[str, Any] | None:
    """``{"attachment_id", "content_type", "trace_id", "size"}`` of a reference, else None."""
    parsed = urllib.parse.urlparse(text)
    if parsed.scheme != "mlflow-attachment" or not parsed.hostname:
        return None
    params = urllib.parse.parse_qs(parsed.query)
    size = params.get("size", [""])[0]
    return {
        "attachment_id": parsed.hostname,
        "content_type": params.get("content_type", [None])[0],
        "trace_id": params.get("trace_id", [None])[0],
        "size": int(size) if size.isdigit() else None,
    }


def too_large_marker(size: int, limit: int) -> str:
    """What replaces media over the size cap (MLflow's wording)."""
    return f"[Attachment too large: {size} bytes exceeds {limit} bytes limit]"


# -- parking (encoder, caller's thread) -> binding (finalize, delivery worker) -------------------
_lock = threading.Lock()
_parked: OrderedDict[str, Attachment] = OrderedDict()
_parked_bytes = 0
_dropped = 0


def park(content_type: str, data: bytes) -> str:
    """Keep ``data`` until its trace is finalised; returns the (placeholder) reference."""
    global _parked_bytes, _dropped
    attachment = Attachment(str(uuid.uuid4()), content_type, bytes(data))
    evicted = 0
    with _lock:
        _parked[attachment.attachment_id] = attachment
        _parked_bytes += len(attachment.data)
        while _parked_bytes > _MAX_PARKED_BYTES and len(_parked) > 1:
            _, old = _parked.popitem(last=False)
            _parked_bytes -= len(old.data)
            evicted += 1
        _dropped += evicted
    if evicted:
        _logger.warning(
            "flowtel dropped %d trace attachment(s): more than %d MiB of media waited for their traces "
            "to finish. Their references in span inputs/outputs point at nothing.",
            evicted, _MAX_PARKED_BYTES // (1024 * 1024),
        )
    return ref(attachment.attachment_id, content_type, len(attachment.data))


def dropped_count() -> int:
    return _dropped


def bind(raw_values: Iterable[str], trace_id: str) -> dict[str, Attachment]:
    """The parked attachments referenced in ``raw_values`` (taken out of the parking)."""
    found: dict[str, Attachment] = {}
    with _lock:
        global _parked_bytes
        for raw in raw_values:
            for attachment_id in _REF_ID_RE.findall(raw):
                attachment = _parked.pop(attachment_id, None)
                if attachment is not None:
                    _parked_bytes -= len(attachment.data)
                    found[attachment_id] = attachment
    return found


def with_trace_id(raw: str, trace_id: str) -> str:
    """``raw`` with the placeholder trace id of its references replaced by ``trace_id``."""
    return raw.replace(_PENDING_QUERY, "trace_id=" + urllib.parse.quote_plus(trace_id))


def has_pending_refs(raw: str) -> bool:
    return _PENDING_QUERY in raw


# -- on a finished trace ---------------------------------------------------------------------------
_ATTRIBUTE = "attachments"


def attachments_of(trace: Any) -> dict[str, Attachment]:
    """The attachments of a finalised trace, by id (empty for most traces)."""
    found: dict[str, Attachment] = getattr(trace, _ATTRIBUTE, None) or {}
    return found


def set_attachments(trace: Any, attachments: dict[str, Attachment]) -> None:
    setattr(trace, _ATTRIBUTE, attachments)
