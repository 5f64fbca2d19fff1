"""OTLP export throughput: flowtel vs a bare OpenTelemetry SDK pipeline, same receiver, same run.

    python benchmarks/bench_otlp.py [--traces 2000] [--rounds 3] [--protocols grpc,http/protobuf]
        [--modes export,end-to-end] [--with-mlflow-conventions] [--quick] [--json results.json]

The parent process runs the real OTLP receivers of ``tests/_servers`` (gRPC: the official
``TraceService``; HTTP/protobuf: ``POST /v1/traces``) on 127.0.0.1. Each client runs in its own
subprocess and records N traces of 10 spans (a root with 9 children; the same names, inputs
and outputs on both sides):

* ``otel``: bare OpenTelemetry SDK, ``TracerProvider`` + ``BatchSpanProcessor`` (queue large
  enough to drop nothing) + the SDK's ``OTLPSpanExporter`` for the protocol;
* ``flowtel``: ``@flowtel.trace`` functions, delivered by flowtel's pipeline (queue limits raised
  so that nothing is dropped) through ``flowtel.exporters.OtlpExporter`` with its default
  conventions for a collector, ``genai``: the richer export (OTel GenAI semconv + OpenInference
  kinds, ``input.value`` / ``output.value``, tool call arguments/results, the trace's tags and
  metadata on the root);
* ``flowtel-mlflow`` (``--with-mlflow-conventions``): the same with ``conventions="mlflow"``
  (MLflow's attributes as recorded), for comparison.

Modes:

* ``export`` (the target, flowtel >= 0.9x): how fast each pipeline delivers traces that are
  already finished. The exporter is held shut while the traces are recorded (the processor's
  or pipeline's queue fills), then opened; traces/s = N / seconds from opening until the flush
  returned, and CPU is the client's CPU time in that window. For flowtel this includes trace
  finalisation (previews, size stats), encoding and sending; for OTel the batch processor,
  encoding and sending. (flowtel's first batch, 100 traces, is finalised before the gate opens.)
* ``end-to-end`` (for information): recording and delivering together, from the first span to
  the flush. flowtel records more per span than a bare OTel span (bound arguments as JSON
  inputs, outputs, span types, trace assembly): that part is ``benchmarks/bench_overhead.py``.

Each round checks that the receiver got exactly N x 10 spans, none twice. Rounds alternate the
order of the clients; tables show the median round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from _workload import ANSWER, CHILDREN, QUESTION, flowtel_agent  # noqa: E402,F401


# -- clients (run in subprocesses) ---------------------------------------------------------------
def _client_flowtel(n: int, protocol: str, endpoint: str, gated: bool) -> dict[str, Any]:
    import threading

    import flowtel
    from flowtel.exporters import ExportResult, OtlpExporter, TraceExporter

    gate = threading.Event()
    if not gated:
        gate.set()

    class Gated(TraceExporter):
        name = "otlp"
        needs_size_stats = False  # as OtlpExporter: an OTLP-only setup skips MLflow's size stats

        def __init__(self, inner: OtlpExporter) -> None:
            self.inner = inner

        def export(self, traces: Any) -> ExportResult:
            gate.wait()
            return self.inner.export(traces)

        def shutdown(self) -> None:
            self.inner.shutdown()

    flowtel.tracing.set_destination(Gated(OtlpExporter(endpoint, protocol=protocol)))

    call, flush = flowtel_agent()
    return _run(n, call, flush, gate)


def _client_otel(n: int, protocol: str, endpoint: str, gated: bool) -> dict[str, Any]:
    import threading

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        exporter: Any = GrpcExporter(endpoint=endpoint, insecure=True)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter(endpoint=endpoint)
    gate = threading.Event()
    if not gated:
        gate.set()

    class Gated(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            gate.wait()
            return exporter.export(spans)  # type: ignore[no-any-return]

        def shutdown(self) -> None:
            exporter.shutdown()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Gated(), max_queue_size=n * (CHILDREN + 1) + 1000))
    tracer = provider.get_tracer("bench")

    def agent(i: int) -> None:
        with tracer.start_as_current_span("agent") as root:
            root.set_attribute("mlflow.spanType", "AGENT")
            root.set_attribute("mlflow.spanFunctionName", "agent")
            root.set_attribute("mlflow.spanInputs", json.dumps({"i": i, "question": QUESTION}))
            for j in range(CHILDREN):
                with tracer.start_as_current_span("tool") as child:
                    child.set_attribute("mlflow.spanType", "TOOL")
                    child.set_attribute("mlflow.spanFunctionName", "tool")
                    child.set_attribute("mlflow.spanInputs", json.dumps({"i": i, "j": j}))
                    child.set_attribute("mlflow.spanOutputs", f"{ANSWER} ({i}.{j})")
            root.set_attribute("mlflow.spanOutputs", json.dumps({"answer": ANSWER}))

    def flush() -> dict[str, Any]:
        provider.force_flush(3_600_000)
        return {}

    return _run(n, agent, flush, gate)


def _run(n: int, produce: Callable[[int], Any], flush: Callable[[], dict[str, Any]], gate: Any) -> dict[str, Any]:
    """Record, then (export mode) open the gate; time and CPU from the first span, or from the
    gate's opening when it was shut."""
    gated = not gate.is_set()
    cpu0, t0 = time.process_time(), time.time()
    for i in range(n):
        produce(i)
    if gated:
        cpu0, t0 = time.process_time(), time.time()
        gate.set()
    extra = flush()
    t_flushed = time.time()
    return {"t_start": t0, "t_flushed": t_flushed, "cpu_s": time.process_time() - cpu0, **extra}


def _client_flowtel_lazy_stats(n: int, protocol: str, endpoint: str, gated: bool) -> dict[str, Any]:
    """What-if, not shipped: flowtel with MLflow's size stats left out of trace finalisation
    (an OTLP backend does not use them; only the MLflow and local destinations do)."""
    import flowtel.tracing._finalize as finalize_module

    finalize_module.add_size_stats = lambda trace: None  # type: ignore[assignment]
    return _client_flowtel(n, protocol, endpoint, gated)


_CLIENTS = {"flowtel": _client_flowtel, "otel": _client_otel, "flowtel-lazy-stats": _client_flowtel_lazy_stats,
            "flowtel-mlflow": _client_flowtel}


# -- orchestration (parent process) --------------------------------------------------------------
def _run_client(kind: str, n: int, protocol: str, receiver: Any, mode: str) -> dict[str, Any]:
    receiver.clear()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_", "FLOWTEL_"))}
    # Queues large enough to drop nothing on both sides (the OTel client sizes its own).
    env.update({"PYTHONPATH": str(ROOT), "FLOWTEL_SPOOL_ENABLED": "false", "FLOWTEL_MAX_QUEUED_TRACES": str(10 * n),
                "FLOWTEL_MAX_QUEUED_BYTES": str(4 * 1024**3)})
    if kind == "flowtel-mlflow":
        env["FLOWTEL_OTLP_CONVENTIONS"] = "mlflow"
    command = [sys.executable, __file__, "--client", kind, "--protocol", protocol,
               "--endpoint", receiver.endpoint, "--traces", str(n), "--mode", mode]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} client failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    spans = receiver.spans()
    counts = Counter(s.span_id for s in spans)
    result["received_traces"] = len({s.trace_id for s in spans})
    result["duplicated_spans"] = sum(c - 1 for c in counts.values())
    if len(spans) != n * (CHILDREN + 1) or result["duplicated_spans"]:
        raise RuntimeError(f"{kind}: received {len(spans)} spans ({result['duplicated_spans']} duplicated), "
                           f"expected {n * (CHILDREN + 1)}")
    seconds = result["t_flushed"] - result["t_start"]
    result["seconds"] = seconds
    result["traces_per_s"] = result["received_traces"] / seconds
    result["cpu_ms_per_trace"] = 1000 * result["cpu_s"] / n
    return result


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rate = statistics.median(r["traces_per_s"] for r in rounds)
    return min(rounds, key=lambda r: abs(r["traces_per_s"] - rate))


def _report(n: int, results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]]) -> None:
    for mode, by_protocol in results.items():
        header = f"{'mode':<12}{'protocol':<15}{'client':<20}{'N':>6}{'received':>10}{'seconds':>9}" \
                 f"{'traces/s':>10}{'spans/s':>10}{'CPU ms/trace':>14}"
        print("\n" + header + "\n" + "-" * len(header))
        for protocol, by_client in by_protocol.items():
            for kind, rounds in by_client.items():
                r = _median_round(rounds)
                print(f"{mode:<12}{protocol:<15}{kind:<20}{n:>6}{r['received_traces']:>10}{r['seconds']:>9.2f}"
                      f"{r['traces_per_s']:>10.0f}{r['traces_per_s'] * (CHILDREN + 1):>10.0f}"
                      f"{r['cpu_ms_per_trace']:>14.3f}")
    print()
    for mode, by_protocol in results.items():
        for protocol, by_client in by_protocol.items():
            flowtel = statistics.median(r["traces_per_s"] for r in by_client["flowtel"])
            otel = statistics.median(r["traces_per_s"] for r in by_client["otel"])
            target = ("meets the 0.9x target" if flowtel >= 0.9 * otel else "BELOW the 0.9x target") \
                if mode == "export" else "information only"
            rates = {kind: ", ".join(f"{r['traces_per_s']:.0f}" for r in rounds) for kind, rounds in by_client.items()}
            print(f"{mode:<11} {protocol:<14} flowtel / bare OTel traces/s: x{flowtel / otel:.2f} ({target}; "
                  f"rounds flowtel {rates['flowtel']} / otel {rates['otel']}); "
                  f"by CPU per trace: x{_cpu_ratio(by_client, 'flowtel'):.2f}")
            if "flowtel-mlflow" in by_client:
                plain = statistics.median(r["traces_per_s"] for r in by_client["flowtel-mlflow"])
                print(f"{'':<11} {'':<14} flowtel, mlflow conventions: x{plain / otel:.2f} "
                      f"(rounds {rates['flowtel-mlflow']}); by CPU per trace: "
                      f"x{_cpu_ratio(by_client, 'flowtel-mlflow'):.2f}")
            if "flowtel-lazy-stats" in by_client:
                lazy = statistics.median(r["traces_per_s"] for r in by_client["flowtel-lazy-stats"])
                print(f"{'':<11} {'':<14} what-if, size stats not computed: x{lazy / otel:.2f} "
                      f"(rounds {rates['flowtel-lazy-stats']}); by CPU per trace: "
                      f"x{_cpu_ratio(by_client, 'flowtel-lazy-stats'):.2f}")


def _cpu_ratio(by_client: dict[str, list[dict[str, Any]]], kind: str) -> float:
    """Bare OTel's CPU per trace / this client's: the throughput ratio on an otherwise idle core
    (steadier than wall-clock rates on a busy machine)."""
    otel = statistics.median(r["cpu_ms_per_trace"] for r in by_client["otel"])
    return otel / statistics.median(r["cpu_ms_per_trace"] for r in by_client[kind])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=2000, help="traces per client and round (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client (default 3)")
    parser.add_argument("--protocols", default="grpc,http/protobuf")
    parser.add_argument("--modes", default="export,end-to-end")
    parser.add_argument("--what-if", action="store_true",
                        help="also run flowtel with trace size stats left out of finalisation (not shipped)")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="500 traces, 1 round")
    parser.add_argument("--with-mlflow-conventions", action="store_true",
                        help="also run flowtel with conventions=mlflow (client flowtel-mlflow)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(_CLIENTS[args.client](args.traces, args.protocol, args.endpoint, args.mode == "export")),
              flush=True)
        return
    if args.quick:
        args.traces, args.rounds = 500, 1
    sys.path.insert(0, str(ROOT))
    from tests._servers.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"{os.cpu_count()} CPUs; {args.traces} traces of {CHILDREN + 1} spans per client and round, "
          f"{args.rounds} round(s); receivers on 127.0.0.1 in the parent process")
    results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for mode in modes:
        for protocol in protocols:
            receiver_class = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
            with receiver_class() as receiver:
                kinds = ["otel", "flowtel"] + (["flowtel-mlflow"] if args.with_mlflow_conventions else []) \
                    + (["flowtel-lazy-stats"] if args.what_if else [])
                by_client: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
                results.setdefault(mode, {})[protocol] = by_client
                for round_ in range(args.rounds):
                    order = kinds if round_ % 2 == 0 else kinds[::-1]
                    for kind in order:
                        print(f"{mode} {protocol} round {round_ + 1}: {kind}...", flush=True)
                        by_client[kind].append(_run_client(kind, args.traces, protocol, receiver, mode))
    _report(args.traces, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
