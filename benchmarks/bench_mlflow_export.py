"""Export throughput to a real local MLflow tracking server: flowtel vs MLflow's own client.

    python benchmarks/bench_mlflow_export.py [--traces 1000] [--nodrop-traces 300]
        [--clients otel,flowtel,mlflow,mlflow-nodrop] [--json results.json]

Starts one ``mlflow server`` (SQLite backend, 127.0.0.1, one uvicorn worker) and runs each
client in its own subprocess against its own fresh experiment of that server. Every client
produces N traces of 10 spans (a root with 9 children, the same inputs and outputs) as fast as
it can, then flushes. Reported per client:

* delivered: traces the server's search API returns for the client's experiment afterwards
  (``complete``: of those, traces that also have their trace info applied -- metadata
  ``mlflow.trace.infoFinalized`` -- and their spans in the tracking store);
* traces/s: delivered / seconds from the first span until the client's flush returned (the
  server has acknowledged, so everything is visible through its API at that point; the parent
  then verifies the count);
* CPU/trace: the client process's CPU time (user + system) while producing and flushing,
  divided by N (interpreter start and imports excluded);
* peak RSS: the client process's maximum resident set size (imports included).

Clients:

* ``otel``: bare OpenTelemetry SDK, ``BatchSpanProcessor`` + ``OTLPSpanExporter`` (HTTP/protobuf)
  to ``/v1/traces`` with a queue large enough to drop nothing: what the server can ingest over
  OTLP (spans only -- no trace metadata, no StartTraceV3): the ingest ceiling.
* ``flowtel``: flowtel with default settings, ``MLFLOW_TRACKING_URI`` pointing at the server.
* ``flowtel-info-first``: flowtel with ``FLOWTEL_MLFLOW_EXPORT_ORDER=info_first`` (StartTraceV3
  before the spans: about half the server work per trace; not the default, see the README).
* ``mlflow``: ``mlflow`` with default settings (async logging; drops when its queue is full).
* ``mlflow-nodrop``: ``mlflow`` with ``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`` (every span and
  trace is sent inline, nothing is dropped); runs ``--nodrop-traces`` traces to keep the run short
  (its rate is steady, so the rate is comparable).

Ratios printed at the end: flowtel vs each other client (traces/s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from _workload import ANSWER, CHILDREN, QUESTION, flowtel_agent  # noqa: E402,F401


# -- clients (run in subprocesses) ---------------------------------------------------------------
def _client_flowtel(n: int, uri: str, experiment: str) -> dict[str, Any]:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import flowtel

    flowtel.set_experiment(experiment)

    call, flush = flowtel_agent()
    return _run(n, call, flush)


def _client_mlflow(n: int, uri: str, experiment: str) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)

    @mlflow.trace(span_type="TOOL")
    def tool(i: int, j: int) -> str:
        return f"{ANSWER} ({i}.{j})"

    @mlflow.trace(span_type="AGENT")
    def agent(i: int, question: str) -> dict[str, Any]:
        return {"answer": [tool(i, j) for j in range(CHILDREN)][-1]}

    def flush() -> dict[str, Any]:
        mlflow.flush_trace_async_logging()
        return {}

    return _run(n, lambda i: agent(i, QUESTION), flush)


def _client_otel(n: int, uri: str, experiment_id: str) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"{uri}/v1/traces", headers={"x-mlflow-experiment-id": experiment_id})
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=n * (CHILDREN + 1) + 1000))
    tracer = provider.get_tracer("bench")

    def agent(i: int) -> None:
        with tracer.start_as_current_span("agent") as root:
            root.set_attribute("mlflow.spanType", '"AGENT"')
            root.set_attribute("mlflow.spanInputs", json.dumps({"i": i, "question": QUESTION}))
            for j in range(CHILDREN):
                with tracer.start_as_current_span("tool") as child:
                    child.set_attribute("mlflow.spanType", '"TOOL"')
                    child.set_attribute("mlflow.spanInputs", json.dumps({"i": i, "j": j}))
                    child.set_attribute("mlflow.spanOutputs", json.dumps(f"{ANSWER} ({i}.{j})"))
            root.set_attribute("mlflow.spanOutputs", json.dumps({"answer": ANSWER}))

    def flush() -> dict[str, Any]:
        provider.force_flush(3_600_000)
        return {}

    return _run(n, agent, flush)


def _run(n: int, produce: Any, flush: Any) -> dict[str, Any]:
    rss_before = _peak_rss_mb()
    cpu0, t0 = time.process_time(), time.time()
    for i in range(n):
        produce(i)
    t_produced = time.time()
    extra = flush()
    t_flushed = time.time()
    cpu = time.process_time() - cpu0
    return {"t_start": t0, "t_produced": t_produced, "t_flushed": t_flushed, "cpu_s": cpu,
            "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(), **extra}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_CLIENTS = {"flowtel": _client_flowtel, "flowtel-info-first": _client_flowtel, "mlflow": _client_mlflow,
            "mlflow-nodrop": _client_mlflow, "otel": _client_otel}


# -- orchestration (parent process) --------------------------------------------------------------
def _run_client(kind: str, n: int, server: Any, experiment: str, experiment_id: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_", "FLOWTEL_"))}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)})
    if kind == "mlflow-nodrop":
        env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    if kind == "flowtel-info-first":
        env["FLOWTEL_MLFLOW_EXPORT_ORDER"] = "info_first"
    target = experiment_id if kind == "otel" else experiment
    command = [sys.executable, __file__, "--client", kind, "--uri", server.url, "--traces", str(n),
               "--experiment", target]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} client failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result.update(_count_visible(server, experiment_id))
    return result


def _count_visible(server: Any, experiment_id: str) -> dict[str, int]:
    """Traces of the experiment through the search API; and how many are complete."""
    visible = complete = 0
    token = None
    while True:
        body: dict[str, Any] = {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
            "max_results": 500,
        }
        if token:
            body["page_token"] = token
        page = server.request("POST", "/api/3.0/mlflow/traces/search", json.dumps(body).encode(),
                              {"Content-Type": "application/json"}).json()
        for info in page.get("traces", []):
            visible += 1
            finalized = info.get("trace_metadata", {}).get("mlflow.trace.infoFinalized") == "true"
            in_store = info.get("tags", {}).get("mlflow.trace.spansLocation") == "TRACKING_STORE"
            complete += int(finalized and in_store)
        token = page.get("next_page_token")
        if not token:
            return {"delivered": visible, "complete": complete}


def _report(results: dict[str, dict[str, Any]], n_by_kind: dict[str, int]) -> None:
    header = f"{'client':<20}{'N':>6}{'delivered':>11}{'complete':>10}{'seconds':>9}{'traces/s':>10}" \
             f"{'CPU ms/trace':>14}{'peak RSS MB':>13}"
    print("\n" + header + "\n" + "-" * len(header))
    for kind, r in results.items():
        seconds = r["t_flushed"] - r["t_start"]
        r["seconds"] = seconds
        r["traces_per_s"] = r["delivered"] / seconds if seconds > 0 else 0.0
        r["cpu_ms_per_trace"] = 1000 * r["cpu_s"] / n_by_kind[kind]
        print(f"{kind:<20}{n_by_kind[kind]:>6}{r['delivered']:>11}{r['complete']:>10}{seconds:>9.1f}"
              f"{r['traces_per_s']:>10.1f}{r['cpu_ms_per_trace']:>14.2f}{r['peak_rss_mb']:>13.0f}")
    flowtel = results.get("flowtel")
    if flowtel is None:
        return
    print()
    for kind, r in results.items():
        if kind != "flowtel" and r["traces_per_s"] > 0:
            print(f"flowtel / {kind:<20} traces/s x{flowtel['traces_per_s'] / r['traces_per_s']:.2f}   "
                  f"CPU/trace x{flowtel['cpu_ms_per_trace'] / max(r['cpu_ms_per_trace'], 1e-9):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1000, help="traces per client (default 1000)")
    parser.add_argument("--nodrop-traces", type=int, default=300, help="traces for mlflow-nodrop (default 300)")
    parser.add_argument("--clients", default="otel,flowtel,flowtel-info-first,mlflow,mlflow-nodrop")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        print(json.dumps(_CLIENTS[args.client](args.traces, args.uri, args.experiment)), flush=True)
        return
    sys.path.insert(0, str(ROOT))
    from tests._servers.mlflow_server import MlflowServer

    kinds = [k.strip() for k in args.clients.split(",") if k.strip()]
    n_by_kind = {k: (args.nodrop_traces if k == "mlflow-nodrop" else args.traces) for k in kinds}
    results: dict[str, dict[str, Any]] = {}
    with MlflowServer("sqlite") as server:
        print(f"mlflow server {server.url} (sqlite), {os.cpu_count()} CPUs; {CHILDREN + 1} spans per trace")
        for kind in kinds:
            experiment = f"bench-{kind}-{int(time.time())}"
            experiment_id = server.create_experiment(experiment)
            print(f"running {kind} ({n_by_kind[kind]} traces)...", flush=True)
            results[kind] = _run_client(kind, n_by_kind[kind], server, experiment, experiment_id)
    _report(results, n_by_kind)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
