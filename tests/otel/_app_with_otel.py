"""An application with its own OpenTelemetry set-up, using flowtel too. Run in a fresh process:

    python tests/otel/_app_with_otel.py first|after <otlp-grpc-endpoint>

``first``: the application installs its global TracerProvider before flowtel starts; ``after``:
flowtel has already recorded a trace when the application installs it. Prints one JSON line
describing what each side recorded.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased


class CountingProcessor(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[str] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


def install_app_provider() -> tuple[TracerProvider, InMemorySpanExporter, CountingProcessor, Any]:
    sampler = ParentBased(TraceIdRatioBased(1.0))
    provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "shop"}))
    exported, counting = InMemorySpanExporter(), CountingProcessor()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    provider.add_span_processor(counting)
    trace.set_tracer_provider(provider)
    return provider, exported, counting, sampler


def main(mode: str, endpoint: str) -> None:
    app_tracer = trace.get_tracer("shop")  # taken before any provider exists, as libraries do
    if mode == "first":
        provider, exported, counting, sampler = install_app_provider()

    import flowtel
    from flowtel.exporters import InMemoryExporter, OtlpExporter

    mlflow_view = InMemoryExporter()
    flowtel.tracing.set_destination(mlflow_view, OtlpExporter(endpoint, protocol="grpc", conventions="mlflow"))

    @flowtel.trace(span_type="CHAT_MODEL")
    def ask_llm(question: str) -> str:
        with app_tracer.start_as_current_span("cache.lookup"):  # another instrumentation, inside
            pass
        return "Paris"

    if mode == "after":
        ask_llm("warm-up")  # flowtel is running before the application sets its provider
        provider, exported, counting, sampler = install_app_provider()

    with app_tracer.start_as_current_span("GET /capital"):
        ask_llm("Capital of France?")
    assert flowtel.flush(10)
    flowtel.tracing.reset()  # flowtel's reset must leave the application's set-up alone
    with app_tracer.start_as_current_span("after flowtel reset"):
        pass

    def describe(span: ReadableSpan) -> dict[str, Any]:
        parent = span.parent
        return {"name": span.name, "trace_id": f"{span.context.trace_id:032x}", "span_id": f"{span.context.span_id:016x}",
                "parent_id": f"{parent.span_id:016x}" if parent else None}

    print(json.dumps({
        "provider_unchanged": trace.get_tracer_provider() is provider,
        "sampler_unchanged": provider.sampler is sampler,
        "app_processor_saw": counting.ended,
        "app_exported": [describe(s) for s in exported.get_finished_spans()],
        "mlflow_view": [[{"name": s.name, "span_id": s.span_id, "parent_id": s.parent_id} for s in t.data.spans]
                        for t in mlflow_view.traces],
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
