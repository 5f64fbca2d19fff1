"""JSON encoding primitives and the truncation markers shared by the serializer's converter
(:mod:`flowtel.tracing._serialize`) and its structure-aware fitter
(:mod:`flowtel.tracing._serialize_fit`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Union

#: A JSON-compatible value as produced by :func:`to_jsonable`.
Json = Union[dict[str, "Json"], list["Json"], str, int, float, bool, None]

_MORE_KEY: Final[str] = "..."


# --------------------------------------------------------------------------------------------------
# JSON encoding primitives
# --------------------------------------------------------------------------------------------------


def _reject(obj: object) -> object:
    """``default`` hook for the plain encoder: anything non-plain must take the slow path."""
    raise TypeError(f"not a plain JSON value: {type(obj).__name__}")


def _build_encoder() -> Callable[[object], str]:
    """Build a reusable MLflow-compatible encoder (ensure_ascii=False, default separators).

    ``json.dumps(..., ensure_ascii=False)`` constructs a new encoder on every call; reusing one C
    encoder object roughly halves the cost for small values. There is no circular-reference check
    (markers=None): the fast path pre-scan bounds depth, the slow path only encodes fresh trees, and a
    cycle introduced concurrently still ends in a RecursionError, which callers handle.
    """
    python_encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False, default=_reject)
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    c_encode_str = getattr(json.encoder, "c_encode_basestring", None)
    if c_make_encoder is None or c_encode_str is None:
        return python_encoder.encode
    try:
        c_encoder = c_make_encoder(None, _reject, c_encode_str, None, ": ", ", ", False, False, True)

        def encode(value: object) -> str:
            return "".join(c_encoder(value, 0))

        probe = {"a": [1, 2.5, None, True, "é"], "b": float("nan")}
        if encode(probe) != json.dumps(probe, ensure_ascii=False) or encode("x") != '"x"':
            return python_encoder.encode
        return encode
    except Exception:  # noqa: BLE001 - an unexpected interpreter: use the portable encoder
        return python_encoder.encode


_encode: Final = _build_encoder()
_encode_str: Final[Callable[[str], str]] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.py_encode_basestring
)


def _utf8_len(text: str) -> int:
    """UTF-8 size of ``text``; raises UnicodeEncodeError on lone surrogates."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# Markers ------------------------------------------------------------------------------------------


def _more_items_marker(count: int) -> str:
    return f"[... {count} more items]"


def _cut_suffix(cut: int, total: int) -> str:
    return f"...[truncated {cut} of {total} chars]"



def _unique_key(out: Mapping[str, Any], name: str, original: object) -> str:
    """Disambiguate keys that collide after conversion (``{1: .., "1": ..}``) instead of losing data."""
    if original is not None:
        candidate = f"{name} ({type(original).__name__})"
        if candidate not in out:
            return candidate
        name = candidate
    index = 2
    while f"{name} #{index}" in out:
        index += 1
    return f"{name} #{index}"
