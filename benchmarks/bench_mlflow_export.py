"""Export throughput to a real local MLflow tracking server: flowtel vs MLflow's own client.

    python benchmarks/bench_mlflow_export.py [--traces 1000] [--nodrop-traces 300]
        [--clients otel,flowtel,ceiling,flowtel-info-first,ceiling-info-first,mlflow,mlflow-nodrop]
        [--ceiling-connections 4,1,8] [--ceiling-info-first-connections 4] [--sweep-traces 200]
        [--json results.json]

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
* peak RSS: the client process's maximum resident set size (imports included);
* srv CPU ms/trace: CPU time (user + system) of the server's processes while the client ran,
  divided by the traces delivered; srv wait ms/trace: time the server's threads were runnable but
  waiting for a CPU (other processes on the machine, the client included), likewise; srv busy:
  server CPU seconds per second of the measured window (the server runs one uvicorn worker, so
  1.00 would be one core saturated; what is left is waiting for a CPU, SQLite I/O and locks,
  and for the client).

Clients:

* ``otel``: bare OpenTelemetry SDK, ``BatchSpanProcessor`` + ``OTLPSpanExporter`` (HTTP/protobuf)
  to ``/v1/traces`` with a queue large enough to drop nothing: what the server can ingest over
  OTLP for spans only (no trace info, no StartTraceV3; its traces are not ``complete``), so it
  is not a ceiling for complete traces.
* ``flowtel``: flowtel with default settings, ``MLFLOW_TRACKING_URI`` pointing at the server.
* ``flowtel-info-first``: flowtel with ``FLOWTEL_MLFLOW_EXPORT_ORDER=info_first`` (StartTraceV3
  before the spans: about half the server work per trace; not the default, see the README).
* ``ceiling``: what the server can ingest for *complete* traces in flowtel's write order, at
  (nearly) zero client cost. A subprocess first runs flowtel (default settings) with its HTTP
  client patched to record -- not send -- the ``POST /v1/traces`` and StartTraceV3 requests
  (method, path, headers, body; answered like the server answers them, and held until all N
  traces are produced, so batches are as full as under a loaded server), with fresh trace ids
  and the row's own fresh experiment; then it replays exactly those requests against the server
  in the same order and with the same waits as flowtel's exporter (per batch: the OTLP POST on
  one connection, then the batch's StartTraceV3 calls spread over C keep-alive connections, all
  answered before the next step). Wall time is from the first request to the last answer.
  Run for C in ``--ceiling-connections`` (flowtel uses 4); the first C runs N traces, the others
  ``--sweep-traces`` (the rate is steady); the best C is the ceiling used for the ratios. Also
  printed per replay: batch sizes, wall ms per trace in each step, the server's answers.
* ``ceiling-info-first``: the same for ``FLOWTEL_MLFLOW_EXPORT_ORDER=info_first`` (per batch:
  StartTraceV3 calls, then the OTLP POST), for C in ``--ceiling-info-first-connections``.
* ``mlflow``: ``mlflow`` with default settings (async logging; drops when its queue is full).
* ``mlflow-nodrop``: ``mlflow`` with ``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false`` (every span and
  trace is sent inline, nothing is dropped); runs ``--nodrop-traces`` traces to keep the run short
  (its rate is steady, so the rate is comparable).

Ratios printed at the end: flowtel vs each other client (traces/s); and flowtel vs the best
``ceiling`` row (the share of what the server can ingest for complete traces in flowtel's write
order), likewise ``flowtel-info-first`` vs ``ceiling-info-first``.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from _workload import ANSWER, CHILDREN, QUESTION, flowtel_agent


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


_OTLP_PATH = "/v1/traces"
_START_TRACE_V3 = "/api/3.0/mlflow/traces"
Request = tuple[str, str, dict[str, str], bytes]  # method, target, headers, body


def _client_ceiling(n: int, uri: str, experiment: str) -> dict[str, Any]:
    """Record flowtel's write requests for n traces, then replay them (see the module docstring)."""
    connections = int(os.environ["BENCH_REPLAY_CONNECTIONS"])
    batches = _record_flowtel_requests(n, uri, experiment)
    return _replay(uri, batches, connections)


def _record_flowtel_requests(n: int, uri: str, experiment: str) -> list[list[Request]]:
    """The requests flowtel's exporter makes to write n traces, per export batch, in order.

    flowtel runs unmodified except for its HTTP client: the two write calls are recorded and
    answered as the server answers them (so the server never sees these trace ids); everything
    else (the experiment lookup) goes to the server. The answers are held until all traces are
    produced: under a loaded server the exporter's batches are full, as here.
    """
    os.environ["MLFLOW_TRACKING_URI"] = uri
    # Traces the pipeline spills to disk while the exporter is held must not be left for another
    # process (the flowtel client) to replay: this process's own spool directory.
    spool = tempfile.mkdtemp(prefix="bench-ceiling-spool-")
    os.environ["FLOWTEL_SPOOL_DIR"] = spool
    atexit.register(shutil.rmtree, spool, ignore_errors=True)  # runs after flowtel's own exit hook
    import flowtel
    from flowtel.delivery import _http
    from flowtel.exporters.mlflow import _exporter as _mlflow

    produced = threading.Event()
    batches: list[list[Request]] = []
    real_request, real_export = _http.HttpClient.request, _mlflow.MlflowExporter.export

    def export(self: Any, traces: Any) -> Any:
        batches.append([])  # one exporter thread: batches never overlap
        return real_export(self, traces)

    def request(self: Any, method: str, path: str, *, body: bytes | None = None,
                headers: Any = None, params: Any = None, timeout: float | None = None) -> Any:
        if (method, path) not in (("POST", _OTLP_PATH), ("POST", _START_TRACE_V3)):
            return real_request(self, method, path, body=body, headers=headers, params=params, timeout=timeout)
        produced.wait()
        batches[-1].append((method, self._target(path, params), self._headers(headers), body or b""))
        if path == _OTLP_PATH:  # an empty ExportTraceServiceResponse
            return _http.HttpResponse(200, {"content-type": "application/x-protobuf"}, b"")
        info = json.loads(body or b"{}")["trace"]["trace_info"]
        answer = {"trace": {"trace_info": {**info, "tags": {**info.get("tags", {}),
                                                             "mlflow.trace.spansLocation": "TRACKING_STORE"}}}}
        return _http.HttpResponse(200, {"content-type": "application/json"}, json.dumps(answer).encode())

    _http.HttpClient.request = request  # type: ignore[method-assign]
    _mlflow.MlflowExporter.export = export  # type: ignore[method-assign]
    flowtel.set_experiment(experiment)
    call, flush = flowtel_agent()
    for i in range(n):
        call(i)
    produced.set()
    stats = flush()
    if stats.get("sent") != n or stats.get("dropped"):
        raise RuntimeError(f"recording flowtel's requests: {stats}")
    return [batch for batch in batches if batch]


def _replay(uri: str, batches: list[list[Request]], connections: int) -> dict[str, Any]:
    """Send the recorded requests as flowtel's exporter does: batch after batch; per batch, each
    run of consecutive requests of one kind is a step that is fully answered before the next
    starts; a step of one request goes on the caller's connection, a longer one is spread over
    ``connections`` keep-alive connections (as ``MlflowExporter._map``)."""
    parts = urllib.parse.urlsplit(uri)
    local = threading.local()
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def send(req: Request) -> None:
        method, target, headers, body = req
        for attempt in (1, 2):
            conn = getattr(local, "conn", None)
            reused = conn is not None
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                # uvicorn closes a connection idle for 5 s: resend once on a new one, as flowtel's
                # HttpClient does
                conn.close()
                local.conn = None
                if reused and attempt == 1:
                    with lock:
                        statuses["reconnects"] += 1
                    continue
                raise
            if response.will_close:
                conn.close()
                local.conn = None
            with lock:
                statuses[f"{'otlp' if target.endswith(_OTLP_PATH) else 'v3'} {response.status}"] += 1
            return

    steps: list[list[Request]] = []
    for batch in batches:
        first = len(steps)
        for req in batch:
            if len(steps) > first and steps[-1][0][1] == req[1]:
                steps[-1].append(req)
            else:
                steps.append([req])
    pool = ThreadPoolExecutor(connections)
    list(pool.map(lambda _: None, range(connections)))  # threads up before the clock starts
    rss_before = _peak_rss_mb()
    cpu0, t0 = time.process_time(), time.time()
    step_seconds: Counter[str] = Counter()
    for step in steps:
        started = time.perf_counter()
        if len(step) == 1 or connections == 1:
            for req in step:
                send(req)
        else:
            list(pool.map(send, step))
        step_seconds["otlp" if step[0][1].endswith(_OTLP_PATH) else "v3"] += time.perf_counter() - started
    t1 = time.time()
    cpu = time.process_time() - cpu0
    pool.shutdown()
    sizes = Counter(sum(1 for r in batch if r[1].endswith(_START_TRACE_V3)) for batch in batches)
    return {"t_start": t0, "t_produced": t0, "t_flushed": t1, "cpu_s": cpu, "rss_before_mb": rss_before,
            "peak_rss_mb": _peak_rss_mb(), "connections": connections, "statuses": dict(statuses),
            "batches": len(batches), "batch_sizes": dict(sorted(sizes.items())), "step_seconds": dict(step_seconds),
            "requests": sum(len(b) for b in batches)}


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
            "mlflow-nodrop": _client_mlflow, "otel": _client_otel, "ceiling": _client_ceiling,
            "ceiling-info-first": _client_ceiling}
_INFO_FIRST = ("flowtel-info-first", "ceiling-info-first")


# -- orchestration (parent process) --------------------------------------------------------------
def _run_client(kind: str, n: int, server: Any, experiment: str, experiment_id: str,
                connections: int | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OTEL_", "FLOWTEL_"))}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)})
    if kind == "mlflow-nodrop":
        env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "false"
    if kind in _INFO_FIRST:
        env["FLOWTEL_MLFLOW_EXPORT_ORDER"] = "info_first"
    if connections is not None:
        env["BENCH_REPLAY_CONNECTIONS"] = str(connections)
    target = experiment_id if kind == "otel" else experiment
    command = [sys.executable, __file__, "--client", kind, "--uri", server.url, "--traces", str(n),
               "--experiment", target]
    server_cpu0, server_wait0 = _server_cpu_s(server)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    server_cpu, server_wait = _server_cpu_s(server)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} client failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["server_cpu_s"] = server_cpu - server_cpu0
    result["server_wait_s"] = _waited_s(server_wait0, server_wait)
    result.update(_count_visible(server, experiment_id))
    return result


def _server_cpu_s(server: Any) -> tuple[float, dict[str, int]]:
    """CPU seconds (user + system) used so far by the server's processes (its process group: the
    ``mlflow server`` CLI and its uvicorn worker), and per live thread the nanoseconds it spent
    runnable but waiting for a CPU; from /proc (``stat``, ``task/*/schedstat``)."""
    ticks = 0
    waited: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != server.pid:  # pgrp
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
            for task in (entry / "task").iterdir():
                waited[task.name] = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile, or no schedstat
    return ticks / os.sysconf("SC_CLK_TCK"), waited


def _waited_s(before: dict[str, int], after: dict[str, int]) -> float:
    """Run-queue wait between two samples, over the threads alive at the second one (the server's
    idle worker threads exit after a while; what those waited is not counted)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


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
    header = f"{'client':<24}{'N':>6}{'delivered':>11}{'complete':>10}{'seconds':>9}{'traces/s':>10}" \
             f"{'CPU ms/trace':>14}{'peak RSS MB':>13}{'srv CPU ms/tr':>15}{'srv wait ms/tr':>16}{'srv busy':>10}"
    print("\n" + header + "\n" + "-" * len(header))
    for kind, r in results.items():
        seconds = r["t_flushed"] - r["t_start"]
        delivered = max(r["delivered"], 1)
        r["seconds"] = seconds
        r["traces_per_s"] = r["delivered"] / seconds if seconds > 0 else 0.0
        r["cpu_ms_per_trace"] = 1000 * r["cpu_s"] / n_by_kind[kind]
        r["server_cpu_ms_per_trace"] = 1000 * r["server_cpu_s"] / delivered
        r["server_wait_ms_per_trace"] = 1000 * r["server_wait_s"] / delivered
        r["server_busy"] = r["server_cpu_s"] / seconds if seconds > 0 else 0.0
        print(f"{kind:<24}{n_by_kind[kind]:>6}{r['delivered']:>11}{r['complete']:>10}{seconds:>9.1f}"
              f"{r['traces_per_s']:>10.1f}{r['cpu_ms_per_trace']:>14.2f}{r['peak_rss_mb']:>13.0f}"
              f"{r['server_cpu_ms_per_trace']:>15.2f}{r['server_wait_ms_per_trace']:>16.2f}{r['server_busy']:>10.2f}")
    print("srv CPU / srv wait: the server's CPU time / time runnable but waiting for a CPU, per trace "
          "delivered; srv busy: server CPU seconds per second of the client's measured window.")
    replays = {k: r for k, r in results.items() if "statuses" in r}
    if replays:
        print()
        for kind, r in replays.items():
            sizes = ", ".join(f"{count}x{size}" for size, count in r["batch_sizes"].items())
            steps = ", ".join(f"{step} {1000 * sec / n_by_kind[kind]:.1f}"
                              for step, sec in sorted(r["step_seconds"].items()))
            print(f"{kind}: {r['requests']} recorded requests in {r['batches']} batches ({sizes} traces); "
                  f"wall ms/trace by step: {steps}; answers {r['statuses']}")
    flowtel = results.get("flowtel")
    if flowtel is None:
        return
    print()
    for kind, r in results.items():
        if kind != "flowtel" and r["traces_per_s"] > 0:
            print(f"flowtel / {kind:<24} traces/s x{flowtel['traces_per_s'] / r['traces_per_s']:.2f}   "
                  f"CPU/trace x{flowtel['cpu_ms_per_trace'] / max(r['cpu_ms_per_trace'], 1e-9):.2f}")
    print()
    for client, ceiling in (("flowtel", "ceiling"), ("flowtel-info-first", "ceiling-info-first")):
        rows = {k: r for k, r in results.items() if k.startswith(ceiling + " ") and r["traces_per_s"] > 0}
        if client not in results or not rows:
            continue
        best = max(rows, key=lambda k: rows[k]["traces_per_s"])
        ratio = results[client]["traces_per_s"] / rows[best]["traces_per_s"]
        print(f"{client} / best {ceiling} ({best}): {100 * ratio:.0f}% of what the server can ingest "
              f"for complete traces in that write order ({results[client]['traces_per_s']:.1f} vs "
              f"{rows[best]['traces_per_s']:.1f} traces/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=1000, help="traces per client (default 1000)")
    parser.add_argument("--nodrop-traces", type=int, default=300, help="traces for mlflow-nodrop (default 300)")
    parser.add_argument("--sweep-traces", type=int, default=200,
                        help="traces for the ceiling runs after the first connection count (default 200)")
    parser.add_argument("--ceiling-connections", default="4,1,8",
                        help="connection counts of the ceiling replays; the first runs --traces (default 4,1,8)")
    parser.add_argument("--ceiling-info-first-connections", default="4",
                        help="the same for ceiling-info-first (default 4)")
    parser.add_argument("--clients",
                        default="otel,flowtel,ceiling,flowtel-info-first,ceiling-info-first,mlflow,mlflow-nodrop")
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

    connection_counts = {
        kind: [int(c) for c in counts.split(",") if c.strip()]
        for kind, counts in (("ceiling", args.ceiling_connections),
                             ("ceiling-info-first", args.ceiling_info_first_connections))
    }
    runs: list[tuple[str, str, int, int | None]] = []  # row, client kind, N, replay connections
    for kind in (k.strip() for k in args.clients.split(",") if k.strip()):
        if kind in connection_counts:
            runs += [(f"{kind} c={c}", kind, args.traces if i == 0 else args.sweep_traces, c)
                     for i, c in enumerate(connection_counts[kind])]
        else:
            runs.append((kind, kind, args.nodrop_traces if kind == "mlflow-nodrop" else args.traces, None))
    n_by_kind = {row: n for row, _, n, _ in runs}
    results: dict[str, dict[str, Any]] = {}
    with MlflowServer("sqlite") as server:
        print(f"mlflow server {server.url} (sqlite), {os.cpu_count()} CPUs; {CHILDREN + 1} spans per trace")
        for row, kind, n, connections in runs:
            experiment = f"bench-{row.replace(' ', '-').replace('=', '')}-{int(time.time())}"
            experiment_id = server.create_experiment(experiment)
            print(f"running {row} ({n} traces)...", flush=True)
            results[row] = _run_client(kind, n, server, experiment, experiment_id, connections)
    _report(results, n_by_kind)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
