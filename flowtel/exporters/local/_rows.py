"""Trace and assessment dicts in and out of rows: validation and normalisation of what is
written (MLflow's ``Trace.to_dict()`` / ``Assessment.to_dictionary()`` forms) and rendering of
what is read back, so stored dicts equal what MLflow renders.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowtel.exporters.local import _filter as flt

__all__ = [
    "ASSESSMENT_KEY_ORDER",
    "INFO_KEY_ORDER",
    "PreparedAssessment",
    "PreparedTrace",
    "apply_assessment_changes",
    "dumps",
    "failure_key",
    "normalize_assessment",
    "current_time_ms",
    "order_keys",
    "prepare_assessment",
    "prepare_trace",
    "render_assessment",
    "safe_text",
]

ASSESSMENT_KEY_ORDER = (
    "assessment_id",
    "assessment_name",
    "trace_id",
    "span_id",
    "source",
    "create_time",
    "last_update_time",
    "feedback",
    "expectation",
    "rationale",
    "error",
    "metadata",
    "overrides",
    "valid",
    "issue",  # field 16: MessageToDict orders by field number
)
# MessageToDict emits proto fields by field number; execution_duration_ms is appended last.
INFO_KEY_ORDER = (
    "trace_id",
    "client_request_id",
    "trace_location",
    "request",
    "response",
    "request_time",
    "state",
    "trace_metadata",
    "assessments",
    "tags",
    "request_preview",
    "response_preview",
    "execution_duration_ms",
)
_DEFAULT_SOURCE_TYPE = {"feedback": "CODE", "expectation": "HUMAN", "issue": "LLM_JUDGE"}
_SURROGATES = re.compile("[\ud800-\udfff]")




@dataclass
class PreparedAssessment:
    assessment_id: str
    trace_id: str
    kind: str
    name: str
    value_json: str
    numeric_value: float | None
    valid: bool
    body: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (
            self.assessment_id,
            self.trace_id,
            self.kind,
            self.name,
            self.value_json,
            self.numeric_value,
            int(self.valid),
            dumps(self.body),
        )


@dataclass
class PreparedTrace:
    trace_id: str
    trace_row: tuple[Any, ...]
    tags: list[tuple[str, str, str]] = field(default_factory=list)
    metadata: list[tuple[str, str, str]] = field(default_factory=list)
    spans: list[tuple[Any, ...]] = field(default_factory=list)
    assessments: list[PreparedAssessment] = field(default_factory=list)


# --- small helpers ------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact-enough JSON that SQLite can store: lone surrogates (invalid UTF-8) are escaped,
    which still round-trips to the same Python string."""
    text = json.dumps(value, ensure_ascii=False)
    return text if _utf8_ok(text) else json.dumps(value)


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(text: str) -> str:
    """Tag/metadata strings go into plain TEXT columns: replace lone surrogates with U+FFFD."""
    return text if _utf8_ok(text) else _SURROGATES.sub("\ufffd", text)


def current_time_ms() -> int:
    """Now, in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000



def order_keys(d: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: d[k] for k in order if k in d}
    out.update((k, v) for k, v in d.items() if k not in out)
    return out


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping of str to str")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"{what} must map str to str; got {k!r}: {type(v).__name__}")
        out[safe_text(k)] = safe_text(v)
    return out


def _optional_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


# --- assessment normalization -------------------------------------------------------------------


def _proto_value(value: Any) -> Any:
    """What a value looks like after a trip through ``google.protobuf.Value`` (numbers are doubles),
    so stored dicts equal what MLflow's ``to_dict`` renders."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _proto_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_proto_value(v) for v in value]
    raise ValueError(f"assessment value of type {type(value).__name__} is not JSON-compatible")


def _normalize_expectation(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("expectation must be a mapping with 'value' or 'serialized_value'")
    if "serialized_value" in body and "value" not in body:
        serialized = body["serialized_value"]
        if not isinstance(serialized, Mapping) or not isinstance(serialized.get("value"), str):
            raise ValueError("expectation.serialized_value must have a JSON string 'value'")
        json.loads(serialized["value"])  # must be valid JSON: readers json.loads it
        return {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": serialized["value"]}}
    if "value" not in body:
        raise ValueError("expectation must have 'value' or 'serialized_value'")
    value = body["value"]
    # MLflow keeps only primitives in the proto Value; None, lists and dicts are JSON-serialized.
    if value is None or not isinstance(value, (bool, int, float, str)):
        return {"serialized_value": {"serialization_format": "JSON_FORMAT", "value": json.dumps(value)}}
    return {"value": _proto_value(value)}


def _normalize_feedback(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("feedback must be a mapping with 'value' (and optionally 'error')")
    out: dict[str, Any] = {"value": _proto_value(body.get("value"))}
    if body.get("error") is not None:
        if not isinstance(body["error"], Mapping):
            raise ValueError("feedback.error must be a mapping")
        out["error"] = dict(body["error"])
    return out


def _normalize_issue(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping) or not isinstance(body.get("issue_name"), str):
        raise ValueError("issue must be a mapping with a str 'issue_name'")
    return {"issue_name": body["issue_name"]}


_VALUE_NORMALIZERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "feedback": _normalize_feedback,
    "expectation": _normalize_expectation,
    "issue": _normalize_issue,
}


def _timestamp_field(value: Any, default_ms: int) -> str:
    return flt.format_timestamp_ms(default_ms if value is None else flt.parse_timestamp_ms(value))


def normalize_assessment(raw: Mapping[str, Any], trace_id: str, now_ms: int) -> dict[str, Any]:
    """An assessment dict in MLflow's ``Assessment.to_dictionary()`` form (proto field order,
    numbers as doubles, RFC 3339 times). ``valid`` is left out: the store tracks it."""
    if not isinstance(raw, Mapping):
        raise ValueError("an assessment must be a mapping")
    kinds = [k for k in ("feedback", "expectation", "issue") if raw.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError("an assessment needs exactly one of 'feedback', 'expectation' or 'issue'")
    name = raw.get("assessment_name")
    if not isinstance(name, str) or not name:
        raise ValueError("an assessment needs a non-empty str 'assessment_name'")
    kind = kinds[0]
    source = raw.get("source") or {}
    metadata = raw.get("metadata") or {}
    if not isinstance(source, Mapping) or not isinstance(metadata, Mapping):
        raise ValueError("an assessment's 'source' and 'metadata' must be mappings")
    body: dict[str, Any] = {
        "assessment_id": raw.get("assessment_id"),
        "assessment_name": name,
        "trace_id": trace_id,
        "span_id": raw.get("span_id"),
        "source": {
            "source_type": source.get("source_type") or _DEFAULT_SOURCE_TYPE[kind],
            "source_id": source.get("source_id") or "default",
        },
        "create_time": _timestamp_field(raw.get("create_time"), now_ms),
        "last_update_time": _timestamp_field(raw.get("last_update_time"), now_ms),
        kind: _VALUE_NORMALIZERS[kind](raw[kind]),
        "rationale": raw.get("rationale"),
        "error": raw.get("error"),
        "metadata": {str(k): str(v) for k, v in metadata.items()} or None,
        "overrides": raw.get("overrides") or None,
    }
    return {k: v for k, v in body.items() if v is not None}


def _deterministic_assessment_id(trace_id: str, body: Mapping[str, Any]) -> str:
    # Assessments shipped inside a trace without an id get one derived from their content, so a
    # retried write_traces() upserts them instead of adding duplicates.
    digest = hashlib.sha256((trace_id + "\0" + json.dumps(body, sort_keys=True)).encode()).hexdigest()
    return "a-" + digest[:32]


def prepare_assessment(body: dict[str, Any], valid: bool) -> PreparedAssessment:
    value = flt.assessment_value(body)
    kind = flt.assessment_kind(body) or ""
    return PreparedAssessment(
        assessment_id=body["assessment_id"],
        trace_id=body["trace_id"],
        kind=kind,
        name=body["assessment_name"],
        value_json=flt.assessment_value_json(body),
        numeric_value=flt.assessment_numeric_value(value) if kind != "issue" else None,
        valid=valid,
        body=body,
    )


def render_assessment(body_json: str, valid: int) -> dict[str, Any]:
    body = json.loads(body_json)
    body["valid"] = bool(valid)
    return order_keys(body, ASSESSMENT_KEY_ORDER)


# --- trace preparation --------------------------------------------------------------------------


def prepare_trace(trace: Any, now_ms: int) -> PreparedTrace:
    """Validate one ``Trace.to_dict()`` dict and turn it into rows. Raises ValueError."""
    if not isinstance(trace, Mapping) or not isinstance(trace.get("info"), Mapping):
        raise ValueError("expected a Trace.to_dict() mapping with an 'info' mapping")
    info = trace["info"]
    trace_id = info.get("trace_id")
    if not isinstance(trace_id, str) or not trace_id:
        raise ValueError("info.trace_id must be a non-empty str (v2 'request_id' dicts are not accepted)")
    if info.get("request_time") is None:
        raise ValueError("info.request_time is required")
    request_time = flt.parse_timestamp_ms(info["request_time"])
    duration = _optional_int(info.get("execution_duration_ms"), "info.execution_duration_ms")
    state = info.get("state", "STATE_UNSPECIFIED")
    if not isinstance(state, str):
        raise ValueError("info.state must be a str such as 'OK'")
    tags = _str_map(info.get("tags"), "info.tags")
    metadata = _str_map(info.get("trace_metadata"), "info.trace_metadata")
    client_request_id = info.get("client_request_id")
    stored_info = {k: v for k, v in info.items() if k not in ("tags", "assessments")}
    if metadata:
        stored_info["trace_metadata"] = metadata
    prepared = PreparedTrace(
        trace_id=trace_id,
        trace_row=(
            trace_id,
            flt.experiment_id_of(info),
            request_time,
            duration,
            request_time + (duration or 0),
            state,
            tags.get(flt.TRACE_NAME_TAG),
            client_request_id if isinstance(client_request_id, str) else None,
            metadata.get(flt.SOURCE_RUN_METADATA),
            dumps(stored_info),
        ),
        tags=[(trace_id, k, v) for k, v in tags.items()],
        metadata=[(trace_id, k, v) for k, v in metadata.items()],
    )
    prepared.spans = _prepare_spans(trace, trace_id)
    prepared.assessments = _prepare_trace_assessments(info.get("assessments"), trace_id, now_ms)
    return prepared


def _prepare_spans(trace: Mapping[str, Any], trace_id: str) -> list[tuple[Any, ...]]:
    data = trace.get("data") or {}
    spans = data.get("spans") if isinstance(data, Mapping) else None
    if spans is None:
        return []
    if not isinstance(spans, list):
        raise ValueError("data.spans must be a list")
    rows = []
    for ord_, span in enumerate(spans):
        if not isinstance(span, Mapping) or not isinstance(span.get("span_id"), str):
            raise ValueError(f"data.spans[{ord_}] must be a mapping with a str 'span_id'")
        rows.append(
            (
                trace_id,
                ord_,
                span["span_id"],
                span.get("parent_span_id"),
                span.get("name"),
                flt.span_type(span),
                flt.span_status_code(span),
                _optional_int(span.get("start_time_unix_nano"), f"data.spans[{ord_}].start_time_unix_nano"),
                dumps(span),
            )
        )
    return rows


def _prepare_trace_assessments(raw: Any, trace_id: str, now_ms: int) -> list[PreparedAssessment]:
    if not raw:
        return []
    if not isinstance(raw, list):
        raise ValueError("info.assessments must be a list")
    prepared = []
    for item in raw:
        body = normalize_assessment(item, trace_id, now_ms)
        body.setdefault("assessment_id", _deterministic_assessment_id(trace_id, body))
        body = order_keys(body, ASSESSMENT_KEY_ORDER)
        prepared.append(prepare_assessment(body, valid=item.get("valid") is not False))
    return prepared


def failure_key(trace: Any, index: int) -> str:
    info = trace.get("info") if isinstance(trace, Mapping) else None
    trace_id = info.get("trace_id") if isinstance(info, Mapping) else None
    return trace_id if isinstance(trace_id, str) and trace_id else f"#{index}"



def apply_assessment_changes(current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    updated = dict(current)
    kind = flt.assessment_kind(current)
    for value_kind in ("feedback", "expectation"):
        if changes.get(value_kind) is not None:
            if kind != value_kind:
                raise ValueError(f"cannot set a {value_kind} value on a {kind} assessment")
            updated[value_kind] = _VALUE_NORMALIZERS[value_kind](changes[value_kind])
    if changes.get("assessment_name") is not None:
        if not isinstance(changes["assessment_name"], str) or not changes["assessment_name"]:
            raise ValueError("assessment_name must be a non-empty str")
        updated["assessment_name"] = changes["assessment_name"]
    if changes.get("rationale") is not None:
        updated["rationale"] = str(changes["rationale"])
    if changes.get("metadata"):
        if not isinstance(changes["metadata"], Mapping):
            raise ValueError("metadata must be a mapping")
        merged = {**(current.get("metadata") or {}), **{str(k): str(v) for k, v in changes["metadata"].items()}}
        updated["metadata"] = merged
    updated["last_update_time"] = flt.format_timestamp_ms(current_time_ms())
    return order_keys(updated, ASSESSMENT_KEY_ORDER)
