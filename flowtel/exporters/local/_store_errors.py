"""The local trace store's exceptions (all :class:`~flowtel._exceptions.FlowtelException`)."""

from __future__ import annotations

from flowtel import _exceptions

__all__ = [
    "AssessmentNotFoundError",
    "InvalidArgumentError",
    "InvalidTraceError",
    "SchemaVersionError",
    "StoreError",
    "TagNotFoundError",
    "TraceNotFoundError",
]

class StoreError(_exceptions.FlowtelException):
    """Any failure of the local trace store (a :class:`FlowtelException`)."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", http_status: int | None = 500) -> None:
        # explicit base call: subclasses also inherit from exceptions with other signatures
        _exceptions.FlowtelException.__init__(self, message, error_code, http_status)

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message


class TraceNotFoundError(StoreError, _exceptions.TraceNotFoundError):
    """No trace with this id in the store."""

    def __init__(self, trace_id: str) -> None:
        StoreError.__init__(self, f"Trace with ID '{trace_id}' not found.", "RESOURCE_DOES_NOT_EXIST", 404)
        self.trace_id = trace_id


class TagNotFoundError(StoreError, KeyError):
    """The trace exists but has no tag with this key."""

    def __init__(self, trace_id: str, key: str) -> None:
        super().__init__(f"No tag with key '{key}' on trace '{trace_id}'.", "RESOURCE_DOES_NOT_EXIST", 404)
        self.trace_id, self.key = trace_id, key


class AssessmentNotFoundError(StoreError, KeyError):
    """The trace exists but has no assessment with this id."""

    def __init__(self, trace_id: str, assessment_id: str) -> None:
        super().__init__(
            f"Assessment with ID '{assessment_id}' not found for trace '{trace_id}'.", "RESOURCE_DOES_NOT_EXIST", 404
        )
        self.trace_id, self.assessment_id = trace_id, assessment_id


class InvalidArgumentError(StoreError, ValueError):
    """A bad argument: max_results, page token, assessment dict, delete criteria..."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_PARAMETER_VALUE", 400)


class InvalidTraceError(InvalidArgumentError):
    """Some trace dicts given to ``write_traces`` were malformed. The others were written.

    Attributes:
        failures: Maps the trace id (or ``#<index>`` when there is none) to what is wrong.
        written: How many distinct traces of the batch were stored.
    """

    def __init__(self, failures: dict[str, str], written: int) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} trace(s) not stored, {written} stored. {detail}{more}")
        self.failures, self.written = failures, written


class SchemaVersionError(StoreError):
    """The file was written by a newer flowtel (unknown schema version) or is not a trace store."""

