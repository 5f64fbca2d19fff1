from __future__ import annotations

from enum import Enum


class TraceState(str, Enum):
    """State of a trace (proto ``TraceInfoV3.State``)."""

    STATE_UNSPECIFIED = "STATE_UNSPECIFIED"
    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"

    @classmethod
    def from_otel_status(cls, status_code: str) -> TraceState:
        return cls.ERROR if str(status_code).endswith("ERROR") else cls.OK


class TraceStatus(str, Enum):
    """Deprecated v2 trace status, kept readable for old code."""

    UNSPECIFIED = "TRACE_STATUS_UNSPECIFIED"
    OK = "OK"
    ERROR = "ERROR"
    IN_PROGRESS = "IN_PROGRESS"

    @classmethod
    def from_state(cls, state: TraceState) -> TraceStatus:
        return {
            TraceState.OK: cls.OK,
            TraceState.ERROR: cls.ERROR,
            TraceState.IN_PROGRESS: cls.IN_PROGRESS,
        }.get(state, cls.UNSPECIFIED)

    def to_state(self) -> TraceState:
        return {
            TraceStatus.OK: TraceState.OK,
            TraceStatus.ERROR: TraceState.ERROR,
            TraceStatus.IN_PROGRESS: TraceState.IN_PROGRESS,
        }.get(self, TraceState.STATE_UNSPECIFIED)
