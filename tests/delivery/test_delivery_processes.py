"""Crashes, exits and forks: SIGKILL with traces in the spool, the exit-time drain, a forked
child tracing alongside its parent. Client processes are real interpreters; the destination
is the real OTLP/HTTP receiver on loopback."""

from __future__ import annotations

import json
import multiprocessing
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowtel
from flowtel.delivery._spool import list_spools
from tests._servers.otlp_receivers import OtlpHttpReceiver
from tests.delivery._helpers import (
    REPO_ROOT,
    assert_received_exactly,
    child_env,
    make_traces,
    route_to,
    stats,
)
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

N = 20

# A client: routes to the receiver given as argv[1], records argv[2] traces, flushes, prints
# its trace ids and stats as one JSON line, then waits for stdin to close (or to be killed).
_CLIENT = """
import json, sys
import flowtel
from tests.delivery._helpers import make_traces, route_to, stats
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

route_to(OtlpHttpTestExporter(sys.argv[1]))
ids = make_traces(int(sys.argv[2]))
flushed = flowtel.flush(30)
print(json.dumps({"ids": ids, "flushed": flushed, "stats": stats()}), flush=True)
sys.stdin.read()
"""

# A process with the same configuration that only replays what is spooled, then reports.
_REPLAYER = """
import json, sys
from tests.delivery._helpers import route_to, stats
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

pipeline = route_to(OtlpHttpTestExporter(sys.argv[1]))
drained = pipeline.drain(60)
print(json.dumps({"drained": drained, "stats": stats()}), flush=True)
"""


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver(hold_timeout=20.0) as rx:
        yield rx


def _env(spool_root: Path, **extra: str) -> dict[str, str]:
    return {
        "FLOWTEL_SPOOL_DIR": str(spool_root),
        "FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS": "0.01",
        "FLOWTEL_EXPORT_RETRY_MAX_SECONDS": "0.05",
        "FLOWTEL_EXPORT_MAX_ATTEMPTS": "3",
        "FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS": "5",
        **extra,
    }


def _read_json_line(proc: subprocess.Popen[str], timeout: float = 60.0) -> dict[str, Any]:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            proc.kill()
            raise AssertionError(f"client said nothing within {timeout}s; stderr: {proc.communicate()[1]}")
    line = proc.stdout.readline()
    assert line, f"client exited early: {proc.communicate()[1]}"
    result: dict[str, Any] = json.loads(line)
    return result


def _replay_in_new_process(endpoint: str, spool_root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _REPLAYER, endpoint], cwd=REPO_ROOT, env=child_env(_env(spool_root)),
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spooled_traces(spool_root: Path) -> int:
    return sum(s.traces for s in list_spools(spool_root))


def test_sigkill_with_traces_in_the_spool_then_a_new_process_replays_them(
    receiver: OtlpHttpReceiver, spool_root: Path
) -> None:
    receiver.stop()
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, receiver.endpoint, str(N)], cwd=REPO_ROOT,
        env=child_env(_env(spool_root)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    report = _read_json_line(client)
    assert report["flushed"] and report["stats"]["spooled"] == N
    client.send_signal(signal.SIGKILL)
    client.wait(30)
    assert _spooled_traces(spool_root) == N

    receiver.start()
    replay = _replay_in_new_process(receiver.endpoint, spool_root)

    assert replay["drained"]
    assert (replay["stats"]["sent"], replay["stats"]["replayed"], replay["stats"]["dropped"]) == (N, N, {})
    assert_received_exactly(receiver, report["ids"])
    assert _spooled_traces(spool_root) == 0


_BUSY_CLIENT = """
import json, sys
import flowtel
from tests.delivery._helpers import make_traces, route_to, stats
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

route_to(OtlpHttpTestExporter(sys.argv[1]))
for round in range(1000):
    ids = make_traces(10)
    flowtel.flush(30)
    print(json.dumps({"round": round, "spooled": stats()["spooled"]}), flush=True)
"""


def test_sigkill_while_spooling_loses_only_what_was_not_written(
    receiver: OtlpHttpReceiver, spool_root: Path
) -> None:
    receiver.stop()
    client = subprocess.Popen(
        [sys.executable, "-c", _BUSY_CLIENT, receiver.endpoint], cwd=REPO_ROOT,
        env=child_env(_env(spool_root)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = 0
    while seen < 50:  # kill it mid-stream, while it keeps tracing and writing batches
        seen = _read_json_line(client)["spooled"]
    client.send_signal(signal.SIGKILL)
    client.wait(30)
    on_disk = _spooled_traces(spool_root)  # complete batches only; half-written ones never count
    assert on_disk >= seen

    receiver.start()
    replay = _replay_in_new_process(receiver.endpoint, spool_root)

    assert replay["drained"] and replay["stats"]["dropped"] == {}
    assert replay["stats"]["sent"] == on_disk
    received = receiver.traces()
    assert len(received) == on_disk
    assert all(len(spans) == 10 for spans in received.values())  # none empty, none twice
    assert not [p for p in (spool_root).rglob("*.tmp")]  # the dead writer's leftovers are gone


_EXITING_CLIENT = """
import sys
from tests.delivery._helpers import make_traces, route_to
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

route_to(OtlpHttpTestExporter(sys.argv[1]))
make_traces(int(sys.argv[2]))
"""  # no flush: the interpreter exits right after the traced work


def test_exit_drain_spools_what_it_could_not_send_and_says_so(receiver: OtlpHttpReceiver, spool_root: Path) -> None:
    receiver.stop()
    # Attempts never run out during the run, so at exit the traces are still in memory.
    env = _env(spool_root, FLOWTEL_EXPORT_MAX_ATTEMPTS="100000", FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS="1")
    done = subprocess.run(
        [sys.executable, "-c", _EXITING_CLIENT, receiver.endpoint, str(N)], cwd=REPO_ROOT,
        env=child_env(env), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{N} trace(s) for destination 'otlp-test' were not delivered before shutdown" in done.stderr
    assert f"{N} spooled to" in done.stderr
    assert _spooled_traces(spool_root) == N

    receiver.start()
    replay = _replay_in_new_process(receiver.endpoint, spool_root)
    assert replay["stats"]["sent"] == N
    assert len(receiver.traces()) == N


def test_exit_drain_without_a_spool_reports_the_loss(receiver: OtlpHttpReceiver, spool_root: Path) -> None:
    receiver.stop()
    env = _env(
        spool_root, FLOWTEL_SPOOL_ENABLED="false", FLOWTEL_EXPORT_MAX_ATTEMPTS="100000",
        FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", _EXITING_CLIENT, receiver.endpoint, str(N)], cwd=REPO_ROOT,
        env=child_env(env), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{N} trace(s) for destination 'otlp-test' were not delivered before shutdown" in done.stderr
    assert f"{N} dropped (all drops so far: shutdown: {N})" in done.stderr


def _trace_in_child(queue: Any, n: int) -> None:
    queue.put(make_traces(n))  # no flush: multiprocessing's exit drains flowtel


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_child_traces_alongside_its_parent(receiver: OtlpHttpReceiver) -> None:
    route_to(OtlpHttpTestExporter(receiver.endpoint))
    receiver.pause()
    held = make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")
    queued_at_fork = make_traces(5)  # in the parent's queue when the child is forked

    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_trace_in_child, args=(results, 7))
    child.start()
    during = make_traces(5)
    receiver.resume()
    child_ids = results.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert flowtel.flush(20)

    # The child sent its own 7 traces (and not the parent's queue); the parent sent its 11.
    assert_received_exactly(receiver, held + queued_at_fork + during + child_ids)
    assert (stats()["sent"], stats()["dropped"]) == (11, {})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_os_fork_child_with_explicit_flush(receiver: OtlpHttpReceiver) -> None:
    route_to(OtlpHttpTestExporter(receiver.endpoint))
    receiver.pause()
    held = make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")
    queued_at_fork = make_traces(3)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            ids = make_traces(4)
            os.write(write_end, json.dumps(ids).encode())
            code = 0 if flowtel.flush(30) else 2
        finally:
            os._exit(code)
    os.close(write_end)
    receiver.resume()
    child_ids = json.loads(os.read(read_end, 65536))
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert flowtel.flush(20)
    assert_received_exactly(receiver, held + queued_at_fork + child_ids)
