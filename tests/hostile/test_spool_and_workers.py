"""The spool survives any file a crash, another version or a person leaves in it, and a dying
delivery worker is noticed, replaced and reported (never a silent ``ok``). Real files."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import flowtel
from flowtel import _errors
from flowtel.delivery._exporter import ExportResult, TraceExporter
from flowtel.delivery._spool import Spool
from flowtel.entities import Trace
from flowtel.exporters import InMemoryExporter
from tests.delivery._helpers import make_traces, route_to, stats


class Collecting(TraceExporter):
    """A destination with a spool (it has a destination key) that takes everything."""

    name = "hostile"
    destination_key = "hostile:test"

    def __init__(self) -> None:
        self.traces: list[Trace] = []

    def export(self, traces: Sequence[Trace]) -> ExportResult:
        self.traces.extend(traces)
        return ExportResult()


@pytest.fixture
def spool_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "spool"
    monkeypatch.setenv("FLOWTEL_SPOOL_DIR", str(root))
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS", "0.01")
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_MAX_SECONDS", "0.05")
    return root


@pytest.fixture
def finished_traces() -> list[Trace]:
    memory = InMemoryExporter()
    route_to(memory)
    make_traces(4, spans=2)
    assert flowtel.flush(30)
    return list(memory.traces)


def _spool_with(root: Path, traces: list[Trace]) -> Spool:
    spool = Spool(root, Collecting.destination_key, name=Collecting.name, require_private_root=False)
    spool.open()
    if traces:
        spool.write(traces)
    return spool


def _replay(exporter: Collecting) -> dict[str, object]:
    pipeline = route_to(exporter)
    assert pipeline.drain(60)
    return stats()


def test_stray_files_with_overflowing_numbers_do_not_kill_delivery(spool_root: Path, finished_traces) -> None:
    spool = _spool_with(spool_root, finished_traces[:2])
    huge = "9" * 40
    for name in (f"{'1' * 20}-1-1-2.jsonl.claimed-{huge}", f".{huge}-1.tmp", f"{'1' * 20}-{huge}-1-{huge}.jsonl",
                 "notes.txt", "x.jsonl"):
        (spool.directory / name).write_bytes(b"left here by someone")
    exporter = Collecting()
    result = _replay(exporter)
    assert len(exporter.traces) == 2
    assert result["state"] == "ok" and result["worker_restarts"] == 0
    make_traces(1, spans=1)  # and the destination keeps delivering
    assert flowtel.flush(30) and len(exporter.traces) == 3


def test_a_corrupt_line_is_counted_and_set_aside_the_rest_replayed(spool_root: Path, finished_traces) -> None:
    spool = _spool_with(spool_root, finished_traces[:3])
    (batch,) = spool.directory.glob("*.jsonl")
    lines = batch.read_bytes().splitlines()
    # A line that is JSON but no trace (another version), and one that is not even UTF-8.
    batch.write_bytes(b"\n".join([lines[0], lines[1], b'{"info": 42}', lines[2], b"\xff\xfe garbage"]) + b"\n")
    exporter = Collecting()
    result = _replay(exporter)
    assert len(exporter.traces) == 2
    assert result["dropped"] == {"spool_corrupt": 2}
    (aside,) = spool.directory.glob("*.corrupt")
    assert aside.read_bytes().splitlines() == [b'{"info": 42}', b"\xff\xfe garbage"]
    assert not list(spool.directory.glob("*.jsonl"))


def test_symlinks_are_never_followed(spool_root: Path, finished_traces, tmp_path: Path) -> None:
    spool = _spool_with(spool_root, finished_traces[:1])
    (batch,) = spool.directory.glob("*.jsonl")
    outside = tmp_path / "outside.jsonl"
    original = batch.read_bytes()
    outside.write_bytes(original)
    os.symlink(outside, spool.directory / f"{'0' * 19}1-1-1-1.jsonl")  # the oldest "batch"
    exporter = Collecting()
    _replay(exporter)
    assert len(exporter.traces) == 1  # the real batch only
    assert outside.read_bytes() == original  # neither read as a batch, nor moved, nor deleted


def test_a_huge_file_is_not_read_whole(spool_root: Path, finished_traces, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWTEL_SPOOL_MAX_BYTES", str(64 * 1024))
    spool = _spool_with(spool_root, [])
    spool.ensure_directory()
    (spool.directory / f"{'0' * 19}1-1-1-3.jsonl").write_bytes(b"x" * (256 * 1024))
    exporter = Collecting()
    result = _replay(exporter)
    assert result["dropped"] == {"spool_corrupt": 3}
    assert [p.name.endswith(".corrupt") for p in spool.directory.glob("*-3.jsonl*")] == [True]


def test_a_dying_worker_is_replaced_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[str] = []
    monkeypatch.setattr(_errors, "_listeners", [lambda where, exc: reported.append(where)])
    monkeypatch.setattr(_errors, "_counts", Counter())  # expected errors: not counted for later tests
    exporter = Collecting()
    pipeline = route_to(exporter)
    real = pipeline._pick_job_locked
    deaths = iter([True, True])

    def dies_twice(now: float):  # fault injection: a bug that escapes the worker's job loop
        if next(deaths, False):
            raise RuntimeError("worker bug")
        return real(now)

    monkeypatch.setattr(pipeline, "_pick_job_locked", dies_twice)
    make_traces(3, spans=1)
    assert flowtel.flush(30)
    assert len(exporter.traces) == 3
    assert stats()["worker_restarts"] == 2
    assert reported == ["hostile export worker died"] * 2


def test_a_worker_that_keeps_dying_says_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_errors, "_listeners", [])
    monkeypatch.setattr(_errors, "_counts", Counter())  # expected errors: not counted for later tests
    pipeline = route_to(Collecting())

    def always(now: float):
        raise RuntimeError("worker bug")

    monkeypatch.setattr(pipeline, "_pick_job_locked", always)
    make_traces(1, spans=1)
    assert pipeline.wait_for(lambda s: s.state == "failed", timeout=30)
    assert stats()["state"] == "failed"


@pytest.fixture(autouse=True)
def _no_leftover_pipelines() -> Iterator[None]:
    yield
    from flowtel.tracing import _runtime

    _runtime.reset()
