"""Assessments (log_feedback, log_expectation, log_assessment, get/update/delete_assessment,
override_feedback): the same behaviour against a real MLflow server and the embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow
import pytest

import flowtel
from flowtel import AssessmentError, AssessmentSource, Expectation, Feedback
from flowtel.exporters.local._exporter import create_local_destination
from flowtel.tracing import _experiments, _runtime

pytest.register_assert_rewrite("tests._mlflow_helpers")
from tests._mlflow_helpers import flowtel_to, new_experiment
from tests._servers.mlflow_server import MlflowServer

BOB = AssessmentSource(source_type="HUMAN", source_id="bob")
JUDGE = AssessmentSource(source_type="LLM_JUDGE", source_id="gpt-judge")


@pytest.fixture(params=["server", "local"])
def backend(request: pytest.FixtureRequest, mlflow_server: MlflowServer, tmp_path: Any) -> Iterator[str]:
    if request.param == "server":
        with flowtel_to(mlflow_server.url, new_experiment(mlflow_server, "assess")):
            yield "server"
        return
    _runtime.set_destinations([create_local_destination(str(tmp_path / "traces.db"))])
    try:
        yield "local"
    finally:
        flowtel.flush()
        _experiments.reset()
        _runtime.set_destinations(None)


def _stored_trace() -> str:
    with flowtel.start_span("answer") as span:
        span.set_inputs({"q": "2+2?"})
        span.set_outputs("4")
    trace_id = flowtel.get_last_active_trace_id()
    assert flowtel.flush()
    return trace_id


def _summary(assessment: Any) -> dict[str, Any]:
    """What the user chose, without the ids and clocks each store assigns."""
    d = assessment.to_dictionary()
    return {k: v for k, v in d.items() if k not in ("assessment_id", "create_time", "last_update_time", "trace_id")}


def test_assessments_logged_while_active_travel_with_the_trace(backend: str) -> None:
    with flowtel.start_span("answer") as span:
        trace_id = span.trace_id
        kept = flowtel.log_feedback(trace_id=trace_id, name="quality", value=0.5, rationale="meh", source=JUDGE,
                                    metadata={"judge_cost": 0.01})
        assert kept.assessment_id is None  # kept with the trace, not stored yet
        flowtel.log_expectation(trace_id=trace_id, name="expected", value={"answer": 4, "steps": ["add"]},
                                span_id=span.span_id)
        flowtel.log_assessment(trace_id, Feedback(name="timeout", error=AssessmentError("TIMEOUT", "judge timed out")))
    flowtel.flush()
    stored = {a.name: a for a in flowtel.get_trace(trace_id).info.assessments}
    assert {name: _summary(a) for name, a in stored.items()} == {
        "quality": {"assessment_name": "quality", "source": {"source_type": "LLM_JUDGE", "source_id": "gpt-judge"},
                    "feedback": {"value": 0.5}, "rationale": "meh", "metadata": {"judge_cost": "0.01"}, "valid": True},
        "expected": {"assessment_name": "expected", "span_id": span.span_id,
                     "source": {"source_type": "HUMAN", "source_id": "default"},
                     "expectation": {"serialized_value": {"serialization_format": "JSON_FORMAT",
                                                          "value": '{"answer": 4, "steps": ["add"]}'}}},
        "timeout": {"assessment_name": "timeout", "source": {"source_type": "CODE", "source_id": "default"},
                    "feedback": {"value": None,
                                 "error": {"error_code": "TIMEOUT", "error_message": "judge timed out"}},
                    "valid": True},
    }
    assert all(a.assessment_id and a.assessment_id.startswith("a-") for a in stored.values())
    assert stored["expected"].value == {"answer": 4, "steps": ["add"]}


def test_log_get_update_delete_on_a_stored_trace(backend: str) -> None:
    trace_id = _stored_trace()
    feedback = flowtel.log_feedback(trace_id=trace_id, name="correct", value=True, source=BOB)
    assert feedback.assessment_id.startswith("a-") and feedback.trace_id == trace_id
    assert _summary(flowtel.get_assessment(trace_id, feedback.assessment_id)) == _summary(feedback)

    updated = flowtel.update_assessment(trace_id, feedback.assessment_id,
                                        Feedback(name="correct", value=False, rationale="2+2 is 4, not 5"))
    assert (updated.value, updated.rationale, updated.assessment_id) == (False, "2+2 is 4, not 5", feedback.assessment_id)
    assert flowtel.get_assessment(trace_id, feedback.assessment_id).value is False

    expectation = flowtel.log_expectation(trace_id=trace_id, name="answer", value="4")
    changed = flowtel.update_assessment(trace_id, expectation.assessment_id, Expectation(name="answer", value="four"))
    assert changed.value == "four"

    flowtel.delete_assessment(trace_id, feedback.assessment_id)
    with pytest.raises(flowtel.FlowtelException) as gone:
        flowtel.get_assessment(trace_id, feedback.assessment_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [a.name for a in flowtel.get_trace(trace_id).info.assessments] == ["answer"]


def test_override_feedback_keeps_the_original_as_invalid(backend: str) -> None:
    trace_id = _stored_trace()
    original = flowtel.log_feedback(trace_id=trace_id, name="quality", value=0.2, source=JUDGE, rationale="judge")
    override = flowtel.override_feedback(trace_id=trace_id, assessment_id=original.assessment_id, value=0.9,
                                         rationale="human says good", source=BOB)
    assert (override.name, override.value, override.overrides) == ("quality", 0.9, original.assessment_id)
    assert flowtel.get_assessment(trace_id, original.assessment_id).valid is False
    trace = flowtel.get_trace(trace_id)
    assert [a.value for a in trace.search_assessments("quality")] == [0.9]
    assert sorted(a.value for a in trace.search_assessments("quality", all=True)) == [0.2, 0.9]
    expectation = flowtel.log_expectation(trace_id=trace_id, name="answer", value="4")
    with pytest.raises(flowtel.FlowtelException, match="is not a feedback"):
        flowtel.override_feedback(trace_id=trace_id, assessment_id=expectation.assessment_id, value=1.0)
    flowtel.delete_assessment(trace_id, override.assessment_id)
    assert flowtel.get_assessment(trace_id, original.assessment_id).valid is True


def test_unknown_trace_or_assessment_is_a_clear_error(backend: str) -> None:
    unknown = "tr-0000000000000000000000000000dead"
    with pytest.raises(flowtel.TraceNotFoundError):
        flowtel.log_feedback(trace_id=unknown, name="x", value=1.0)
    trace_id = _stored_trace()
    with pytest.raises(flowtel.FlowtelException) as missing:
        flowtel.get_assessment(trace_id, "a-00000000000000000000000000000000")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(flowtel.FlowtelException):
        flowtel.log_assessment(trace_id, "not an assessment")  # type: ignore[arg-type]
    # Deleting an unknown assessment of an existing trace is a no-op, as in MLflow.
    flowtel.delete_assessment(trace_id, "a-00000000000000000000000000000000")


def test_tracing_disabled_assessment_is_not_stored(backend: str) -> None:
    flowtel.tracing.disable()
    with flowtel.start_span("off") as span:
        logged = flowtel.log_feedback(trace_id=span.trace_id, name="x", value=1.0)
    assert logged.assessment_id is None


def test_assessments_logged_by_flowtel_are_read_by_mlflow(mlflow_server: MlflowServer) -> None:
    with flowtel_to(mlflow_server.url, new_experiment(mlflow_server)):
        trace_id = _stored_trace()
        feedback = flowtel.log_feedback(trace_id=trace_id, name="quality", value=0.8, source=BOB, rationale="good")
    theirs = mlflow.MlflowClient(tracking_uri=mlflow_server.url).get_trace(trace_id).info.assessments
    assert [(a.assessment_id, a.name, a.value, a.rationale, a.source.source_id) for a in theirs] == [
        (feedback.assessment_id, "quality", 0.8, "good", "bob")]
