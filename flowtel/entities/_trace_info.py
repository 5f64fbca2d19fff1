from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowtel.entities import _ids
from flowtel.entities._constants import (
    MAX_CHARS_IN_TRACE_INFO_METADATA,
    MAX_CHARS_IN_TRACE_INFO_TAGS_KEY,
    MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE,
    TraceMetadataKey,
)
from flowtel.entities._trace_location import TraceLocation
from flowtel.entities._trace_state import TraceState, TraceStatus

if TYPE_CHECKING:
    from flowtel.entities._assessment import Assessment


@dataclass
class TraceInfo:
    """Metadata of a trace: id, location, timing, state, previews, metadata, tags, assessments.

    Args:
        trace_id: ``tr-<32 hex>``.
        trace_location: Where the trace is stored.
        request_time: Start time in milliseconds since the epoch.
        state: :class:`TraceState`.
        request_preview: Root span inputs, possibly truncated.
        response_preview: Root span outputs, possibly truncated.
        client_request_id: An id from the caller's system.
        execution_duration: Duration in milliseconds.
        trace_metadata: Immutable string key/values.
        tags: Mutable string key/values.
        assessments: Feedback and expectations on this trace.
    """

    trace_id: str
    trace_location: TraceLocation
    request_time: int
    state: TraceState
    request_preview: str | None = None
    response_preview: str | None = None
    client_request_id: str | None = None
    execution_duration: int | None = None
    trace_metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    assessments: list[Assessment] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The MLflow ``TraceInfo.to_dict()`` form (proto JSON with snake_case names)."""
        d: dict[str, Any] = {"trace_id": self.trace_id}
        if self.client_request_id is not None:
            d["client_request_id"] = self.client_request_id
        d["trace_location"] = self.trace_location.to_dict()
        if self.request_preview is not None:
            d["request_preview"] = self.request_preview
        if self.response_preview is not None:
            d["response_preview"] = self.response_preview
        d["request_time"] = _ids.format_timestamp_ms(int(self.request_time))
        d["state"] = TraceState(self.state).value
        metadata = truncate_metadata(self.trace_metadata)
        if metadata:
            d["trace_metadata"] = metadata
        tags = truncate_tags(self.tags)
        if tags:
            d["tags"] = tags
        if self.assessments:
            d["assessments"] = [a.to_dictionary() for a in self.assessments]
        if self.execution_duration is not None:
            d["execution_duration_ms"] = int(self.execution_duration)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceInfo:
        """Parse a v3 dict (or a deprecated v2 dict with ``request_id``)."""
        if "request_id" in d:
            return cls._from_v2_dict(d)
        from flowtel.entities._assessment import Assessment

        location = d.get("trace_location")
        return cls(
            trace_id=d["trace_id"],
            trace_location=TraceLocation.from_dict(location) if location else
            TraceLocation.from_dict({"type": "TRACE_LOCATION_TYPE_UNSPECIFIED"}),
            request_time=_ids.parse_timestamp_ms(d["request_time"]) if d.get("request_time") else 0,
            state=TraceState(d.get("state") or TraceState.STATE_UNSPECIFIED),
            request_preview=d.get("request_preview"),
            response_preview=d.get("response_preview"),
            client_request_id=d.get("client_request_id"),
            execution_duration=d.get("execution_duration_ms"),
            trace_metadata=dict(d.get("trace_metadata") or {}),
            tags=dict(d.get("tags") or {}),
            assessments=[Assessment.from_dictionary(a) for a in d.get("assessments") or []],
        )

    @classmethod
    def _from_v2_dict(cls, d: dict[str, Any]) -> TraceInfo:
        tags = d.get("tags") or {}
        metadata = d.get("request_metadata") or {}
        if isinstance(tags, list):
            tags = {t["key"]: t["value"] for t in tags}
        if isinstance(metadata, list):
            metadata = {t["key"]: t["value"] for t in metadata}
        status = TraceStatus(d.get("status") or TraceStatus.UNSPECIFIED)
        return cls(
            trace_id=d["request_id"],
            trace_location=TraceLocation.from_experiment_id(str(d.get("experiment_id", "0"))),
            request_time=int(d.get("timestamp_ms") or 0),
            state=status.to_state(),
            execution_duration=d.get("execution_time_ms"),
            trace_metadata=dict(metadata),
            tags=dict(tags),
        )

    # -- v2 aliases ---------------------------------------------------------------------------
    @property
    def request_id(self) -> str:
        """Deprecated: use :attr:`trace_id`."""
        return self.trace_id

    @property
    def experiment_id(self) -> str | None:
        exp = self.trace_location.mlflow_experiment
        return exp.experiment_id if exp else None

    @property
    def request_metadata(self) -> dict[str, str]:
        """Deprecated: use :attr:`trace_metadata`."""
        return self.trace_metadata

    @property
    def timestamp_ms(self) -> int:
        return self.request_time

    @timestamp_ms.setter
    def timestamp_ms(self, value: int) -> None:
        self.request_time = value

    @property
    def execution_time_ms(self) -> int | None:
        return self.execution_duration

    @execution_time_ms.setter
    def execution_time_ms(self, value: int | None) -> None:
        self.execution_duration = value

    @property
    def status(self) -> TraceStatus:
        """Deprecated: use :attr:`state`."""
        return TraceStatus.from_state(self.state)

    @property
    def token_usage(self) -> dict[str, int] | None:
        """Aggregated token usage of the trace's LLM calls, or None."""
        usage: dict[str, int] | None = _json_metadata(self.trace_metadata.get(TraceMetadataKey.TOKEN_USAGE))
        return usage

    @property
    def cost(self) -> dict[str, float] | None:
        cost: dict[str, float] | None = _json_metadata(self.trace_metadata.get(TraceMetadataKey.COST))
        return cost


def _json_metadata(raw: str | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def truncate_metadata(d: dict[str, Any]) -> dict[str, str]:
    limit = MAX_CHARS_IN_TRACE_INFO_METADATA
    return {k[:limit]: str(v)[:limit] for k, v in d.items()}


def truncate_tags(d: dict[str, Any]) -> dict[str, str]:
    return {
        k[:MAX_CHARS_IN_TRACE_INFO_TAGS_KEY]: str(v)[:MAX_CHARS_IN_TRACE_INFO_TAGS_VALUE]
        for k, v in d.items()
    }
