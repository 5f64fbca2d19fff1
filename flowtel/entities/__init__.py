"""The MLflow Tracing data model: spans, traces, their metadata and assessments.

Pure data: nothing here does I/O. Names and behaviour mirror ``mlflow.entities``.
"""

from __future__ import annotations

from flowtel.entities._assessment import (
    Assessment,
    AssessmentError,
    AssessmentSource,
    AssessmentSourceType,
    Expectation,
    ExpectationValue,
    Feedback,
    FeedbackValue,
    IssueReference,
)
from flowtel.entities._constants import (
    SpanAttributeKey,
    TokenUsageKey,
    TraceMetadataKey,
    TraceTagKey,
)
from flowtel.entities._document import Document
from flowtel.entities._experiment import Experiment
from flowtel.entities._span import LiveSpan, NoOpSpan, Span
from flowtel.entities._span_event import SpanEvent
from flowtel.entities._span_status import SpanStatus, SpanStatusCode
from flowtel.entities._span_type import SpanLogLevel, SpanType
from flowtel.entities._trace import Trace, TraceData
from flowtel.entities._trace_info import TraceInfo
from flowtel.entities._trace_location import (
    InferenceTableLocation,
    MlflowExperimentLocation,
    TraceLocation,
    TraceLocationType,
)
from flowtel.entities._trace_state import TraceState, TraceStatus

__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "Document",
    "Experiment",
    "Expectation",
    "ExpectationValue",
    "Feedback",
    "FeedbackValue",
    "InferenceTableLocation",
    "IssueReference",
    "LiveSpan",
    "MlflowExperimentLocation",
    "NoOpSpan",
    "Span",
    "SpanAttributeKey",
    "SpanEvent",
    "SpanLogLevel",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "TokenUsageKey",
    "Trace",
    "TraceData",
    "TraceInfo",
    "TraceLocation",
    "TraceLocationType",
    "TraceMetadataKey",
    "TraceState",
    "TraceStatus",
    "TraceTagKey",
]

