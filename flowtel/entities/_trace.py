from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from flowtel.entities._constants import SpanAttributeKey
from flowtel.entities._span import Span
from flowtel.entities._trace_info import TraceInfo


@dataclass
class TraceData:
    """The spans of a trace."""

    spans: list[Span] = field(default_factory=list)

    def __init__(self, spans: list[Span] | None = None, **kwargs: Any) -> None:
        self.spans = list(spans or [])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceData:
        if not isinstance(d, dict):
            raise TypeError(f"TraceData.from_dict() expects a dictionary. Got: {type(d).__name__}")
        return cls(spans=[Span.from_dict(s) for s in d.get("spans", [])])

    def to_dict(self) -> dict[str, Any]:
        return {"spans": [s.to_dict() for s in self.spans]}

    def _get_root_span(self) -> Span | None:
        return next((s for s in self.spans if s.parent_id is None), None)

    @property
    def request(self) -> str | None:
        """The root span's raw (JSON string) inputs."""
        root = self._get_root_span()
        if root is None or root._span.attributes is None:
            return None
        return cast("str | None", root._span.attributes.get(SpanAttributeKey.INPUTS))  # JSON strings by contract

    @property
    def response(self) -> str | None:
        """The root span's raw (JSON string) outputs."""
        root = self._get_root_span()
        if root is None or root._span.attributes is None:
            return None
        return cast("str | None", root._span.attributes.get(SpanAttributeKey.OUTPUTS))  # JSON strings by contract

    @property
    def intermediate_outputs(self) -> dict[str, Any] | None:
        """Outputs of the non-root spans by (de-duplicated) name."""
        root = self._get_root_span()
        if root is not None and root.get_attribute(SpanAttributeKey.INTERMEDIATE_OUTPUTS):
            outputs: dict[str, Any] = root.get_attribute(SpanAttributeKey.INTERMEDIATE_OUTPUTS)
            return outputs
        if len(self.spans) <= 1:
            return None
        counts: dict[str, int] = {}
        for s in self.spans:
            counts[s.name] = counts.get(s.name, 0) + 1
        seen = {name: 1 for name, n in counts.items() if n > 1}
        result: dict[str, Any] = {}
        for s in self.spans:
            name = s.name
            if name in seen:
                name, seen[s.name] = f"{s.name}_{seen[s.name]}", seen[s.name] + 1
            if s.parent_id and s.outputs is not None:
                result[name] = s.outputs
        return result


@dataclass
class Trace:
    """A trace: :class:`TraceInfo` plus :class:`TraceData`."""

    info: TraceInfo
    data: TraceData

    def __repr__(self) -> str:
        return f"Trace(trace_id={self.info.trace_id!r})"

    @property
    def trace_id(self) -> str:
        return self.info.trace_id

    def _repr_html_(self) -> str:
        """Jupyter / VS Code notebooks: a compact, self-contained span tree (no script, no network)."""
        from flowtel.entities._html import trace_to_html

        return trace_to_html(self)

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info.to_dict(), "data": self.data.to_dict()}

    def to_json(self, pretty: bool = False) -> str:
        return json.dumps(self.to_dict(), indent=2 if pretty else None)

    @classmethod
    def from_dict(cls, trace_dict: dict[str, Any]) -> Trace:
        """Build a trace from ``to_dict()`` output (flowtel's or MLflow's).

        Raises:
            ValueError: when the dict is not a trace.
        """
        if not isinstance(trace_dict, dict):
            raise ValueError(f"A trace dict is required, got {type(trace_dict).__name__}.")
        info, data = trace_dict.get("info"), trace_dict.get("data")
        if info is None or data is None:
            raise ValueError(
                "Unable to parse Trace from dictionary. Expected keys: 'info' and 'data'. "
                f"Received keys: {list(trace_dict.keys())}"
            )
        try:
            return cls(info=TraceInfo.from_dict(info), data=TraceData.from_dict(data))
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"Invalid trace dict ({type(exc).__name__}: {exc}).") from exc

    @classmethod
    def from_json(cls, trace_json: str) -> Trace:
        try:
            trace_dict = json.loads(trace_json)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"Unable to parse trace JSON: {exc}") from exc
        return cls.from_dict(trace_dict)

    def search_spans(
        self,
        span_type: str | None = None,
        name: str | re.Pattern[str] | None = None,
        span_id: str | None = None,
    ) -> list[Span]:
        """Spans matching every given criterion (name may be a string or a compiled regex)."""
        if name is not None and not isinstance(name, (str, re.Pattern)):
            raise ValueError(f"Invalid type for 'name'. Expected str or re.Pattern. Got: {type(name)}")
        if span_type is not None and not isinstance(span_type, str):
            raise ValueError(f"Invalid type for 'span_type'. Expected str. Got: {type(span_type)}")

        def match(span: Span) -> bool:
            if isinstance(name, str) and span.name != name:
                return False
            if isinstance(name, re.Pattern) and name.search(span.name) is None:
                return False
            if span_type is not None and span.span_type != span_type:
                return False
            return span_id is None or span.span_id == span_id

        return [s for s in self.data.spans if match(s)]

    def search_assessments(
        self,
        name: str | None = None,
        *,
        span_id: str | None = None,
        all: bool = False,
        type: Literal["expectation", "feedback"] | None = None,
    ) -> list[Any]:
        """Assessments by name / span; only valid (not overridden) ones unless ``all``."""
        from flowtel.entities._assessment import Expectation, Feedback

        kinds = {"expectation": Expectation, "feedback": Feedback}
        return [
            a
            for a in self.info.assessments
            if (name is None or a.name == name)
            and (span_id is None or a.span_id == span_id)
            and (all or a.valid in (True, None))
            and (type is None or isinstance(a, kinds[type]))
        ]

    def to_pandas_dataframe_row(self) -> dict[str, Any]:
        info = self.info
        return {
            "trace_id": info.trace_id,
            "trace": self,
            "client_request_id": info.client_request_id,
            "state": info.state,
            "request_time": info.request_time,
            "execution_duration": info.execution_duration,
            "request": _loads(self.data.request),
            "response": _loads(self.data.response),
            "trace_metadata": info.trace_metadata,
            "tags": info.tags,
            "spans": [s.to_dict() for s in self.data.spans],
            "assessments": [a.to_dictionary() for a in info.assessments],
        }

    @staticmethod
    def pandas_dataframe_columns() -> list[str]:
        return [
            "trace_id", "trace", "client_request_id", "state", "request_time",
            "execution_duration", "request", "response", "trace_metadata", "tags", "spans",
            "assessments",
        ]


def _loads(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
