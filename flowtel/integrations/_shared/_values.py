"""Values as integrations record them: credentials scrubbed, SDK objects as JSON data.

Credential keys are recognised by ``flowtel._redaction.is_sensitive_key``, the one rule flowtel has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowtel._redaction import REDACTED, is_sensitive_key

__all__ = [
    "REDACTED",
    "field_of",
    "is_sensitive_key",
    "jsonable",
    "omit_unset",
    "parse_json_object",
    "scrub_kwargs",
    "scrub_mapping",
]

_HEADER_KWARGS = frozenset({"extra_headers", "default_headers", "headers", "extra_query", "default_query"})


def scrub_mapping(value: Any, depth: int = 4) -> Any:
    """A copy of ``value`` with credential-named keys redacted in nested mappings and lists."""
    if depth <= 0:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if v is not None else None) if is_sensitive_key(k) else scrub_mapping(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_mapping(v, depth - 1) for v in value]
    return value


def scrub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """SDK call kwargs as recorded: credentials redacted, header/query mappings scrubbed.

    Message content is left untouched (and unconverted) so recording stays cheap.
    """
    clean: dict[str, Any] = {}
    for key, value in kwargs.items():
        if is_sensitive_key(key):
            clean[key] = REDACTED if value is not None else None
        elif key in _HEADER_KWARGS and isinstance(value, Mapping):
            clean[key] = scrub_mapping(value)
        elif isinstance(value, type):
            clean[key] = str(value)  # e.g. a pydantic response_format class, shown as MLflow does
        else:
            clean[key] = value
    return clean


def jsonable(value: Any) -> Any:
    """A pydantic SDK object as plain JSON data (``model_dump(mode="json")``, without pydantic's
    serializer warnings for generic fields); anything else unchanged."""
    dump = getattr(value, "model_dump", None)
    if dump is None or isinstance(value, type):
        return value
    try:
        return dump(mode="json", warnings=False)
    except TypeError:  # pydantic v1-style models
        return dump()


def omit_unset(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Drop SDK sentinels (``NOT_GIVEN`` / ``omit``): they mean "argument not supplied"."""
    return {k: v for k, v in kwargs.items() if type(v).__name__ not in ("NotGiven", "Omit")}


def field_of(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def parse_json_object(text: str) -> Any:
    """Tool-call arguments accumulated from deltas: the JSON value, or the raw text if incomplete."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text
