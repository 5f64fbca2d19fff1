"""``flowtel spool list|replay|purge`` on a real spool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowtel
from flowtel.cli import main as cli_main
from flowtel.cli._spool import replay_spools
from flowtel.tracing import _runtime
from tests._servers.otlp_receivers import OtlpHttpReceiver
from tests.delivery._helpers import assert_received_exactly, make_traces, route_to
from tests.delivery._otlp_exporter import OtlpHttpTestExporter


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver() as rx:
        yield rx


def _spool_while_down(receiver: OtlpHttpReceiver, n: int) -> list[str]:
    receiver.stop()
    route_to(OtlpHttpTestExporter(receiver.endpoint))
    ids = make_traces(n)
    assert flowtel.flush(10)
    _runtime.reset()
    return ids


def test_list_shows_what_waits(receiver: OtlpHttpReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    _spool_while_down(receiver, 7)
    assert cli_main(["spool", "list", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["traces"], entry["destination_key"]) == (7, f"otlp-http-test:{receiver.endpoint}")
    assert cli_main(["spool", "list"]) == 0
    assert "otlp-test-" in capsys.readouterr().out


def test_replay_sends_everything_with_the_configured_destination(receiver: OtlpHttpReceiver) -> None:
    ids = _spool_while_down(receiver, 9)
    receiver.start()
    (report,) = replay_spools([_runtime.Destination(exporter=OtlpHttpTestExporter(receiver.endpoint))], timeout=30)
    assert (report.sent, report.dropped, report.remaining) == (9, {}, 0)
    assert_received_exactly(receiver, ids)


def test_purge_asks_before_deleting(receiver: OtlpHttpReceiver, spool_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _spool_while_down(receiver, 4)
    (directory,) = [p.name for p in spool_root.iterdir()]
    assert cli_main(["spool", "purge", directory[:12]]) == 0
    assert "would delete 4 trace(s)" in capsys.readouterr().out
    assert cli_main(["spool", "purge", "--all", "--yes"]) == 0
    assert "deleted 4 trace(s)" in capsys.readouterr().out
    assert cli_main(["spool", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
