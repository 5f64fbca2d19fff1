"""Parity of flowtel's assessment entities with the real ``mlflow.entities`` (MLflow 3.17).

Every case is built twice, once with flowtel's classes and once with MLflow's, and the wire dicts,
the parsed objects and the REST request bodies are compared field by field, with strict types
(``1`` vs ``1.0`` vs ``True`` are different here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import mlflow.entities as mlflow_entities
import pytest
from mlflow.entities import assessment as mlflow_assessment
from mlflow.store.tracking.rest_store import RestStore
from mlflow.utils.proto_json_utils import milliseconds_to_proto_timestamp

from flowtel.entities import _assessment as flowtel_assessment
from flowtel.exporters.mlflow import _client as mlflow_rest

FLOWTEL = types.SimpleNamespace(
    Assessment=flowtel_assessment.Assessment,
    AssessmentError=flowtel_assessment.AssessmentError,
    AssessmentSource=flowtel_assessment.AssessmentSource,
    Expectation=flowtel_assessment.Expectation,
    ExpectationValue=flowtel_assessment.ExpectationValue,
    Feedback=flowtel_assessment.Feedback,
    FeedbackValue=flowtel_assessment.FeedbackValue,
    IssueReference=flowtel_assessment.IssueReference,
)
MLFLOW = types.SimpleNamespace(
    Assessment=mlflow_entities.Assessment,
    AssessmentError=mlflow_entities.AssessmentError,
    AssessmentSource=mlflow_entities.AssessmentSource,
    Expectation=mlflow_entities.Expectation,
    ExpectationValue=mlflow_assessment.ExpectationValue,
    Feedback=mlflow_entities.Feedback,
    FeedbackValue=mlflow_assessment.FeedbackValue,
    IssueReference=mlflow_entities.IssueReference,
)

T0 = 1795344565316  # 2026-11-22T10:49:25.316Z
T_WHOLE = 1795344565000  # 2026-11-22T10:49:25Z


def _raised_error() -> ValueError:
    try:
        raise ValueError("judge exploded")
    except ValueError as e:
        return e


RAISED = _raised_error()  # one object shared by both builds: identical traceback text


def _nest(leaf: Any, dicts: int, lists: int) -> Any:
    value = leaf
    for _ in range(dicts):
        value = {"k": value}
    for _ in range(lists):
        value = [value]
    return value


Builder = Callable[[types.SimpleNamespace], Any]


def _feedback(value: Any, **kwargs: Any) -> Builder:
    kwargs.setdefault("create_time_ms", T0)
    kwargs.setdefault("last_update_time_ms", T_WHOLE)
    return lambda lib: lib.Feedback(name="quality", value=value, **kwargs)


def _expectation(value: Any, **kwargs: Any) -> Builder:
    kwargs.setdefault("create_time_ms", T0)
    kwargs.setdefault("last_update_time_ms", T0)
    return lambda lib: lib.Expectation(name="expected", value=value, **kwargs)


def _source(source_type: str, source_id: str | None = "default") -> Builder:
    return lambda lib: lib.Feedback(
        name="quality",
        value=True,
        source=lib.AssessmentSource(source_type=source_type, source_id=source_id),
        create_time_ms=T0,
        last_update_time_ms=T0,
    )


def _with_id(builder: Builder, assessment_id: str) -> Builder:
    def build(lib: types.SimpleNamespace) -> Any:
        assessment = builder(lib)
        assessment.assessment_id = assessment_id
        return assessment

    return build


CASES: dict[str, Builder] = {
    # feedback values
    "fb_true": _feedback(True),
    "fb_false": _feedback(False),
    "fb_int": _feedback(3),
    "fb_zero": _feedback(0),
    "fb_negative_int": _feedback(-7),
    "fb_int_beyond_double": _feedback(2**53 + 1),
    "fb_float": _feedback(0.75),
    "fb_tiny_float": _feedback(1e-300),
    "fb_str": _feedback("yes"),
    "fb_empty_str": _feedback(""),
    "fb_unicode_str": _feedback("très bien ✓"),
    "fb_json_looking_str": _feedback('{"a": 1}'),
    "fb_none": _feedback(None),
    "fb_dict": _feedback({"score": 4, "ok": True, "label": "good", "nested": {"x": [1, None]}}),
    "fb_empty_dict": _feedback({}),
    "fb_list": _feedback([1, 2.5, "x", False, None]),
    "fb_empty_list": _feedback([]),
    "fb_tuple": _feedback((1, "a")),
    "fb_deep_lists_at_limit": _feedback(_nest(1, 0, 49)),
    "fb_deep_dicts_at_limit": _feedback(_nest(1, 33, 0)),
    "fb_deep_mixed_at_limit": _feedback(_nest(1, 20, 20)),
    # feedback errors
    "fb_error_exception": _feedback(None, error=RAISED),
    "fb_error_unraised_exception": _feedback(None, error=KeyError("missing")),
    "fb_error_string": _feedback(None, error="judge timed out"),
    "fb_error_object": lambda lib: lib.Feedback(
        name="quality",
        error=lib.AssessmentError(
            error_code="RATE_LIMIT_EXCEEDED", error_message="slow down", stack_trace="trace"
        ),
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
    "fb_error_code_only": lambda lib: lib.Feedback(
        error=lib.AssessmentError(error_code="E", error_message="", stack_trace=""),
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
    "fb_error_long_stack_trace": lambda lib: lib.Feedback(
        error=lib.AssessmentError(error_code="E", stack_trace="head" + "x" * 12000 + "tail"),
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
    "fb_error_with_value": _feedback(0.5, error="partial"),
    # other feedback fields
    "fb_all_fields": _feedback(
        4,
        trace_id="tr-0123456789abcdef0123456789abcdef",
        span_id="00f067aa0ba902b7",
        rationale="Because the answer cites the source.",
        metadata={"project": "demo", "mlflow.assessment.sourceRunId": "run-1"},
        overrides="a-0123456789abcdef0123456789abcdef",
        valid=False,
    ),
    "fb_empty_strings": _feedback(1.0, trace_id="", span_id="", rationale="", overrides=""),
    "fb_non_str_metadata_values": _feedback(1, metadata={"n": 1, "b": True, "none": None}),
    "fb_empty_metadata": _feedback(1, metadata={}),
    "fb_with_assessment_id": _with_id(_feedback(True), "a-0123456789abcdef0123456789abcdef"),
    "fb_empty_assessment_id": _with_id(_feedback(True), ""),
    "fb_epoch": _feedback(1, create_time_ms=0, last_update_time_ms=1),
    "fb_before_epoch": _feedback(1, create_time_ms=-1500, last_update_time_ms=-1),
    "fb_min_time": _feedback(1, create_time_ms=-62135596800000, last_update_time_ms=T0),
    "fb_max_time": _feedback(1, create_time_ms=253402300799999, last_update_time_ms=T0),
    # sources
    "src_human": _source("HUMAN", "bob@example.com"),
    "src_llm_judge": _source("LLM_JUDGE", "gpt-4o-mini"),
    "src_code": _source("CODE", "repo/eval.py"),
    "src_unspecified": _source("SOURCE_TYPE_UNSPECIFIED"),
    "src_lowercase": _source("human"),
    "src_ai_judge_legacy": _source("AI_JUDGE", "judge"),
    "src_no_id": _source("LLM_JUDGE", None),
    "src_empty_id": _source("CODE", ""),
    # expectations
    "exp_str": _expectation("The capital of France is Paris."),
    "exp_int": _expectation(42),
    "exp_float": _expectation(0.5),
    "exp_bool": _expectation(False),
    "exp_dict": _expectation({"answer": 7, "sources": ["a", "b"]}),
    "exp_list_of_str": _expectation(["Paris", "France"]),
    "exp_list_mixed": _expectation([1, "x", None, {"k": 1.5}]),
    "exp_tuple": _expectation((1, 2)),
    "exp_unicode_dict": _expectation({"é": "ü", "emoji": "✓"}),
    "exp_nested_nan": _expectation([float("nan")]),
    "exp_all_fields": _expectation(
        "x",
        source=None,
        trace_id="tr-1",
        span_id="span-1",
        metadata={"mlflow.assessment.sourceRunId": "run-2"},
    ),
    "exp_with_id": _with_id(_expectation({"a": 1}), "a-1"),
    "exp_value_none_via_base": lambda lib: lib.Assessment(
        name="raw",
        source=lib.AssessmentSource(source_type="HUMAN"),
        expectation=lib.ExpectationValue(None),
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
    # base class and issue references
    "base_feedback_with_error": lambda lib: lib.Assessment(
        name="raw",
        source=lib.AssessmentSource(source_type="CODE"),
        feedback=lib.FeedbackValue(value=1),
        error=lib.AssessmentError(error_code="E", error_message="m"),
        rationale="r",
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
    "issue_reference": lambda lib: lib.IssueReference(
        issue_id="iss-1",
        issue_name="hallucination",
        trace_id="tr-9",
        run_id="run-9",
        rationale="made up a citation",
        metadata={"k": "v"},
        span_id="s",
        create_time_ms=T0,
        last_update_time_ms=T0,
    ),
}


def _build(builder: Builder, lib: types.SimpleNamespace) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # AI_JUDGE; asserted separately
        return builder(lib)


def _canon(value: Any) -> Any:
    """A type-strict, order-insensitive form: 1, 1.0 and True compare different."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _canon(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_canon(v) for v in value))
    return (type(value).__name__, value)


def _error_snapshot(error: Any) -> Any:
    if error is None:
        return None
    return (error.error_code, error.error_message, error.stack_trace)


def _snapshot(assessment: Any) -> Any:
    feedback = assessment.feedback
    return _canon(
        {
            "type": type(assessment).__name__,
            "name": assessment.name,
            "trace_id": assessment.trace_id,
            "run_id": assessment.run_id,
            "rationale": assessment.rationale,
            "metadata": assessment.metadata,
            "span_id": assessment.span_id,
            "create_time_ms": assessment.create_time_ms,
            "last_update_time_ms": assessment.last_update_time_ms,
            "assessment_id": assessment.assessment_id,
            "error": _error_snapshot(assessment.error),
            "feedback": feedback and (feedback.value, _error_snapshot(feedback.error)),
            "expectation": assessment.expectation and assessment.expectation.value,
            "issue": assessment.issue and assessment.issue.issue_name,
            "overrides": assessment.overrides,
            "valid": assessment.valid,
            "source": (assessment.source.source_type, assessment.source.source_id),
        }
    )


def _assert_same_wire(flowtel_dict: dict[str, Any], mlflow_dict: dict[str, Any]) -> None:
    assert flowtel_dict == mlflow_dict
    assert _canon(flowtel_dict) == _canon(mlflow_dict)
    assert list(flowtel_dict) == list(mlflow_dict)  # top-level key order as MessageToDict


@pytest.mark.parametrize("case", CASES)
def test_to_dictionary_matches_mlflow(case: str) -> None:
    ours = _build(CASES[case], FLOWTEL)
    theirs = _build(CASES[case], MLFLOW)

    assert _snapshot(ours) == _snapshot(theirs)
    _assert_same_wire(ours.to_dictionary(), theirs.to_dictionary())


# MLflow serialises these but cannot parse them back (an expectation value of None).
NOT_PARSEABLE = {"exp_value_none_via_base"}


@pytest.mark.parametrize("case", CASES)
def test_from_dictionary_round_trips_both_ways(case: str) -> None:
    flowtel_dict = _build(CASES[case], FLOWTEL).to_dictionary()
    mlflow_dict = _build(CASES[case], MLFLOW).to_dictionary()

    if case in NOT_PARSEABLE:
        with pytest.raises(Exception, match="`value` field must be specified"):
            mlflow_entities.Assessment.from_dictionary(flowtel_dict)
        with pytest.raises(ValueError, match="`value` field must be specified"):
            flowtel_assessment.Assessment.from_dictionary(mlflow_dict)
        return
    mlflow_from_flowtel = mlflow_entities.Assessment.from_dictionary(flowtel_dict)
    flowtel_from_mlflow = flowtel_assessment.Assessment.from_dictionary(mlflow_dict)
    flowtel_from_flowtel = flowtel_assessment.Assessment.from_dictionary(flowtel_dict)

    assert _snapshot(flowtel_from_mlflow) == _snapshot(mlflow_from_flowtel)
    assert _snapshot(flowtel_from_flowtel) == _snapshot(mlflow_from_flowtel)
    _assert_same_wire(flowtel_from_mlflow.to_dictionary(), mlflow_from_flowtel.to_dictionary())


def test_int_feedback_comes_back_as_float_like_mlflow() -> None:
    wire = FLOWTEL.Feedback(name="score", value=3).to_dictionary()

    assert wire["feedback"] == {"value": 3.0}
    assert type(wire["feedback"]["value"]) is float
    parsed = flowtel_assessment.Assessment.from_dictionary(wire)
    assert type(parsed.value) is float
    assert type(mlflow_entities.Assessment.from_dictionary(wire).value) is float


def test_wire_example_from_reference_doc() -> None:
    feedback = FLOWTEL.Feedback(
        name="quality",
        value=True,
        rationale="ok",
        trace_id="tr-b25b",
        source=FLOWTEL.AssessmentSource(source_type="HUMAN", source_id="bob"),
        create_time_ms=T0,
        last_update_time_ms=T0,
    )
    expectation = FLOWTEL.Expectation(
        name="expected", value={"answer": 7}, trace_id="tr-b25b", create_time_ms=T0
    )

    assert mlflow_rest.create_assessment_request_body(feedback) == {
        "assessment": {
            "assessment_name": "quality",
            "trace_id": "tr-b25b",
            "source": {"source_type": "HUMAN", "source_id": "bob"},
            "create_time": "2026-11-22T10:49:25.316Z",
            "last_update_time": "2026-11-22T10:49:25.316Z",
            "feedback": {"value": True},
            "rationale": "ok",
            "valid": True,
        }
    }
    assert expectation.to_dictionary()["expectation"] == {
        "serialized_value": {"serialization_format": "JSON_FORMAT", "value": '{"answer": 7}'}
    }


def test_default_timestamps_are_now_and_equal() -> None:
    before = int(time.time() * 1000)
    feedback = FLOWTEL.Feedback(value=1)
    after = int(time.time() * 1000)

    assert feedback.create_time_ms == feedback.last_update_time_ms
    assert before <= feedback.create_time_ms <= after
    assert feedback.name == "feedback"
    assert feedback.source == FLOWTEL.AssessmentSource(source_type="CODE", source_id="default")
    assert FLOWTEL.Expectation(name="e", value=1).source.source_type == "HUMAN"
    assert FLOWTEL.IssueReference(issue_id="i", issue_name="n").source.source_type == "LLM_JUDGE"


def test_run_id_is_taken_from_metadata() -> None:
    feedback = FLOWTEL.Feedback(value=1, metadata={"mlflow.assessment.sourceRunId": "run-7"})

    assert feedback.run_id == "run-7"
    assert "run_id" not in feedback.to_dictionary()


def test_feedback_convenience_properties() -> None:
    feedback = FLOWTEL.Feedback(value=1, error=RAISED)

    assert (feedback.error_code, feedback.error_message) == ("ValueError", "judge exploded")
    assert feedback.error is feedback.feedback.error
    feedback.value = "changed"
    assert feedback.feedback.value == "changed"
    expectation = FLOWTEL.Expectation(name="e", value=1)
    expectation.value = [1]
    assert expectation.to_dictionary()["expectation"]["serialized_value"]["value"] == "[1]"
    issue = FLOWTEL.IssueReference(issue_id="i", issue_name="n")
    issue.issue_id, issue.issue_name = "j", "m"
    assert (issue.name, issue.issue.issue_name) == ("j", "m")


# --- source and error objects -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source_type", ["HUMAN", "human", "Llm_Judge", "CODE", "SOURCE_TYPE_UNSPECIFIED"]
)
def test_source_standardisation_matches_mlflow(source_type: str) -> None:
    ours = FLOWTEL.AssessmentSource(source_type=source_type)
    theirs = MLFLOW.AssessmentSource(source_type=source_type)

    assert ours.to_dictionary() == theirs.to_dictionary()
    assert FLOWTEL.AssessmentSource.from_dictionary(theirs.to_dictionary()) == ours


def test_ai_judge_is_deprecated_alias_of_llm_judge() -> None:
    with pytest.warns(FutureWarning, match="AI_JUDGE is deprecated"):
        source = FLOWTEL.AssessmentSource(source_type="ai_judge")

    assert source.source_type == flowtel_assessment.AssessmentSourceType.LLM_JUDGE
    assert str(flowtel_assessment.AssessmentSourceType("code")) == "CODE"
    assert flowtel_assessment.AssessmentSourceType.from_proto(2) == "LLM_JUDGE"


def test_invalid_source_type_is_rejected_like_mlflow() -> None:
    with pytest.raises(Exception, match="Invalid assessment source type: ROBOT"):
        MLFLOW.AssessmentSource(source_type="robot")
    with pytest.raises(ValueError, match="Invalid assessment source type: ROBOT"):
        FLOWTEL.AssessmentSource(source_type="robot")


def test_assessment_error_plain_dictionary_matches_mlflow() -> None:
    kwargs = {"error_code": "E", "error_message": None, "stack_trace": "st"}
    ours = FLOWTEL.AssessmentError(**kwargs)

    assert ours.to_dictionary() == MLFLOW.AssessmentError(**kwargs).to_dictionary()
    assert FLOWTEL.AssessmentError.from_dictionary(ours.to_dictionary()) == ours


# --- values MLflow cannot serialise -------------------------------------------------------------

BAD_FEEDBACK_VALUES = {
    "nan": float("nan"),
    "inf": float("inf"),
    "minus_inf": float("-inf"),
    "nested_nan": {"a": [float("nan")]},
    "int_too_big_for_double": 10**400,
    "set": {1},
    "bytes": b"x",
    "object": object(),
    "non_str_key": {1: "a"},
    "lists_too_deep": _nest(1, 0, 50),
    "dicts_too_deep": _nest(1, 34, 0),
    "mixed_too_deep": _nest(1, 4, 45),
    "empty_leaf_too_deep": _nest([], 33, 1),
}


@pytest.mark.parametrize("name", BAD_FEEDBACK_VALUES)
def test_unserialisable_feedback_values_are_rejected_like_mlflow(name: str) -> None:
    value = BAD_FEEDBACK_VALUES[name]
    with pytest.raises(Exception):  # noqa: B017 - MLflow raises protobuf errors
        MLFLOW.Feedback(value=value).to_dictionary()
    with pytest.raises((TypeError, ValueError, OverflowError)):
        FLOWTEL.Feedback(value=value).to_dictionary()


@pytest.mark.parametrize("dicts", [0, 1, 2, 5, 13, 20, 32, 33])
@pytest.mark.parametrize("leaf", [1, [], {}], ids=["scalar", "empty_list", "empty_dict"])
def test_nesting_limit_matches_mlflow_exactly(dicts: int, leaf: Any) -> None:
    def accepted(lib: types.SimpleNamespace, value: Any) -> bool:
        try:
            lib.Feedback(value=value).to_dictionary()
        except Exception:  # noqa: BLE001 - protobuf raises several error types
            return False
        return True

    for lists in range(51):
        value = _nest(leaf, dicts, lists)
        assert accepted(FLOWTEL, value) == accepted(MLFLOW, value), (dicts, lists)


def test_unserialisable_expectations_are_rejected_like_mlflow() -> None:
    for lib in (MLFLOW, FLOWTEL):
        with pytest.raises(Exception, match="must be JSON-serializable"):
            lib.Expectation(name="e", value={1, 2}).to_dictionary()
        with pytest.raises(Exception, match="NaN"):
            lib.Expectation(name="e", value=float("nan")).to_dictionary()
        with pytest.raises(Exception, match="`value` field must be specified"):
            lib.Expectation(name="e", value=None)


def test_invalid_assessment_shapes_are_rejected_like_mlflow() -> None:
    for lib in (MLFLOW, FLOWTEL):
        source = lib.AssessmentSource(source_type="CODE")
        with pytest.raises(Exception, match="Exactly one of"):
            lib.Assessment(name="x", source=source)
        with pytest.raises(Exception, match="Exactly one of"):
            lib.Assessment(
                name="x",
                source=source,
                feedback=lib.FeedbackValue(1),
                expectation=lib.ExpectationValue(1),
            )
        with pytest.raises(Exception, match="Cannot set `error` when `expectation`"):
            lib.Assessment(
                name="x",
                source=source,
                expectation=lib.ExpectationValue(1),
                error=lib.AssessmentError(error_code="E"),
            )
        with pytest.raises(Exception, match="must be an instance of `AssessmentSource`"):
            lib.Assessment(name="x", source="CODE", feedback=lib.FeedbackValue(1))
        with pytest.raises(Exception, match="'error' must be an Exception"):
            lib.Feedback(value=1, error=42)
        with pytest.raises(Exception, match="Unknown assessment type: x"):
            lib.Assessment.from_dictionary({"assessment_name": "x"})


@pytest.mark.parametrize("millis", [T0 + 1, 253402300800000, -62135596800001])
def test_out_of_range_timestamps_are_rejected_like_mlflow(millis: int) -> None:
    def render(lib: types.SimpleNamespace) -> Any:
        return lib.Feedback(value=1, create_time_ms=millis, last_update_time_ms=T0).to_dictionary()

    try:
        expected = render(MLFLOW)
    except ValueError:
        with pytest.raises(ValueError, match="Timestamp is not valid"):
            render(FLOWTEL)
    else:
        assert render(FLOWTEL) == expected


# --- timestamps ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "millis",
    [0, 1, 10, 100, 999, 1000, 1001, -1, -999, -1000, -1001, T0, T_WHOLE, 951782400123,
     4102444800000, -62135596800000, 253402300799999],
)
def test_timestamp_rendering_matches_protobuf(millis: int) -> None:
    wire = FLOWTEL.Feedback(value=1, create_time_ms=millis, last_update_time_ms=0).to_dictionary()

    assert wire["create_time"] == milliseconds_to_proto_timestamp(millis)


TIMESTAMP_STRINGS = [
    "2026-11-22T10:49:25.316Z",
    "2026-11-22T10:49:25Z",
    "2026-11-22T10:49:25.3Z",
    "2026-11-22T10:49:25.3169Z",
    "2026-11-22T10:49:25.316999999Z",
    "2026-11-22T10:49:25.316+01:00",
    "2026-11-22T10:49:25-05:30",
    "1969-12-31T23:59:59.9999Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999Z",
    "2026-1-2T3:4:5Z",
    "2026-11-22t10:49:25Z",
    "2026-11-22T10:49:25.1234567891Z",
    "2026-11-22T10:49:25.316Zx",
    "2026-11-22T10:49:25+0100",
    "2026-11-22T10:49:25",
    "not a timestamp",
]


@pytest.mark.parametrize("text", TIMESTAMP_STRINGS)
def test_timestamp_parsing_matches_protobuf(text: str) -> None:
    wire = MLFLOW.Feedback(value=1, create_time_ms=T0, last_update_time_ms=T0).to_dictionary()
    wire["create_time"] = text

    try:
        expected = mlflow_entities.Assessment.from_dictionary(wire).create_time_ms
    except ValueError:
        with pytest.raises(ValueError):
            flowtel_assessment.Assessment.from_dictionary(wire)
    else:
        assert flowtel_assessment.Assessment.from_dictionary(wire).create_time_ms == expected


# --- REST request bodies --------------------------------------------------------------------------


class _Captured(Exception):
    def __init__(self, body: dict[str, Any], endpoint: str) -> None:
        super().__init__(endpoint)
        self.body = body
        self.endpoint = endpoint


class _CapturingRestStore(RestStore):
    """The real MLflow REST store, stopped right before it would send the request."""

    def __init__(self) -> None:
        super().__init__(get_host_creds=lambda: None)

    def _call_endpoint(self, api: Any, json_body: Any = None, endpoint: Any = None, **_: Any):
        raise _Captured(json.loads(json_body), endpoint)


def _mlflow_request(call: Callable[[RestStore], Any]) -> _Captured:
    with pytest.raises(_Captured) as captured:
        call(_CapturingRestStore())
    return captured.value


@pytest.mark.parametrize(
    "case", ["fb_all_fields", "fb_error_exception", "exp_dict", "exp_int", "issue_reference"]
)
def test_create_assessment_body_matches_mlflow_rest_store(case: str) -> None:
    theirs = _build(CASES[case], MLFLOW)
    theirs.trace_id = "tr-abc"
    ours = _build(CASES[case], FLOWTEL)
    ours.trace_id = "tr-abc"

    request = _mlflow_request(lambda store: store.create_assessment(theirs))

    assert request.endpoint.endswith("/traces/tr-abc/assessments")
    assert mlflow_rest.create_assessment_request_body(ours) == request.body


UPDATE_CASES: dict[str, Callable[[types.SimpleNamespace], dict[str, Any]]] = {
    "nothing": lambda lib: {},
    "name": lambda lib: {"name": "renamed"},
    "feedback": lambda lib: {"feedback": lib.FeedbackValue(value=2, error=None)},
    "feedback_with_error": lambda lib: {
        "feedback": lib.FeedbackValue(value=None, error=lib.AssessmentError(error_code="E")),
        "rationale": "judge failed",
    },
    "expectation_structured": lambda lib: {
        "name": "expected",
        "expectation": lib.ExpectationValue({"a": [1, 2]}),
    },
    "expectation_primitive": lambda lib: {"expectation": lib.ExpectationValue(5)},
    "metadata": lambda lib: {"metadata": {"k": "v", "j": "w"}},
    "empty_metadata": lambda lib: {"metadata": {}},
    "everything_but_expectation": lambda lib: {
        "name": "n",
        "feedback": lib.FeedbackValue(value=[1, "a"]),
        "rationale": "",
        "metadata": {"k": "v"},
    },
}


@pytest.mark.parametrize("case", UPDATE_CASES)
def test_update_assessment_body_matches_mlflow_rest_store(case: str) -> None:
    request = _mlflow_request(
        lambda store: store.update_assessment("tr-1", "a-1", **UPDATE_CASES[case](MLFLOW))
    )

    ours = mlflow_rest.update_assessment_request_body(
        "tr-1", "a-1", **UPDATE_CASES[case](FLOWTEL)
    )

    assert request.endpoint.endswith("/traces/tr-1/assessments/a-1")
    assert ours == request.body
    assert list(ours["assessment"]) == list(request.body["assessment"])


def test_update_body_accepts_whole_assessments_like_mlflow_update_assessment() -> None:
    ours = FLOWTEL.Feedback(name="q", value=1, rationale="r")
    theirs = MLFLOW.Feedback(name="q", value=1, rationale="r")

    request = _mlflow_request(
        lambda store: store.update_assessment(
            "tr-1", "a-1", name=theirs.name, feedback=theirs.feedback, rationale=theirs.rationale
        )
    )

    body = mlflow_rest.update_assessment_request_body(
        "tr-1", "a-1", name=ours.name, feedback=ours, rationale=ours.rationale
    )
    assert body == request.body
    assert body["update_mask"] == "assessmentName,feedback,rationale"


def test_update_body_rejects_both_values() -> None:
    with pytest.raises(ValueError, match="Exactly one of `expectation` or `feedback`"):
        mlflow_rest.update_assessment_request_body(
            "tr-1",
            "a-1",
            expectation=FLOWTEL.ExpectationValue(1),
            feedback=FLOWTEL.FeedbackValue(1),
        )


def test_module_works_without_mlflow_or_protobuf() -> None:
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        for blocked in ("mlflow", "google", "google.protobuf"):
            sys.modules[blocked] = None  # any import of them now fails
        spec = importlib.util.spec_from_file_location("assessment", {flowtel_assessment.__file__!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["assessment"] = module
        spec.loader.exec_module(module)
        wire = module.Feedback(name="q", value=1, create_time_ms=0).to_dictionary()
        assert module.Assessment.from_dictionary(wire).value == 1.0
        """
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 0, result.stderr
