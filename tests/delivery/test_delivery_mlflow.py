"""Fault injection against the real MLflow tracking server, through flowtel's MLflow exporter
configured the way users configure it (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID``).

Uses the session's shared server: a test that stops or kills it starts it again (same port,
same store) before it returns. Each test has its own experiment, and checks there, with the real
``mlflow`` client, that every trace arrived once with all its spans.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

import flowtel
from flowtel.tracing import _runtime
from tests._servers.mlflow_server import MlflowServer
from tests.delivery._helpers import (
    REPO_ROOT,
    SPANS_PER_TRACE,
    child_env,
    make_traces,
    stats,
)

N = 20


@pytest.fixture
def server(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    """The shared server, an experiment of this test's own, and flowtel pointed at both."""
    experiment = mlflow_server.create_experiment(f"delivery-{uuid4().hex[:8]}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    _runtime.reset()
    try:
        yield mlflow_server
    finally:
        if not mlflow_server.is_running:
            mlflow_server.start()


def _experiment() -> str:
    import os

    return os.environ["MLFLOW_EXPERIMENT_ID"]


def _assert_on_server_exactly(server: MlflowServer, trace_ids: list[str]) -> None:
    traces = server.client().search_traces(locations=[_experiment()], max_results=100)
    found = [t.info.trace_id for t in traces]
    assert sorted(found) == sorted(trace_ids), f"{len(found)} on the server, {len(trace_ids)} expected"
    assert all(len(t.data.spans) == SPANS_PER_TRACE for t in traces), "a trace arrived without all its spans"


def _pipeline() -> object:
    pipeline = _runtime.get_runtime().destinations[0].pipeline
    assert pipeline is not None
    return pipeline


def test_server_down_for_the_whole_run_then_started(server: MlflowServer) -> None:
    server.stop()
    ids = make_traces(N)
    assert flowtel.flush(30)
    assert (stats()["destination"], stats()["spooled"], stats()["sent"]) == ("mlflow", N, 0)

    server.start()
    assert _pipeline().drain(60)  # type: ignore[attr-defined]
    assert (stats()["sent"], stats()["replayed"], stats()["dropped"]) == (N, N, {})
    _assert_on_server_exactly(server, ids)


def test_server_killed_mid_run_and_restarted(server: MlflowServer) -> None:
    before = make_traces(5)
    assert flowtel.flush(30)
    server.kill()
    during = make_traces(10)
    assert flowtel.flush(30)
    server.start()
    after = make_traces(5)

    assert _pipeline().drain(60)  # type: ignore[attr-defined]
    assert (stats()["sent"], stats()["dropped"]) == (20, {})
    _assert_on_server_exactly(server, before + during + after)


_CLIENT = """
import json, sys
import flowtel
from tests.delivery._helpers import make_traces, stats

ids = make_traces(int(sys.argv[1]))
print(json.dumps({"ids": ids, "flushed": flowtel.flush(30), "stats": stats()}), flush=True)
sys.stdin.read()
"""


def test_client_sigkilled_with_traces_in_the_spool_then_flowtel_spool_replay(
    server: MlflowServer, spool_root: Path
) -> None:
    import json

    env = child_env({
        "MLFLOW_TRACKING_URI": server.url, "MLFLOW_EXPERIMENT_ID": _experiment(),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "FLOWTEL_SPOOL_DIR": str(spool_root),
        "FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS": "0.01", "FLOWTEL_EXPORT_RETRY_MAX_SECONDS": "0.05",
        "FLOWTEL_EXPORT_MAX_ATTEMPTS": "3",
    })
    server.stop()
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(N)], cwd=REPO_ROOT, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert client.stdout is not None
        report = json.loads(client.stdout.readline())
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(30)
    assert report["flushed"] and report["stats"]["spooled"] == N

    server.start()
    listed = subprocess.run([sys.executable, "-m", "flowtel", "spool", "list"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=True)
    assert f"mlflow:{server.url}" in listed.stdout and f" {N} " in listed.stdout
    replay = subprocess.run([sys.executable, "-m", "flowtel", "spool", "replay", "--timeout", "60"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"sent {N}, dropped none, still spooled 0" in replay.stdout
    _assert_on_server_exactly(server, report["ids"])
