"""Span events of the ``genai`` / ``both`` conventions: stream summaries and evaluation results.

* A streamed span records one ``mlflow.chunk.item.<i>`` event per chunk (MLflow's UI shows
  them). The assembled response already travels in the output messages, so with ``genai`` the
  chunks are replaced by one content-free ``flowtel.stream.first_chunk`` event (time to first
  chunk, number of chunk events); ``flowtel.stream.chunks`` on the span counts them all.
* Feedback and expectations delivered with a trace become the semconv's
  ``gen_ai.evaluation.result`` events on the span they assess (the root span for the trace).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from flowtel.exporters._otlp_proto import add_attributes

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

    from flowtel.entities import Assessment

__all__ = ["EVALUATION_EVENT", "STREAM_SUMMARY_EVENT", "assessments_by_span", "replace_chunk_events",
           "write_evaluation_events"]

EVALUATION_EVENT = "gen_ai.evaluation.result"
STREAM_SUMMARY_EVENT = "flowtel.stream.first_chunk"
_CHUNK_EVENT_PREFIX = "mlflow.chunk.item."  # integrations/_shared/_stream.py (not importable here)
_TRACE_LEVEL = ""


def replace_chunk_events(events: Any) -> None:
    """Replace a span's chunk events (a protobuf repeated field) by one summary event."""
    chunk_indices = [i for i, event in enumerate(events) if event.name.startswith(_CHUNK_EVENT_PREFIX)]
    if not chunk_indices:
        return
    first_time = min(events[i].time_unix_nano for i in chunk_indices)
    for index in reversed(chunk_indices):
        del events[index]
    summary = events.add()
    summary.name = STREAM_SUMMARY_EVENT
    summary.time_unix_nano = first_time
    add_attributes(summary.attributes, [("flowtel.stream.chunk_events", len(chunk_indices))])


def assessments_by_span(assessments: Iterable[Assessment], span_ids: set[str]) -> dict[str, list[Assessment]]:
    """Assessments keyed by the hex id of the span they assess; trace-level ones (and any whose
    span is not in the trace) under the root's key."""
    grouped: dict[str, list[Assessment]] = {}
    for assessment in assessments:
        if assessment.feedback is None and assessment.expectation is None:
            continue  # issue references are MLflow's own; no evaluation result to send
        key = assessment.span_id if assessment.span_id in span_ids else _TRACE_LEVEL
        grouped.setdefault(key or _TRACE_LEVEL, []).append(assessment)
    return grouped


def write_evaluation_events(pb: PbSpan, grouped: dict[str, list[Assessment]], *, is_root: bool) -> None:
    """Add the ``gen_ai.evaluation.result`` events of the span ``pb`` (and of the trace, on its root)."""
    found = grouped.get(pb.span_id.hex(), [])
    if is_root:
        found = [*grouped.get(_TRACE_LEVEL, []), *found]
    for assessment in found:
        event = pb.events.add()
        event.name = EVALUATION_EVENT
        event.time_unix_nano = (assessment.create_time_ms or 0) * 1_000_000
        add_attributes(event.attributes, evaluation_attributes(assessment).items())


def evaluation_attributes(assessment: Assessment) -> dict[str, Any]:
    """The semconv evaluation attributes of one feedback or expectation."""
    attributes: dict[str, Any] = {"gen_ai.evaluation.name": assessment.name}
    if assessment.feedback is not None:
        attributes["flowtel.assessment.kind"] = "feedback"
        _score(attributes, assessment.feedback.value)
        error = assessment.feedback.error
        if error is not None:
            attributes["error.type"] = error.error_code
    elif assessment.expectation is not None:
        attributes["flowtel.assessment.kind"] = "expectation"
        _score(attributes, assessment.expectation.value)
    if assessment.rationale:
        attributes["gen_ai.evaluation.explanation"] = assessment.rationale
    attributes["flowtel.assessment.source_type"] = assessment.source.source_type
    if assessment.source.source_id:
        attributes["flowtel.assessment.source_id"] = assessment.source.source_id
    if assessment.assessment_id:
        attributes["flowtel.assessment.id"] = assessment.assessment_id
    return attributes


def _score(attributes: dict[str, Any], value: Any) -> None:
    """Numbers are scores, strings labels; a boolean is both (1.0/0.0, ``true``/``false``)."""
    if isinstance(value, bool):
        attributes["gen_ai.evaluation.score.value"] = 1.0 if value else 0.0
        attributes["gen_ai.evaluation.score.label"] = "true" if value else "false"
    elif isinstance(value, (int, float)):
        attributes["gen_ai.evaluation.score.value"] = float(value)
    elif isinstance(value, str):
        attributes["gen_ai.evaluation.score.label"] = value
    elif value is not None:
        attributes["gen_ai.evaluation.score.label"] = json.dumps(value, ensure_ascii=False, default=str)
