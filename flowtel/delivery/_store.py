"""The read/modify side of a destination: what ``get_trace``, ``search_traces``, tags and
assessments talk to (the embedded store or an MLflow server)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowtel.entities import Assessment, Experiment, Trace


class TraceStore(abc.ABC):
    """Raise :class:`~flowtel._exceptions.FlowtelException` (or a subclass) on failure."""

    @abc.abstractmethod
    def get_trace(self, trace_id: str) -> Trace | None: ...

    @abc.abstractmethod
    def search_traces(
        self,
        *,
        experiment_ids: list[str] | None,
        filter_string: str | None,
        order_by: list[str] | None,
        max_results: int,
        page_token: str | None,
        include_spans: bool,
    ) -> tuple[list[Trace], str | None]: ...

    @abc.abstractmethod
    def set_trace_tag(self, trace_id: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_trace_tag(self, trace_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def create_assessment(self, assessment: Assessment) -> Assessment: ...

    @abc.abstractmethod
    def get_assessment(self, trace_id: str, assessment_id: str) -> Assessment: ...

    @abc.abstractmethod
    def update_assessment(self, trace_id: str, assessment_id: str, changes: dict[str, Any]) -> Assessment: ...

    @abc.abstractmethod
    def delete_assessment(self, trace_id: str, assessment_id: str) -> None: ...

    def delete_traces(self, experiment_id: str, trace_ids: list[str] | None = None,
                      max_timestamp_millis: int | None = None) -> int:
        """Delete traces of one experiment: by id, or all started at or before
        ``max_timestamp_millis``. Returns how many were deleted."""
        from flowtel._exceptions import FlowtelException

        raise FlowtelException(f"{type(self).__name__} cannot delete traces.")

    def close(self) -> None:
        return None


@runtime_checkable
class ExperimentRegistry(Protocol):
    """Where experiments are looked up and created (an MLflow server, or the local table)."""

    registry_key: str

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def create_experiment(self, name: str) -> str: ...
