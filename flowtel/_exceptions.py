"""flowtel's one exception tree. Everything flowtel raises into user code on purpose is a
:class:`FlowtelException`::

    FlowtelException                      read/management APIs; MLflow-style ``error_code``
    ├── ConfigError (also ValueError)     invalid configuration, raised at configure time
    ├── InvalidParameterError             a bad argument (INVALID_PARAMETER_VALUE, 400)
    │   └── exporters.local._filter.InvalidFilterError (also ValueError)
    ├── TraceNotFoundError                no such trace (RESOURCE_DOES_NOT_EXIST, 404)
    ├── integrations._registry.IntegrationNotInstalledError (also ModuleNotFoundError)
    └── exporters.local._store.StoreError  the embedded store's failures:
        TraceNotFoundError (also the one above), TagNotFoundError / AssessmentNotFoundError
        (also KeyError), InvalidArgumentError (also ValueError) > InvalidTraceError,
        SchemaVersionError

Tracing itself (decorators, spans) never raises into user code. Public names stay importable
where users find them (``flowtel.FlowtelException``, ``flowtel.ConfigError``,
``flowtel.tracing.ConfigError``, ...).
"""

from __future__ import annotations

__all__ = ["ConfigError", "FlowtelException", "InvalidParameterError", "TraceNotFoundError"]


class FlowtelException(Exception):
    """Raised by flowtel's read and management APIs (get_trace, search_traces, tags,
    assessments, configuration) with a message that says what went wrong and what to do.

    Tracing itself (decorators, spans) never raises into user code.

    Attributes:
        error_code: MLflow-style code, e.g. ``RESOURCE_DOES_NOT_EXIST``, ``INVALID_PARAMETER_VALUE``.
        http_status: The server's HTTP status when the error came from a server.
    """

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.http_status = http_status


class ConfigError(FlowtelException, ValueError):
    """Invalid configuration. The message says what to fix.

    Also a ``ValueError`` (what it was before the exception tree had one root).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_PARAMETER_VALUE")


class TraceNotFoundError(FlowtelException):
    def __init__(self, trace_id: str, detail: str = "") -> None:
        super().__init__(detail or f"Trace with ID '{trace_id}' not found.", "RESOURCE_DOES_NOT_EXIST", 404)
        self.trace_id = trace_id


class InvalidParameterError(FlowtelException):
    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_PARAMETER_VALUE", 400)
