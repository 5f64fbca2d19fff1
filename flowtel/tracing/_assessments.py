"""Assessments (feedback, expectations) on traces: the MLflow fluent API.

An assessment logged on a trace that is still in progress stays with the trace in memory and
is delivered with it (inside StartTraceV3 for an MLflow server, in the same transaction for
the embedded store). Otherwise it goes straight to the configured store, after any delivery of
that trace still in flight has finished.

Every function here that talks to a store blocks on it (an HTTP round trip for an MLflow
server) and raises :class:`~flowtel.FlowtelException` with the store's message on failure.
"""

from __future__ import annotations

import logging
from typing import Any

from flowtel._exceptions import InvalidParameterError
from flowtel.entities import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    Expectation,
    Feedback,
)
from flowtel.entities._assessment import (
    FeedbackValueType,
    assessment_update_fields,
)
from flowtel.entities._constants import NO_OP_SPAN_TRACE_ID
from flowtel.tracing._engine import record_of, settle, trace_store

__all__ = [
    "delete_assessment",
    "get_assessment",
    "log_assessment",
    "log_expectation",
    "log_feedback",
    "override_feedback",
    "update_assessment",
]

_logger = logging.getLogger("flowtel")


def log_assessment(trace_id: str, assessment: Assessment) -> Assessment:
    """Attach a :class:`~flowtel.Feedback` or :class:`~flowtel.Expectation` to a trace.

    On a trace still in progress the assessment is kept with it and delivered with the trace
    (no I/O, no ``assessment_id`` until stored); otherwise it is stored at once (blocking).

    Args:
        trace_id: The trace.
        assessment: The assessment; its ``trace_id`` is set to ``trace_id``.

    Returns:
        The assessment as stored (with its ``assessment_id``), or the given one when it is
        kept with an in-progress trace.

    Raises:
        FlowtelException: the trace does not exist, or the store failed.
    """
    if not isinstance(assessment, Assessment):
        raise InvalidParameterError(
            f"log_assessment() takes a Feedback or Expectation, got {type(assessment).__name__}."
        )
    assessment.trace_id = trace_id
    if not trace_id or trace_id == NO_OP_SPAN_TRACE_ID:
        _logger.debug("Skipping assessment logging for a trace that is not recorded.")
        return assessment
    record = record_of(trace_id)
    if record is not None:
        record.assessments.append(assessment)
        return assessment
    settle(trace_id)
    created: Assessment = trace_store().create_assessment(assessment)
    return created


def log_feedback(
    *,
    trace_id: str,
    name: str = "feedback",
    value: FeedbackValueType | None = None,
    source: AssessmentSource | None = None,
    error: Exception | AssessmentError | None = None,
    rationale: str | None = None,
    metadata: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> Assessment:
    """Log feedback (e.g. a judge's score) on a trace. Keyword arguments only.

    ``source`` defaults to a ``CODE`` source. Give ``value`` or ``error``. Blocking behaviour
    and errors as :func:`log_assessment`.
    """
    feedback = Feedback(
        name=name, value=value, error=error, source=source, rationale=rationale,
        metadata=metadata, span_id=span_id,
    )
    return log_assessment(trace_id, feedback)


def log_expectation(
    *,
    trace_id: str,
    name: str,
    value: Any,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> Assessment:
    """Log an expectation (ground truth) on a trace. Keyword arguments only.

    ``value`` may be any JSON-serialisable value; ``source`` defaults to a ``HUMAN`` source.
    Blocking behaviour and errors as :func:`log_assessment`.
    """
    expectation = Expectation(name=name, value=value, source=source, metadata=metadata, span_id=span_id)
    return log_assessment(trace_id, expectation)


def get_assessment(trace_id: str, assessment_id: str) -> Assessment:
    """One stored assessment. Blocks on the store.

    Raises:
        FlowtelException: unknown trace or assessment (``RESOURCE_DOES_NOT_EXIST``).
    """
    settle(trace_id)
    found: Assessment = trace_store().get_assessment(trace_id, assessment_id)
    return found


def update_assessment(trace_id: str, assessment_id: str, assessment: Assessment) -> Assessment:
    """Change a stored assessment in place: its name, value, rationale and metadata are taken
    from ``assessment`` (a rationale of None keeps the current one; metadata is merged).
    Blocks on the store.

    Returns:
        The updated assessment.

    Raises:
        FlowtelException: unknown trace or assessment, or a value of the other kind.
    """
    for field_name, value in (("assessment_id", assessment_id), ("trace_id", trace_id)):
        if not isinstance(value, str):  # as MLflow's protobuf string fields refuse them
            raise TypeError(f"`{field_name}` must be a string, got {type(value).__name__}: {value!r}")
    changes, _ = assessment_update_fields(
        name=assessment.name, expectation=assessment.expectation, feedback=assessment.feedback,
        rationale=assessment.rationale, metadata=assessment.metadata,
    )
    settle(trace_id)
    updated: Assessment = trace_store().update_assessment(trace_id, assessment_id, changes)
    return updated


def delete_assessment(trace_id: str, assessment_id: str) -> None:
    """Delete a stored assessment; an assessment it overrode becomes valid again. Deleting an
    unknown assessment of an existing trace does nothing. Blocks on the store.

    Raises:
        FlowtelException: unknown trace, or the store failed.
    """
    settle(trace_id)
    trace_store().delete_assessment(trace_id, assessment_id)


def override_feedback(
    *,
    trace_id: str,
    assessment_id: str,
    value: FeedbackValueType,
    rationale: str | None = None,
    source: AssessmentSource | None = None,
    metadata: dict[str, Any] | None = None,
) -> Assessment:
    """Replace a feedback with a corrected one: a new feedback that ``overrides`` the old one,
    which is kept but marked invalid. Blocks on the store.

    Returns:
        The new feedback.

    Raises:
        InvalidParameterError: the assessment is not a feedback.
        FlowtelException: unknown trace or assessment.
    """
    old = get_assessment(trace_id, assessment_id)
    if not isinstance(old, Feedback):
        raise InvalidParameterError(f"The assessment with ID {assessment_id} is not a feedback assessment.")
    new = Feedback(
        name=old.name, span_id=old.span_id, value=value, rationale=rationale, source=source,
        metadata=metadata, overrides=old.assessment_id,
    )
    return log_assessment(trace_id, new)
