"""Per-trace sampling: the root decides, children follow, so no trace is ever partial."""

from __future__ import annotations

from typing import Any, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

# A root span may carry its own ratio (``@trace(sampling_ratio_override=...)``) in this start
# attribute; the sampler reads it and strips it so it never reaches the recorded span.
SAMPLING_OVERRIDE_ATTRIBUTE = "flowtel.sampling_ratio_override"


class _RootSampler(Sampler):
    def __init__(self, ratio: float) -> None:
        self._default = ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio)
        self._ratio = ratio

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if attributes and SAMPLING_OVERRIDE_ATTRIBUTE in attributes:
            clean = {k: v for k, v in attributes.items() if k != SAMPLING_OVERRIDE_ATTRIBUTE}
            ratio = float(attributes[SAMPLING_OVERRIDE_ATTRIBUTE])  # type: ignore[arg-type]
            sampler = ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio)
            result = sampler.should_sample(parent_context, trace_id, name, kind, clean, links)
            return SamplingResult(result.decision, clean if result.decision.is_sampled() else None,
                                  result.trace_state)
        return self._default.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return f"FlowtelRootSampler{{{self._ratio}}}"


def make_sampler(ratio: float) -> Sampler:
    return ParentBased(root=_RootSampler(ratio))
