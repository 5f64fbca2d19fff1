"""Assertion helpers shared by the integration tests."""

from __future__ import annotations

import json
from typing import Any

from flowtel.entities import Span, Trace


def tree(trace: Trace, *, by_name: bool = False) -> list[tuple[int, str, str]]:
    """``(depth, name, span_type)`` of every span, depth-first; siblings in start order, or by name
    (``by_name``) where they run concurrently."""
    spans = sorted(
        trace.data.spans, key=lambda s: (s.name, s.start_time_ns) if by_name else (s.start_time_ns, s.span_id)
    )
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    rows: list[tuple[int, str, str]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            rows.append((depth, span.name, str(span.span_type)))
            visit(span.span_id, depth + 1)

    visit(None, 0)
    return rows


def without_cost(attributes: dict[str, Any]) -> dict[str, Any]:
    """Span attributes without the cost flowtel adds (the price, or why there is none): its value
    depends on whether the price catalogue is installed; tests/test_cost.py checks it."""
    return {k: v for k, v in attributes.items() if k not in ("mlflow.llm.cost", "flowtel.llm.costUnpriced")}


def only_span(trace: Trace) -> Span:
    assert len(trace.data.spans) == 1, [s.name for s in trace.data.spans]
    return trace.data.spans[0]


def chunk_values(span: Span) -> list[Any]:
    """The decoded ``mlflow.chunk.value`` of each chunk event, in order."""
    events = [e for e in span.events if e.name.startswith("mlflow.chunk.item.")]
    assert [e.name for e in events] == [f"mlflow.chunk.item.{i}" for i in range(len(events))]
    return [json.loads(e.attributes["mlflow.chunk.value"]) for e in events]


def exception_event(span: Span) -> dict[str, Any]:
    [event] = [e for e in span.events if e.name == "exception"]
    return event.attributes


def assert_no_secret(trace: Trace, *secrets: str) -> None:
    text = json.dumps(trace.to_dict())
    for secret in secrets:
        assert secret not in text
