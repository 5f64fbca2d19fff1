"""JSON encoding of span attribute values (MLflow's encoding: one JSON string per value)."""

from __future__ import annotations

import json
import json.encoder
from typing import Any


def dump_json(value: Any) -> str:
    """JSON string of ``value`` for a span attribute. Never raises."""
    try:
        return json.dumps(value, ensure_ascii=False, default=_fallback)
    except Exception:  # noqa: BLE001 - cycles and exotic objects must never break user code
        try:
            return json.dumps(repr(value), ensure_ascii=False)
        except Exception:  # noqa: BLE001 - a __repr__ that raises
            return json.dumps(f"<unserializable {type(value).__name__}>")


def load_json(raw: Any) -> Any:
    """Decode an attribute value; a value that is not JSON is returned as it is."""
    if not raw:
        return None
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return raw


# What ``json.dumps`` applies to every string (``ensure_ascii``, its default).
_ESCAPE_STRING = json.encoder.encode_basestring_ascii
# Control characters and DEL: escaped as \n, \u001f and the like.
_ASCII_CONTROL = bytes(range(0x20)) + b"\x7f"


def _escaped_len(text: str) -> int:
    """``len(_ESCAPE_STRING(text))``: the quoted text, escapes included.

    Long ASCII text without control characters (JSON payloads) grows by one backslash per
    quote and per backslash; counting them is cheaper than building the escaped copy.
    """
    if len(text) > 256 and text.isascii():
        data = text.encode("ascii")
        if len(data.translate(None, _ASCII_CONTROL)) == len(data):
            return len(data) + data.count(b'"') + data.count(b"\\") + 2
    return len(_ESCAPE_STRING(text))


def json_len(value: Any) -> int:
    """``len(json.dumps(value))``, computed without encoding for scalars and string dicts.

    ``json.dumps`` output is ASCII, so this is also its length in UTF-8 bytes (MLflow's sizes).
    """
    kind = type(value)
    if kind is str:
        return _escaped_len(value)
    if kind is int:
        return len(int.__repr__(value))
    if value is None:
        return 4
    if kind is dict and value:
        try:
            keys, values = "".join(value), "".join(value.values())
        except TypeError:  # a key or value that is not a string
            return len(dumps_default(value))
        # Escaping works character by character, so escaping the joined keys (values) gives the
        # total length of escaping each one, less the quotes of n - 1 strings. With the ": "
        # after each key, the ", " between items and the braces: {"k": "v", ...}.
        n = len(value)
        return _escaped_len(keys) + _escaped_len(values) + 8 * n - 4
    return len(dumps_default(value))


def _default_dumps() -> Any:
    """``json.dumps`` with every option at its default, minus the encoder it builds per call.

    ``json.dumps(obj)`` goes through ``JSONEncoder.iterencode``, which makes a new C encoder
    each time; for the small dicts measured per trace (size statistics) that is most of the cost.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    escape = getattr(json.encoder, "c_encode_basestring_ascii", None)
    if make is None or escape is None:
        return json.dumps
    try:
        encoder = make(None, json.JSONEncoder().default, escape, None, ": ", ", ", False, False, True)

        def dumps(value: Any) -> str:
            return "".join(encoder(value, 0))

        probe = {"a": [1, 2.5, None, True, "é\n"], "b": {"c": "d"}}
        return dumps if dumps(probe) == json.dumps(probe) else json.dumps
    except Exception:  # noqa: BLE001 - an unexpected interpreter: the standard function
        return json.dumps


# ``json.dumps(value)`` for values of plain JSON types (dict, list, str, int, float, bool, None).
dumps_default = _default_dumps()


def _fallback(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    return str(obj)
