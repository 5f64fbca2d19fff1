"""Fault injection against real OTLP receivers (HTTP and gRPC) on loopback.

Each test runs with flowtel's OTLP exporter over HTTP and over gRPC, and with a minimal test
exporter that can only fail whole batches. Every test sends traces of 10 spans and asserts the
exact number delivered, the exact number dropped with their reasons, and that no trace arrived
twice or incomplete. Waiting is on conditions (flush, drain, the receiver's own condition),
never on sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

import flowtel
from flowtel.exporters import TraceExporter
from flowtel.exporters.otlp._exporter import OtlpExporter
from tests._servers.otlp_receivers import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    OtlpReceiver,
    grpc_status_for_http,
)
from tests.delivery._helpers import (
    assert_received_exactly,
    make_traces,
    route_to,
    stats,
)
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

N = 20
ExporterFactory = Callable[..., TraceExporter]


@pytest.fixture(params=["test-exporter-http", "otlp-http", "otlp-grpc"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def receiver(flavour: str) -> Iterator[OtlpReceiver]:
    kind = OtlpGrpcReceiver if flavour == "otlp-grpc" else OtlpHttpReceiver
    with kind(hold_timeout=20.0) as rx:
        yield rx


@pytest.fixture
def exporter_for(flavour: str, receiver: OtlpReceiver) -> ExporterFactory:
    """``exporter_for(timeout=...)``: an exporter of this flavour aimed at ``receiver``."""

    def make(timeout: float = 5.0) -> TraceExporter:
        if flavour == "test-exporter-http":
            return OtlpHttpTestExporter(receiver.endpoint, timeout=timeout)
        protocol = "grpc" if flavour == "otlp-grpc" else "http/protobuf"
        return OtlpExporter(receiver.endpoint, protocol=protocol, timeout=timeout)

    return make


def _status(flavour: str, http_status: int) -> object:
    """What the receiver records for an injected HTTP status (gRPC maps it to a status code)."""
    return grpc_status_for_http(http_status) if flavour == "otlp-grpc" else http_status


def _reason(flavour: str, http_status: int) -> str:
    """The drop reason the exporter reports for that status."""
    if flavour == "otlp-grpc":
        return f"grpc_{grpc_status_for_http(http_status).name.lower()}"
    return f"http_{http_status}"


def _traces_per_accepted_request(receiver: OtlpReceiver) -> list[int]:
    return [len({s.trace_id for s in request.spans()}) for request in receiver.requests]


def test_destination_down_for_the_whole_run_then_started(receiver: OtlpReceiver, exporter_for: ExporterFactory) -> None:
    receiver.stop()
    pipeline = route_to(exporter_for())

    ids = make_traces(N)
    assert flowtel.flush(10)  # everything is on disk: flush does not wait for the outage

    during = stats()
    assert (during["sent"], during["spooled"], during["spool_pending"], during["dropped"]) == (0, N, N, {})
    assert during["state"] == "unreachable"

    receiver.start()
    assert pipeline.drain(30)
    assert_received_exactly(receiver, ids)
    after = stats()
    assert (after["sent"], after["replayed"], after["spool_pending"], after["dropped"]) == (N, N, 0, {})
    assert after["state"] == "ok"


def test_destination_killed_mid_run_with_a_request_in_flight_then_restarted(receiver: OtlpReceiver, exporter_for: ExporterFactory) -> None:
    pipeline = route_to(exporter_for())
    before = make_traces(5)
    assert flowtel.flush(10)

    receiver.pause()
    during = make_traces(5)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")
    receiver.stop()  # the held request is answered 503 and dropped by the receiver: a crash
    receiver.resume()
    while_down = make_traces(5)
    assert flowtel.flush(10)

    receiver.start()
    after = make_traces(5)
    assert pipeline.drain(30)
    assert_received_exactly(receiver, before + during + while_down + after)
    final = stats()
    assert (final["sent"], final["dropped"], final["queued"], final["in_flight"]) == (20, {}, 0, 0)


def test_slow_destination_answering_after_the_client_timeout(receiver: OtlpReceiver, exporter_for: ExporterFactory) -> None:
    receiver.set_delay(30.0)  # far beyond the exporter's timeout
    pipeline = route_to(exporter_for(timeout=0.3))

    ids = make_traces(N)
    assert flowtel.flush(20)
    assert stats()["spooled"] == N and stats()["sent"] == 0

    # A server that gives up on the requests the client abandoned, then recovers.
    receiver.stop()
    receiver.set_delay(0.0)
    receiver.start()
    assert pipeline.drain(30)
    assert_received_exactly(receiver, ids)
    final = stats()
    assert (final["sent"], final["dropped"]) == (N, {})


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried(
    receiver: OtlpReceiver, exporter_for: ExporterFactory, flavour: str, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if flavour == "otlp-grpc" and status == 500:
        pytest.skip("OTLP/gRPC answers 500 as INTERNAL, which the OTLP spec says not to retry")
    monkeypatch.setenv("FLOWTEL_EXPORT_MAX_ATTEMPTS", "10")
    receiver.fail_next(3, status)
    route_to(exporter_for())

    ids = make_traces(N)
    assert flowtel.flush(20)
    assert_received_exactly(receiver, ids)
    final = stats()
    assert (final["sent"], final["spooled"], final["dropped"]) == (N, 0, {})
    assert final["retried"] >= 1
    assert [a.status for a in receiver.attempts if not a.accepted] == [_status(flavour, status)] * 3


def test_429_with_retry_after_is_retried(receiver: OtlpReceiver, exporter_for: ExporterFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWTEL_EXPORT_MAX_ATTEMPTS", "10")
    receiver.fail_next(2, 429, retry_after=0)
    route_to(exporter_for())

    ids = make_traces(N)
    assert flowtel.flush(20)
    assert_received_exactly(receiver, ids)
    assert (stats()["sent"], stats()["dropped"]) == (N, {})


def test_retry_after_is_honoured_not_shortened(receiver: OtlpReceiver, exporter_for: ExporterFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Told to come back in an hour, the pipeline must still be waiting when a short flush
    # gives up (no spool here, so flush cannot move the trace to disk instead).
    monkeypatch.setenv("FLOWTEL_SPOOL_ENABLED", "false")
    monkeypatch.setenv("FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS", "0.5")
    receiver.fail_next(1, 429, retry_after=3600)
    route_to(exporter_for())

    make_traces(1)
    receiver.wait_for_attempts(1)
    assert not flowtel.flush(0.3)
    waiting = stats()
    assert (waiting["state"], waiting["in_flight"], waiting["sent"], len(receiver.attempts)) == ("retrying", 1, 0, 1)
    flowtel.flush_trace_async_logging(terminate=True)  # shutdown cuts the wait short, and says so
    assert len(receiver.attempts) == 1


def test_one_poisoned_trace_does_not_take_the_batch_with_it(
    receiver: OtlpReceiver, exporter_for: ExporterFactory, flavour: str
) -> None:
    receiver.reject_if(lambda span: span.name == "poisoned")
    route_to(exporter_for())

    # Hold the worker on one request so the next 20 traces are queued and leave as one batch.
    receiver.pause()
    first = make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")
    good = make_traces(12)
    make_traces(1, name="poisoned")
    good += make_traces(7)
    receiver.resume()
    assert flowtel.flush(20)

    assert_received_exactly(receiver, first + good)
    final = stats()
    assert (final["sent"], final["dropped"]) == (20, {_reason(flavour, 400): 1})
    assert _status(flavour, 400) in {a.status for a in receiver.attempts}
    assert max(_traces_per_accepted_request(receiver)) > 1  # good traces still travelled in batches


def test_traced_calls_never_wait_on_the_network(receiver: OtlpReceiver, exporter_for: ExporterFactory) -> None:
    route_to(exporter_for())
    receiver.pause()
    make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")

    ids = make_traces(50)  # would hang here if a traced call waited for the destination

    assert receiver.in_flight == 1 and stats()["queued"] == 50
    receiver.resume()
    assert flowtel.flush(20)
    assert stats()["sent"] == 51 and len(ids) == 50


def test_full_memory_queue_without_spool_drops_exactly_the_overflow(
    receiver: OtlpReceiver, exporter_for: ExporterFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FLOWTEL_SPOOL_ENABLED", "false")
    monkeypatch.setenv("FLOWTEL_MAX_QUEUED_TRACES", "10")
    route_to(exporter_for())
    receiver.pause()
    first = make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")

    with caplog.at_level(logging.WARNING, logger="flowtel"):
        ids = make_traces(49)
    receiver.resume()
    assert flowtel.flush(20)

    assert (stats()["sent"], stats()["dropped"]) == (11, {"queue_full": 39})
    assert_received_exactly(receiver, first + ids[:10])
    assert "queue_full" in caplog.text and "FLOWTEL_MAX_QUEUED_TRACES" in caplog.text


def test_full_memory_queue_spills_to_the_spool_and_loses_nothing(
    receiver: OtlpReceiver, exporter_for: ExporterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWTEL_MAX_QUEUED_TRACES", "30")  # spills past 15 queued
    pipeline = route_to(exporter_for())
    receiver.pause()
    first = make_traces(1)
    receiver.wait_for(lambda r: r.in_flight >= 1, what="a held request")

    ids: list[str] = []
    for _ in range(20):  # the destination is stuck; the queue never passes its limit
        ids += make_traces(10)
        assert pipeline.wait_for(lambda s: s.queued <= 15, timeout=10)
    assert stats()["spooled"] > 0 and stats()["dropped"] == {}
    receiver.resume()
    assert pipeline.drain(30)

    assert_received_exactly(receiver, first + ids)
    final = stats()
    assert (final["sent"], final["dropped"], final["spool_pending"]) == (201, {}, 0)


def test_threads_and_asyncio_producers_lose_nothing(receiver: OtlpReceiver, exporter_for: ExporterFactory) -> None:
    import asyncio
    import threading

    route_to(exporter_for())
    ids: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        made = make_traces(15)
        with lock:
            ids.extend(made)

    @flowtel.trace
    async def handle(i: int) -> int:
        for j in range(SPANS - 1):
            with flowtel.start_span(f"step-{j}"):
                await asyncio.sleep(0)
        return i

    async def serve() -> list[str]:
        await asyncio.gather(*(handle(i) for i in range(40)))
        return []

    threads = [threading.Thread(target=produce) for _ in range(6)]
    for thread in threads:
        thread.start()
    asyncio.run(serve())
    for thread in threads:
        thread.join()
    assert flowtel.flush(20)

    received = receiver.traces()
    assert len(received) == 6 * 15 + 40
    assert all(len(spans) == SPANS for spans in received.values())
    assert {t.removeprefix("tr-") for t in ids} <= set(received)
    assert (stats()["sent"], stats()["dropped"]) == (130, {})


SPANS = 10
