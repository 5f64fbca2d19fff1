"""Per-trace sampling: the root decides, children follow, so no trace is ever partial."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
_MAX_PENDING_DECISIONS = 200_000


def trace_id_sampled(trace_id: int, ratio: float) -> bool:
    """The decision ``TraceIdRatioBased(ratio)`` makes for this trace id (deterministic)."""
    if ratio >= 1.0:
        return True
    return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < TraceIdRatioBased.get_bound_for_rate(ratio)


class _RootSampler(Sampler):
    """Decides per trace at its root. With ``keep_errors`` every trace is recorded and the
    ratio is applied when the trace ends (:func:`keep_trace`), so traces ending in ERROR survive
    sampling; the ratio each root used is remembered in ``ratios`` until then."""

    def __init__(self, ratio: float, keep_errors: bool = False) -> None:
        self._default = ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio)
        self._ratio = ratio
        self.keep_errors = keep_errors and ratio < 1.0
        self.ratios: dict[int, float] = {}

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
        if self.keep_errors:
            ratio = self._ratio
            clean = attributes
            if attributes and SAMPLING_OVERRIDE_ATTRIBUTE in attributes:
                ratio = float(attributes[SAMPLING_OVERRIDE_ATTRIBUTE])  # type: ignore[arg-type]
                clean = {k: v for k, v in attributes.items() if k != SAMPLING_OVERRIDE_ATTRIBUTE}
            self.ratios[trace_id] = ratio
            if len(self.ratios) > _MAX_PENDING_DECISIONS:  # traces dropped before they ended
                del self.ratios[next(iter(self.ratios))]
            return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, clean, links)
        if attributes and SAMPLING_OVERRIDE_ATTRIBUTE in attributes:
            clean = {k: v for k, v in attributes.items() if k != SAMPLING_OVERRIDE_ATTRIBUTE}
            ratio = float(attributes[SAMPLING_OVERRIDE_ATTRIBUTE])  # type: ignore[arg-type]
            sampler = ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio)
            result = sampler.should_sample(parent_context, trace_id, name, kind, clean, links)
            sampled = result.decision.is_sampled()  # type: ignore[no-untyped-call]  # unannotated in the OTel SDK
            return SamplingResult(result.decision, clean if sampled else None, result.trace_state)
        return self._default.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return f"FlowtelRootSampler{{{self._ratio}}}"


def make_sampler(ratio: float, keep_errors: bool = False) -> tuple[Sampler, _RootSampler]:
    root = _RootSampler(ratio, keep_errors)
    return ParentBased(root=root), root
