"""The on-disk spool: privacy, crash safety, the size cap, several processes sharing it, and a
disk that is full or read-only (real kernel errors, no mocks of flowtel logic)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowtel
from flowtel.delivery import _spool
from flowtel.delivery._pipeline import RetryPolicy
from flowtel.delivery._spool import Spool, default_spool_root, list_spools
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


@pytest.fixture
def receiver() -> Iterator[OtlpHttpReceiver]:
    with OtlpHttpReceiver(hold_timeout=20.0) as rx:
        yield rx


@pytest.fixture
def some_traces() -> list[flowtel.Trace]:
    from flowtel.exporters import InMemoryExporter

    exporter = InMemoryExporter()
    route_to(exporter)
    make_traces(6)
    assert flowtel.flush(10)
    return exporter.traces


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- format, privacy, crash safety ----------------------------------------------------------------
def test_batches_round_trip_and_are_private(tmp_path: Path, some_traces: list[flowtel.Trace]) -> None:
    spool = Spool(tmp_path / "root", "dest-key", name="dest")
    spool.open()
    spool.write(some_traces[:4])
    spool.write(some_traces[4:])

    assert spool.pending()[:2] == (2, 6)
    assert stat.S_IMODE(os.stat(tmp_path / "root").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(spool.directory).st_mode) == 0o700
    for path in spool.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    claimed = spool.claim_oldest()
    assert claimed is not None
    traces, bad = spool.read(claimed)
    assert bad == 0
    assert [t.to_dict() for t in traces] == [t.to_dict() for t in some_traces[:4]]


def test_a_root_other_users_can_write_is_refused_unless_chosen(
    tmp_path: Path, some_traces: list[flowtel.Trace]
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(_spool.UnsafeSpoolError):
        Spool(shared, "k", require_private_root=True).write(some_traces)
    chosen = Spool(shared, "k", require_private_root=False)  # the user said so (FLOWTEL_SPOOL_DIR)
    chosen.write(some_traces)
    assert stat.S_IMODE(os.stat(chosen.directory).st_mode) == 0o700


def test_nothing_is_created_until_something_is_spooled(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "root", "k")
    spool.open()
    assert not (tmp_path / "root").exists() and not spool.has_batches()


def test_default_root_is_the_private_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_spool_root() == tmp_path / "cache" / "flowtel" / "spool"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = "Library/Caches" if sys.platform == "darwin" else ".cache"
    assert default_spool_root() == tmp_path / "home" / expected / "flowtel" / "spool"


def test_leftovers_of_a_dead_process_are_recovered_or_removed(tmp_path: Path, some_traces: list[flowtel.Trace]) -> None:
    spool = Spool(tmp_path, "k")
    spool.open()
    spool.write(some_traces[:2])
    (batch,) = [p for p in spool.directory.iterdir() if p.suffix == ".jsonl"]
    dead = _dead_pid()
    batch.rename(batch.with_name(f"{batch.name}.claimed-{dead}"))  # it died mid-replay
    (spool.directory / f".{dead}-7.tmp").write_bytes(b'{"half": ')  # it died mid-write

    fresh = Spool(tmp_path, "k")
    fresh.open()

    assert fresh.pending()[:2] == (1, 2)  # the claimed batch is back; the torn write never counted
    assert sorted(p.name for p in spool.directory.iterdir()) == sorted([batch.name, "destination.json"])


def test_a_batch_is_replayed_by_one_process_only(tmp_path: Path, some_traces: list[flowtel.Trace]) -> None:
    first, second = Spool(tmp_path, "k"), Spool(tmp_path, "k")
    first.open()
    first.write(some_traces)
    second.open()
    claims = [first.claim_oldest(), second.claim_oldest()]
    assert sum(c is not None for c in claims) == 1


def test_corrupt_lines_are_counted_not_fatal(tmp_path: Path, some_traces: list[flowtel.Trace]) -> None:
    spool = Spool(tmp_path, "k")
    spool.open()
    spool.write(some_traces[:3])
    (batch,) = [p for p in spool.directory.iterdir() if p.suffix == ".jsonl"]
    lines = batch.read_bytes().splitlines()
    batch.write_bytes(b"\n".join([lines[0], lines[1], b"{not json", lines[3]]) + b"\n")
    claimed = spool.claim_oldest()
    assert claimed is not None
    traces, bad = spool.read(claimed)
    assert (len(traces), bad) == (2, 1)


# -- the size cap ---------------------------------------------------------------------------------
def test_the_cap_evicts_the_oldest_batches_and_counts_them(
    receiver: OtlpHttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWTEL_SPOOL_MAX_BYTES", "80000")  # ~15 traces of 10 spans
    receiver.stop()
    pipeline = route_to(OtlpHttpTestExporter(receiver.endpoint))
    ids = []
    for _ in range(10):
        ids += make_traces(5)
        assert flowtel.flush(10)

    during = stats()
    evicted = during["dropped"].get("spool_full", 0)
    assert during["spooled"] == 50 and evicted > 0
    assert set(during["dropped"]) == {"spool_full"}
    receiver.start()
    assert pipeline.drain(30)

    final = stats()
    assert final["sent"] == 50 - evicted  # exactly what was not evicted
    assert_received_exactly(receiver, ids[evicted:])  # and it is the newest: oldest go first


# -- a disk that fails ----------------------------------------------------------------------------
def test_a_full_disk_drops_with_a_reason_and_a_warning(
    receiver: OtlpHttpReceiver, spool_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.stop()
    exporter = OtlpHttpTestExporter(receiver.endpoint)
    Spool(spool_root, exporter.destination_key, name=exporter.name, require_private_root=False).ensure_directory()

    def full_disk(path: Path) -> int:  # every new spool file lands on a device with no space left
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(_spool, "_open_new_file", full_disk)
    with caplog.at_level(logging.WARNING, logger="flowtel"):
        route_to(exporter)
        make_traces(N)
        assert flowtel.flush(10)

    assert (stats()["sent"], stats()["spooled"], stats()["dropped"]) == (0, 0, {"spool_write_error": N})
    assert os.strerror(errno.ENOSPC) in caplog.text
    assert "spool_write_error" in caplog.text


_READ_ONLY_CLIENT = """
import json, sys
import flowtel
from tests.delivery._helpers import make_traces, route_to, stats
from tests.delivery._otlp_exporter import OtlpHttpTestExporter

route_to(OtlpHttpTestExporter(sys.argv[1]))
make_traces(int(sys.argv[2]))
print(json.dumps({"flushed": flowtel.flush(30), "stats": stats()}), flush=True)
"""


@pytest.fixture
def read_only_dir() -> Iterator[tuple[Path, list[str]]]:
    """A directory the client cannot write to, and the command prefix that makes it so.

    Unprivileged: plain permissions. As root (which ignores permissions): a read-only bind
    mount in a private mount namespace, so the kernel answers EROFS.
    """
    path = Path(tempfile.mkdtemp(prefix="flowtel-ro-"))
    try:
        if os.geteuid() != 0:
            os.chmod(path, 0o500)
            yield path, []
        elif shutil.which("unshare") and _can_remount_read_only():
            script = f'mount --bind "{path}" "{path}" && mount -o remount,bind,ro "{path}" && exec "$@"'
            yield path, ["unshare", "--mount", "sh", "-c", script, "sh"]
        else:
            pytest.skip("running as root without mount namespaces: cannot make a directory read-only")
    finally:
        os.chmod(path, 0o700)
        shutil.rmtree(path, ignore_errors=True)


def _can_remount_read_only() -> bool:
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp"],
        capture_output=True, check=False,
    )
    return probe.returncode == 0


def test_a_read_only_spool_dir_drops_with_a_reason_and_a_warning(
    receiver: OtlpHttpReceiver, read_only_dir: tuple[Path, list[str]]
) -> None:
    path, prefix = read_only_dir
    receiver.stop()
    env = {
        "FLOWTEL_SPOOL_DIR": str(path), "FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS": "0.01",
        "FLOWTEL_EXPORT_RETRY_MAX_SECONDS": "0.05", "FLOWTEL_EXPORT_MAX_ATTEMPTS": "3",
    }
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _READ_ONLY_CLIENT, receiver.endpoint, str(N)], cwd=REPO_ROOT,
        env=child_env(env), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["flushed"]
    assert (report["stats"]["sent"], report["stats"]["spooled"]) == (0, 0)
    assert report["stats"]["dropped"] == {"spool_write_error": N}
    assert "cannot use the spool" in done.stderr
    assert os.strerror(errno.EROFS) in done.stderr or os.strerror(errno.EACCES) in done.stderr


# -- retry policy ---------------------------------------------------------------------------------
def test_backoff_grows_with_jitter_and_retry_after_wins() -> None:
    import random

    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0, max_retry_after=60.0)
    rng = random.Random(7)
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0), (10_000, 8.0)]:
        delays = [policy.delay(failures, rng=rng) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 100  # jittered: clients that failed together spread out
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(9, retry_after=0.0) == 0.0
    assert policy.delay(1, retry_after=86_400.0) == 60.0  # a broken server cannot stall us a day


def test_spool_listing_counts_what_is_waiting(tmp_path: Path, some_traces: list[flowtel.Trace]) -> None:
    spool = Spool(tmp_path, "mlflow:http://example:5000", name="mlflow")
    spool.open()
    spool.write(some_traces[:2])
    spool.write(some_traces[2:])
    (summary,) = list_spools(tmp_path)
    assert (summary.destination_key, summary.name, summary.batches, summary.traces) == (
        "mlflow:http://example:5000", "mlflow", 2, 6,
    )
