"""JSON encoding of span attribute values (MLflow's encoding: one JSON string per value)."""

from __future__ import annotations

import json
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


def _fallback(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    return str(obj)
