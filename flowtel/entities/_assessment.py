"""Assessments (feedback, expectations, issue references) attached to traces.

Mirrors ``mlflow.entities.assessment`` / ``assessment_source`` / ``assessment_error`` (MLflow 3.17)
without protobuf: :meth:`Assessment.to_dictionary` renders exactly what MLflow's
``MessageToDict(assessment.to_proto(), preserving_proto_field_name=True)`` renders, including the
``google.protobuf.Value`` quirks (every number becomes a float, tuples become lists, NaN/Infinity
and over-deep values are rejected) and protobuf's RFC 3339 timestamp strings, through the one
protobuf-JSON mapping (:mod:`flowtel.entities._protojson`).

Stdlib only: this module must never import mlflow or protobuf.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from flowtel.entities._protojson import format_timestamp, parse_timestamp, to_pb_value

__all__ = [
    "DEFAULT_FEEDBACK_NAME",
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "Expectation",
    "ExpectationValue",
    "Feedback",
    "FeedbackValue",
    "FeedbackValueType",
    "IssueReference",
    "IssueReferenceValue",
    "UPDATE_MASK_ORDER",
    "PbValueType",
    "assessment_update_fields",
]

# Feedback value should be a float, int, str or bool, a list of those, or a dict with string
# keys and such values (same aliases as MLflow).
PbValueType = float | int | str | bool
FeedbackValueType = PbValueType | dict[str, PbValueType] | list[PbValueType]

DEFAULT_FEEDBACK_NAME = "feedback"

_JSON_SERIALIZATION_FORMAT = "JSON_FORMAT"
# mlflow.tracing.constant.AssessmentMetadataKey.SOURCE_RUN_ID
_SOURCE_RUN_ID_METADATA_KEY = "mlflow.assessment.sourceRunId"

_STACK_TRACE_TRUNCATION_PREFIX = "[Stack trace is truncated]\n...\n"
_STACK_TRACE_TRUNCATION_LENGTH = 10000


def _require_str(value: Any, field_name: str) -> str:
    """Protobuf string fields only accept ``str``; fail clearly instead of emitting junk."""
    if not isinstance(value, str):
        raise TypeError(f"`{field_name}` must be a string, got {type(value).__name__}: {value!r}")
    return str.__str__(value)


def _get_stacktrace(error: BaseException) -> str:
    """``repr(error)`` followed by the formatted traceback (``mlflow.utils.exception_utils``)."""
    message = repr(error)
    try:
        formatted = traceback.format_exception(error)
        return (message + "".join(formatted)).strip()
    except Exception:  # noqa: BLE001 - a broken exception must not break feedback logging
        return message


# ---------------------------------------------------------------------------------------------
# Source and error
# ---------------------------------------------------------------------------------------------


class AssessmentSourceType:
    """Enumeration and validator for assessment source types.

    Inputs are case-insensitive; the legacy ``AI_JUDGE`` is accepted with a ``FutureWarning`` and
    resolved to ``LLM_JUDGE``.

    Attributes:
        SOURCE_TYPE_UNSPECIFIED: Source type not specified.
        LLM_JUDGE: Assessment performed by an LLM-as-a-judge.
        AI_JUDGE: Deprecated alias of ``LLM_JUDGE``.
        HUMAN: Assessment performed by a human.
        CODE: Assessment performed by deterministic code / heuristics.
    """

    SOURCE_TYPE_UNSPECIFIED = "SOURCE_TYPE_UNSPECIFIED"
    LLM_JUDGE = "LLM_JUDGE"
    AI_JUDGE = "AI_JUDGE"  # Deprecated, use LLM_JUDGE instead
    HUMAN = "HUMAN"
    CODE = "CODE"
    _SOURCE_TYPES = [SOURCE_TYPE_UNSPECIFIED, LLM_JUDGE, HUMAN, CODE]
    # proto enum ``mlflow.assessments.AssessmentSource.SourceType`` numbers
    _PROTO_NUMBERS = {SOURCE_TYPE_UNSPECIFIED: 0, HUMAN: 1, LLM_JUDGE: 2, CODE: 3}

    def __init__(self, source_type: str) -> None:
        self._source_type = AssessmentSourceType._parse(source_type)

    @staticmethod
    def _parse(source_type: str) -> str:
        source_type = str(source_type).upper()
        if source_type == AssessmentSourceType.AI_JUDGE:
            warnings.warn("AI_JUDGE is deprecated. Use LLM_JUDGE instead.", FutureWarning, stacklevel=2)
            source_type = AssessmentSourceType.LLM_JUDGE
        if source_type not in AssessmentSourceType._SOURCE_TYPES:
            raise ValueError(
                f"Invalid assessment source type: {source_type}. "
                f"Valid source types: {AssessmentSourceType._SOURCE_TYPES}"
            )
        return source_type

    def __str__(self) -> str:
        return self._source_type

    @staticmethod
    def _standardize(source_type: str) -> str:
        return str(AssessmentSourceType(source_type))

    @classmethod
    def from_proto(cls, proto_source_type: int) -> str:
        """Name of a proto ``SourceType`` enum number (e.g. ``2`` -> ``"LLM_JUDGE"``)."""
        for name, number in cls._PROTO_NUMBERS.items():
            if number == proto_source_type:
                return name
        raise ValueError(f"Enum SourceType has no name defined for value {proto_source_type!r}")


@dataclass
class AssessmentSource:
    """Source of an assessment (human, LLM judge, code).

    Args:
        source_type: One of :class:`AssessmentSourceType` (case-insensitive; ``AI_JUDGE`` is
            resolved to ``LLM_JUDGE`` with a warning).
        source_id: Identifier of the source, e.g. a user id or judge model. Defaults to
            ``"default"``.
    """

    source_type: str
    source_id: str | None = "default"

    def __post_init__(self) -> None:
        self.source_type = AssessmentSourceType._standardize(self.source_type)

    def to_dictionary(self) -> dict[str, Any]:
        """Plain dict of the fields (``None`` included), like MLflow's ``asdict``."""
        return asdict(self)

    @classmethod
    def from_dictionary(cls, source_dict: dict[str, Any]) -> AssessmentSource:
        """Build from ``to_dictionary()`` or proto-JSON output (``source_id`` may be absent)."""
        return cls(**source_dict)

    def _to_proto_dictionary(self) -> dict[str, Any]:
        source_type = AssessmentSourceType._standardize(self.source_type)
        result: dict[str, Any] = {"source_type": source_type}
        if self.source_id is not None:
            result["source_id"] = _require_str(self.source_id, "source_id")
        return result


@dataclass
class AssessmentError:
    """Error raised while producing an assessment (e.g. a judge that failed).

    Args:
        error_code: The error code, e.g. ``"RATE_LIMIT_EXCEEDED"``.
        error_message: The detailed error message.
        stack_trace: The stack trace; only the last 10000 characters are serialised.
    """

    error_code: str
    error_message: str | None = None
    stack_trace: str | None = None

    def to_dictionary(self) -> dict[str, Any]:
        """All three fields, ``None`` included (MLflow's plain ``to_dictionary``)."""
        return {
            "error_code": self.error_code,
            "error_message": self.error_message,
            "stack_trace": self.stack_trace,
        }

    @classmethod
    def from_dictionary(cls, error_dict: dict[str, Any]) -> AssessmentError:
        """Build from ``to_dictionary()`` or proto-JSON output."""
        return cls(**error_dict)

    def _to_proto_dictionary(self) -> dict[str, Any]:
        result: dict[str, Any] = {"error_code": _require_str(self.error_code, "error_code")}
        if self.error_message:
            result["error_message"] = _require_str(self.error_message, "error_message")
        if self.stack_trace:
            result["stack_trace"] = _truncate_stack_trace(
                _require_str(self.stack_trace, "stack_trace")
            )
        return result


def _truncate_stack_trace(stack_trace: str) -> str:
    if len(stack_trace) <= _STACK_TRACE_TRUNCATION_LENGTH:
        return stack_trace
    keep = _STACK_TRACE_TRUNCATION_LENGTH - len(_STACK_TRACE_TRUNCATION_PREFIX)
    return _STACK_TRACE_TRUNCATION_PREFIX + stack_trace[-keep:]


# ---------------------------------------------------------------------------------------------
# Value objects
# ---------------------------------------------------------------------------------------------


@dataclass
class FeedbackValue:
    """The value of a feedback assessment plus an optional error.

    Args:
        value: A float, int, str, bool, ``None``, or a list / str-keyed dict of those.
        error: The error that occurred while computing the feedback, if any.
    """

    value: FeedbackValueType | None
    error: AssessmentError | None = None

    def to_dictionary(self) -> dict[str, Any]:
        """Proto JSON of ``mlflow.assessments.Feedback`` (numbers rendered as floats)."""
        result: dict[str, Any] = {"value": to_pb_value(self.value)}
        if self.error:
            result["error"] = self.error._to_proto_dictionary()
        return result

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> FeedbackValue:
        """Build from proto JSON (``{"value": ..., "error": {...}}``)."""
        error = d.get("error")
        return cls(
            value=d["value"],
            error=AssessmentError.from_dictionary(error) if error else None,
        )


@dataclass
class ExpectationValue:
    """The value of an expectation assessment.

    Args:
        value: Any JSON-serialisable value. int/float/bool/str are sent as a protobuf ``Value``;
            anything else (lists, dicts) as a JSON string in ``serialized_value``.
    """

    value: Any

    def to_dictionary(self) -> dict[str, Any]:
        """Proto JSON of ``mlflow.assessments.Expectation``."""
        if not self._need_serialization():
            return {"value": to_pb_value(self.value)}
        try:
            serialized = json.dumps(self.value)
        except Exception as e:
            raise ValueError(
                f"Failed to serialize value {self.value} to JSON string. "
                "Expectation value must be JSON-serializable."
            ) from e
        return {
            "serialized_value": {
                "serialization_format": _JSON_SERIALIZATION_FORMAT,
                "value": serialized,
            }
        }

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> ExpectationValue:
        """Build from proto JSON (``value`` or ``serialized_value``)."""
        if "value" in d:
            return cls(d["value"])
        if "serialized_value" in d:
            return cls(value=json.loads(d["serialized_value"]["value"]))
        raise ValueError(
            "Either 'value' or 'serialized_value' must be present in the dictionary "
            "representation of an Expectation."
        )

    def _need_serialization(self) -> bool:
        return self.value is not None and not isinstance(self.value, (int, float, bool, str))


@dataclass
class IssueReferenceValue:
    """The value of an issue-reference assessment.

    Args:
        issue_name: The name of the referenced issue.
    """

    issue_name: str

    def to_dictionary(self) -> dict[str, Any]:
        """``{"issue_name": ...}``."""
        return {"issue_name": self.issue_name}

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> IssueReferenceValue:
        """Build from ``{"issue_name": ...}``."""
        return cls(issue_name=d["issue_name"])


# ---------------------------------------------------------------------------------------------
# Assessments
# ---------------------------------------------------------------------------------------------


@dataclass
class Assessment:
    """Base class of assessments attached to a trace (or a span of it).

    Exactly one of ``expectation``, ``feedback`` or ``issue`` must be set; use the
    :class:`Feedback`, :class:`Expectation` and :class:`IssueReference` subclasses to create them.

    Args:
        name: Assessment name.
        source: Who or what produced it.
        trace_id: Trace the assessment belongs to (may be unset for standalone assessments).
        run_id: Run that produced it; derived from metadata ``mlflow.assessment.sourceRunId``
            when not given. Not serialised.
        rationale: Justification for the assessment.
        metadata: String key/values (values are stringified when serialised).
        span_id: Span the assessment refers to, if any.
        create_time_ms: Creation time in epoch milliseconds (defaults to now).
        last_update_time_ms: Last update time in epoch milliseconds (defaults to now).
        assessment_id: Server-assigned id (``a-<32 hex>``).
        error: Deprecated top-level error; copied into ``feedback.error``.
        expectation: Expectation value (internal; use :class:`Expectation`).
        feedback: Feedback value (internal; use :class:`Feedback`).
        issue: Issue reference value (internal; use :class:`IssueReference`).
        overrides: Id of the assessment this one overrides.
        valid: Whether the assessment is still valid (set by the backend).
    """

    name: str
    source: AssessmentSource
    trace_id: str | None = None
    run_id: str | None = None
    rationale: str | None = None
    metadata: dict[str, str] | None = None
    span_id: str | None = None
    create_time_ms: int | None = None
    last_update_time_ms: int | None = None
    assessment_id: str | None = None
    error: AssessmentError | None = None
    expectation: ExpectationValue | None = None
    feedback: FeedbackValue | None = None
    issue: IssueReferenceValue | None = None
    overrides: str | None = None
    valid: bool | None = None

    def __post_init__(self) -> None:
        self._validate_value_kind()
        self._attach_error()
        now = int(time.time() * 1000)
        if self.create_time_ms is None:
            self.create_time_ms = now
        if self.last_update_time_ms is None:
            self.last_update_time_ms = now
        if not isinstance(self.source, AssessmentSource):
            raise TypeError(
                "`source` must be an instance of `AssessmentSource`. "
                f"Got {type(self.source)} instead."
            )
        if self.run_id is None and self.metadata and _SOURCE_RUN_ID_METADATA_KEY in self.metadata:
            self.run_id = self.metadata[_SOURCE_RUN_ID_METADATA_KEY]

    def _validate_value_kind(self) -> None:
        kinds = (self.expectation, self.feedback, self.issue)
        if sum(kind is not None for kind in kinds) != 1:
            raise ValueError(
                "Exactly one of `expectation`, `feedback`, or `issue` should be specified."
            )

    def _attach_error(self) -> None:
        if self.error is None:
            return
        if self.expectation is not None:
            raise ValueError("Cannot set `error` when `expectation` is specified.")
        if self.feedback is None:
            raise ValueError("Cannot set `error` when `feedback` is not specified.")
        self.feedback.error = self.error

    def to_dictionary(self) -> dict[str, Any]:
        """Proto JSON (snake_case) identical to MLflow's ``Assessment.to_dictionary()``."""
        d: dict[str, Any] = {}
        if self.assessment_id is not None:
            d["assessment_id"] = _require_str(self.assessment_id, "assessment_id")
        d["assessment_name"] = _require_str(self.name, "name")
        d["trace_id"] = _require_str(self.trace_id or "", "trace_id")
        if self.span_id is not None:
            d["span_id"] = _require_str(self.span_id, "span_id")
        d["source"] = self.source._to_proto_dictionary()
        d["create_time"] = format_timestamp(_require_millis(self.create_time_ms))
        d["last_update_time"] = format_timestamp(_require_millis(self.last_update_time_ms))
        self._add_value_fields(d)
        return d

    def _add_value_fields(self, d: dict[str, Any]) -> None:
        # Keys in proto field-number order, as MessageToDict emits them.
        if self.expectation is not None:
            d["expectation"] = self.expectation.to_dictionary()
        elif self.feedback is not None:
            d["feedback"] = self.feedback.to_dictionary()
        if self.rationale is not None:
            d["rationale"] = _require_str(self.rationale, "rationale")
        if self.metadata:
            d["metadata"] = _metadata_to_proto(self.metadata)
        if self.overrides:
            d["overrides"] = _require_str(self.overrides, "overrides")
        if self.valid is not None:
            d["valid"] = bool(self.valid)
        if self.expectation is None and self.feedback is None and self.issue is not None:
            d["issue"] = self.issue.to_dictionary()

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> Assessment:
        """Parse proto JSON into a :class:`Feedback`, :class:`Expectation` or
        :class:`IssueReference`."""
        if d.get("expectation"):
            return Expectation.from_dictionary(d)
        if d.get("feedback"):
            return Feedback.from_dictionary(d)
        if d.get("issue"):
            return IssueReference.from_dictionary(d)
        raise ValueError(f"Unknown assessment type: {d.get('assessment_name')}")


def _require_millis(value: int | float | None) -> int | float:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Timestamps must be epoch milliseconds, got {value!r}")
    return value  # floats are floored by the formatter


def _metadata_to_proto(metadata: dict[str, Any]) -> dict[str, str]:
    return {_require_str(key, "metadata key"): str(value) for key, value in metadata.items()}


def _common_fields_from_dictionary(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": d.get("trace_id"),
        "source": AssessmentSource.from_dictionary(d["source"]),
        "create_time_ms": parse_timestamp(d["create_time"]),
        "last_update_time_ms": parse_timestamp(d["last_update_time"]),
        "metadata": d.get("metadata"),
        "span_id": d.get("span_id"),
    }


@dataclass
class Feedback(Assessment):
    """Feedback on the output of an operation, e.g. from a human, a heuristic or an LLM judge.

    Args:
        name: Assessment name; defaults to ``"feedback"``.
        value: A float, int, str, bool, or a list / str-keyed dict of those. Numbers come back
            as floats after a round trip (``google.protobuf.Value``).
        error: An exception, :class:`AssessmentError`, or message string (becomes
            ``AssessmentError(error_code="ASSESSMENT_ERROR")``).
        source: Defaults to ``AssessmentSource(source_type="CODE")``.
        trace_id: Trace the feedback belongs to.
        metadata: String key/values.
        span_id: Span the feedback refers to.
        create_time_ms: Creation time in epoch milliseconds (defaults to now).
        last_update_time_ms: Last update time in epoch milliseconds (defaults to now).
        rationale: Justification for the feedback.
        overrides: Id of the assessment this one overrides.
        valid: Whether the feedback is valid (``True`` unless overridden).
    """

    def __init__(
        self,
        name: str = DEFAULT_FEEDBACK_NAME,
        value: FeedbackValueType | None = None,
        error: Exception | AssessmentError | str | None = None,
        source: AssessmentSource | None = None,
        trace_id: str | None = None,
        metadata: dict[str, str] | None = None,
        span_id: str | None = None,
        create_time_ms: int | None = None,
        last_update_time_ms: int | None = None,
        rationale: str | None = None,
        overrides: str | None = None,
        valid: bool = True,
    ) -> None:
        if source is None:
            source = AssessmentSource(source_type=AssessmentSourceType.CODE)
        assessment_error = _coerce_error(error)
        super().__init__(
            name=name,
            source=source,
            trace_id=trace_id,
            metadata=metadata,
            span_id=span_id,
            create_time_ms=create_time_ms,
            last_update_time_ms=last_update_time_ms,
            feedback=FeedbackValue(value=value, error=assessment_error),
            rationale=rationale,
            overrides=overrides,
            valid=valid,
        )
        self.error = assessment_error

    @property
    def value(self) -> FeedbackValueType | None:
        """The feedback value."""
        return self.feedback.value if self.feedback else None

    @value.setter
    def value(self, value: FeedbackValueType | None) -> None:
        if self.feedback is not None:
            self.feedback.value = value

    @property
    def error_code(self) -> str | None:
        """The error code of the feedback's error, if any."""
        return self.feedback.error.error_code if self.feedback and self.feedback.error else None

    @property
    def error_message(self) -> str | None:
        """The error message of the feedback's error, if any."""
        return self.feedback.error.error_message if self.feedback and self.feedback.error else None

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> Feedback:
        """Parse proto JSON with a ``feedback`` field."""
        feedback_dict = d.get("feedback")
        if not feedback_dict:
            raise ValueError("`feedback` must exist in the dictionary.")
        feedback_value = FeedbackValue.from_dictionary(feedback_dict)
        feedback = cls(
            name=d["assessment_name"],
            value=feedback_value.value,
            error=feedback_value.error,
            rationale=d.get("rationale"),
            overrides=d.get("overrides"),
            valid=d.get("valid", True),
            **_common_fields_from_dictionary(d),
        )
        feedback.assessment_id = d.get("assessment_id") or None
        return feedback


def _coerce_error(error: Exception | AssessmentError | str | None) -> AssessmentError | None:
    if error is None or isinstance(error, AssessmentError):
        return error
    if isinstance(error, Exception):
        return AssessmentError(
            error_message=str(error),
            error_code=error.__class__.__name__,
            stack_trace=_get_stacktrace(error),
        )
    if isinstance(error, str):
        return AssessmentError(error_message=error, error_code="ASSESSMENT_ERROR")
    raise TypeError(
        f"'error' must be an Exception, AssessmentError, or string. Got: {type(error)}"
    )


@dataclass
class Expectation(Assessment):
    """The expected output of an operation, e.g. the ground-truth answer to a question.

    Args:
        name: Assessment name.
        value: Any JSON-serialisable value (must not be ``None``).
        source: Defaults to ``AssessmentSource(source_type="HUMAN")``.
        trace_id: Trace the expectation belongs to.
        metadata: String key/values.
        span_id: Span the expectation refers to.
        create_time_ms: Creation time in epoch milliseconds (defaults to now).
        last_update_time_ms: Last update time in epoch milliseconds (defaults to now).
    """

    def __init__(
        self,
        name: str,
        value: Any,
        source: AssessmentSource | None = None,
        trace_id: str | None = None,
        metadata: dict[str, str] | None = None,
        span_id: str | None = None,
        create_time_ms: int | None = None,
        last_update_time_ms: int | None = None,
    ) -> None:
        if source is None:
            source = AssessmentSource(source_type=AssessmentSourceType.HUMAN)
        if value is None:
            raise ValueError("The `value` field must be specified.")
        super().__init__(
            name=name,
            source=source,
            trace_id=trace_id,
            metadata=metadata,
            span_id=span_id,
            create_time_ms=create_time_ms,
            last_update_time_ms=last_update_time_ms,
            expectation=ExpectationValue(value=value),
        )

    @property
    def value(self) -> Any:
        """The expected value."""
        return self.expectation.value if self.expectation else None

    @value.setter
    def value(self, value: Any) -> None:
        if self.expectation is not None:
            self.expectation.value = value

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> Expectation:
        """Parse proto JSON with an ``expectation`` field (rationale/overrides/valid ignored)."""
        expectation_dict = d.get("expectation")
        if not expectation_dict:
            raise ValueError("`expectation` must exist in the dictionary.")
        expectation_value = ExpectationValue.from_dictionary(expectation_dict)
        expectation = cls(
            name=d["assessment_name"],
            value=expectation_value.value,
            **_common_fields_from_dictionary(d),
        )
        expectation.assessment_id = d.get("assessment_id") or None
        return expectation


@dataclass
class IssueReference(Assessment):
    """A link from a trace to a discovered quality or operational issue.

    Args:
        issue_id: Id of the issue (stored as the assessment name).
        issue_name: Name of the issue.
        source: Defaults to ``AssessmentSource(source_type="LLM_JUDGE")``.
        trace_id: Trace the reference belongs to.
        run_id: Run that discovered the issue.
        rationale: Justification.
        metadata: String key/values.
        span_id: Span the reference refers to.
        create_time_ms: Creation time in epoch milliseconds (defaults to now).
        last_update_time_ms: Last update time in epoch milliseconds (defaults to now).
    """

    def __init__(
        self,
        issue_id: str,
        issue_name: str,
        source: AssessmentSource | None = None,
        trace_id: str | None = None,
        run_id: str | None = None,
        rationale: str | None = None,
        metadata: dict[str, str] | None = None,
        span_id: str | None = None,
        create_time_ms: int | None = None,
        last_update_time_ms: int | None = None,
    ) -> None:
        if source is None:
            source = AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE)
        if issue_id is None:
            raise ValueError("The `issue_id` field must be specified.")
        if issue_name is None:
            raise ValueError("The `issue_name` field must be specified.")
        super().__init__(
            name=issue_id,
            source=source,
            trace_id=trace_id,
            run_id=run_id,
            rationale=rationale,
            metadata=metadata,
            span_id=span_id,
            create_time_ms=create_time_ms,
            last_update_time_ms=last_update_time_ms,
            issue=IssueReferenceValue(issue_name=issue_name),
        )

    @property
    def issue_id(self) -> str:
        """The issue id (alias of ``name``)."""
        return self.name

    @issue_id.setter
    def issue_id(self, issue_id: str) -> None:
        self.name = issue_id

    @property
    def issue_name(self) -> str:
        """The issue name."""
        return self.issue.issue_name if self.issue else ""

    @issue_name.setter
    def issue_name(self, issue_name: str) -> None:
        if self.issue is not None:
            self.issue.issue_name = issue_name

    @classmethod
    def from_dictionary(cls, d: dict[str, Any]) -> IssueReference:
        """Parse proto JSON with an ``issue`` field."""
        issue_dict = d.get("issue")
        if not issue_dict:
            raise ValueError("`issue` must exist in the dictionary.")
        issue_ref = cls(
            issue_id=d["assessment_name"],
            issue_name=issue_dict["issue_name"],
            rationale=d.get("rationale"),
            **_common_fields_from_dictionary(d),
        )
        issue_ref.assessment_id = d.get("assessment_id") or None
        if run_id := d.get("run_id"):
            issue_ref.run_id = run_id
        return issue_ref


# ---------------------------------------------------------------------------------------------
# Changed fields of an update (the MLflow REST bodies are built in exporters/mlflow/_client.py)
# ---------------------------------------------------------------------------------------------

# The order in which MLflow's RestStore.update_assessment appends update-mask paths.
UPDATE_MASK_ORDER = ("assessment_name", "expectation", "feedback", "rationale", "metadata")


def assessment_update_fields(
    *,
    name: str | None = None,
    expectation: ExpectationValue | Expectation | None = None,
    feedback: FeedbackValue | Feedback | None = None,
    rationale: str | None = None,
    metadata: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """What an UpdateAssessment changes, as MLflow's ``RestStore.update_assessment`` sees it.

    Returns:
        The changed fields as protobuf JSON, in proto field order (an empty ``metadata`` is
        left out), and the update-mask paths in MLflow's order (an empty ``metadata`` included).

    Raises:
        ValueError: Both ``expectation`` and ``feedback`` were given.
        TypeError: A non-string name or rationale.
    """
    if expectation is not None and feedback is not None:
        raise ValueError("Exactly one of `expectation` or `feedback` should be specified.")
    if isinstance(expectation, Expectation):
        expectation = expectation.expectation
    if isinstance(feedback, Feedback):
        feedback = feedback.feedback
    fields: dict[str, Any] = {}
    if name is not None:
        fields["assessment_name"] = _require_str(name, "name")
    if feedback is not None:
        fields["feedback"] = feedback.to_dictionary()
    if expectation is not None:
        fields["expectation"] = expectation.to_dictionary()
    if rationale is not None:
        fields["rationale"] = _require_str(rationale, "rationale")
    if metadata:
        fields["metadata"] = _metadata_to_proto(metadata)
    given = {"assessment_name": name, "expectation": expectation, "feedback": feedback,
             "rationale": rationale, "metadata": metadata}
    return fields, [path for path in UPDATE_MASK_ORDER if given[path] is not None]
