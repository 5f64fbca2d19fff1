"""A durable, size-capped spool on local disk for traces a destination could not take yet.

Layout: one private directory per destination identity under the spool root::

    <root>/<name>-<sha256(destination_key)[:16]>/
        destination.json                         which destination this is (key, name)
        <ts_ns:020d>-<pid>-<seq>-<count>.jsonl   a committed batch: header + one trace per line
        .<pid>-<seq>.tmp                         a batch being written (never read)
        <committed name>.claimed-<pid>           a batch being replayed by process <pid>

Crash safety: a batch is written to a temporary file, ``fsync``-ed, renamed into place (atomic
on POSIX and Windows) and the directory is ``fsync``-ed. A process killed at any instant leaves
either no batch or a complete one, so SIGKILL loses only what was not yet handed to the spool.
The ``fsync`` calls are not needed for SIGKILL (the page cache survives the process) but make a
committed batch survive power loss or a kernel crash too; they cost one disk flush per batch, on
a delivery worker, only while spooling.

Several processes with the same configuration (multi-worker servers, the next run of a job)
share a directory. A batch is replayed by whoever renames it to ``.claimed-<pid>`` first, so no
batch is replayed twice; a claim or temporary file left by a dead process is recovered or removed
by the next scan.

Privacy: directories are created ``0700`` and files ``0600``. The default root is in the user's
own cache directory; a root writable by other users is refused unless the user chose it with
``FLOWTEL_SPOOL_DIR``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import itertools
import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowtel import _attachments

if TYPE_CHECKING:
    from flowtel.entities import Trace

__all__ = [
    "ClaimedBatch",
    "Spool",
    "SpoolFullError",
    "SpoolSummary",
    "UnsafeSpoolError",
    "WriteResult",
    "default_spool_root",
    "list_spools",
    "purge_directory",
    "spool_dir_name",
]

FORMAT_VERSION = 1
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_META_FILE = "destination.json"
# Digit runs are bounded: a name whose numbers overflow (a stray or hostile file) is no batch.
_BATCH_RE = re.compile(r"^(\d{20})-(\d{1,10})-(\d{1,19})-(\d{1,9})\.jsonl$")
_CLAIM_RE = re.compile(r"^(.+\.jsonl)\.claimed-(\d{1,10})$")
_TMP_RE = re.compile(r"^\.(\d{1,10})-\d{1,19}\.tmp$")
_CORRUPT_SUFFIX = ".corrupt"  # unreadable lines are kept here, never replayed, never deleted
_seq = itertools.count(1)


class UnsafeSpoolError(OSError):
    """The spool location is not private to this user; flowtel will not write traces there."""


class SpoolFullError(OSError):
    """A batch is larger than the whole spool cap (``FLOWTEL_SPOOL_MAX_BYTES``)."""


@dataclass(frozen=True, order=True)
class _BatchFile:
    name: str
    count: int
    size: int


@dataclass(frozen=True)
class ClaimedBatch:
    """A batch this process renamed to its claim name, to replay it."""

    original: str
    path: Path
    count: int


@dataclass(frozen=True)
class WriteResult:
    """What a write did: traces written, and older traces evicted to stay under the cap."""

    written: int
    evicted: int


@dataclass(frozen=True)
class SpoolSummary:
    """One destination directory as seen on disk (for ``flowtel spool list``)."""

    directory: Path
    destination_key: str | None
    name: str | None
    batches: int
    traces: int
    bytes: int
    claimed_batches: int
    oldest_ns: int | None


def default_spool_root() -> Path | None:
    """``<user cache dir>/flowtel/spool``, or ``None`` when there is no home directory.

    XDG on Linux (``$XDG_CACHE_HOME`` when absolute, else ``~/.cache``), ``~/Library/Caches``
    on macOS, ``%LOCALAPPDATA%`` on Windows. Never a shared location such as ``/tmp``.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return Path(base) / "flowtel" / "spool" if base else None
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "flowtel" / "spool"
    home = os.path.expanduser("~")
    if home == "~" or not os.path.isabs(home):
        return None
    cache = "Library/Caches" if sys.platform == "darwin" else ".cache"
    return Path(home) / cache / "flowtel" / "spool"


def spool_dir_name(name: str, destination_key: str) -> str:
    """Directory name for a destination: readable prefix plus a hash of its identity."""
    digest = hashlib.sha256(destination_key.encode("utf-8")).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40] or "destination"
    return f"{safe}-{digest}"


class Spool:
    """The spool directory of one destination. Thread-safe; safe across processes.

    All methods do disk I/O and block: call them from delivery workers, never from the user's
    thread. They raise ``OSError`` for disk problems (full, read-only, permissions); the caller
    counts and reports them.

    Args:
        root: The spool root (the destination gets its own directory under it).
        destination_key: Stable identity of the destination (no credentials in it).
        name: Short readable destination name, used as directory prefix.
        max_bytes: Disk use at most; the oldest batches are evicted to make room.
        require_private_root: Refuse a root that other users can write (default root only).
    """

    def __init__(
        self,
        root: Path,
        destination_key: str,
        *,
        name: str = "destination",
        max_bytes: int = 512 * 1024 * 1024,
        require_private_root: bool = True,
    ) -> None:
        self.root = Path(root)
        self.destination_key = destination_key
        self.name = name
        self.directory = self.root / spool_dir_name(name, destination_key)
        self.max_bytes = max_bytes
        self._require_private_root = require_private_root
        self._lock = threading.Lock()
        self._index: dict[str, _BatchFile] = {}
        self._scans = 0
        self._committed_during_scan: dict[str, _BatchFile] = {}
        self._created = False
        self._pid = os.getpid()

    # -- set-up ---------------------------------------------------------------------------
    def open(self) -> None:
        """Index what an earlier run left here, if anything.

        Creates nothing: the directory is made by the first write, so a destination that never
        needs the spool leaves nothing on disk.
        """
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            return
        _check_plain_private_dir(self.directory, info)
        self.rescan()

    def ensure_directory(self) -> None:
        """Create the root and this destination's directory (``0700``) with its description."""
        if self._created:
            return
        _make_private_dirs(self.root, check_shared=self._require_private_root)
        _make_private_dir(self.directory)
        meta = self.directory / _META_FILE
        if not meta.exists():
            payload = {"format": FORMAT_VERSION, "destination_key": self.destination_key, "name": self.name}
            _atomic_write(self.directory, meta, [json.dumps(payload).encode("utf-8") + b"\n"])
        self._created = True

    def after_fork_in_child(self) -> None:
        """Forget the parent's view; the child rescans before using the directory."""
        self._lock = threading.Lock()
        self._index = {}
        self._scans = 0
        self._committed_during_scan = {}
        self._pid = os.getpid()

    # -- index --------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Re-read the directory: pick up other processes' batches, recover dead claims."""
        # The disk is read without the lock (``pending``/``has_batches`` are called under the
        # pipeline's lock, which the user's thread takes). Batches this process commits while
        # the listing runs are remembered and kept, so a stale listing cannot hide them.
        with self._lock:
            self._scans += 1
        found: dict[str, _BatchFile] = {}
        try:
            for entry in _scandir(self.directory):
                batch = self._scan_entry(entry)
                if batch is not None:
                    found[batch.name] = batch
        finally:
            with self._lock:
                self._scans -= 1
                found.update(self._committed_during_scan)
                if not self._scans:
                    self._committed_during_scan = {}
        with self._lock:
            self._index = found

    def _add_locked(self, batch: _BatchFile) -> None:
        self._index[batch.name] = batch
        if self._scans:
            self._committed_during_scan[batch.name] = batch

    def pending(self) -> tuple[int, int, int]:
        """``(batches, traces, bytes)`` known to be waiting (cheap; no disk access)."""
        with self._lock:
            files = list(self._index.values())
        return len(files), sum(f.count for f in files), sum(f.size for f in files)

    def has_batches(self) -> bool:
        with self._lock:
            return bool(self._index)

    # -- writing ------------------------------------------------------------------------------
    def write(
        self, traces: Sequence[Trace], *, timestamp_ns: int | None = None, between: Callable[[], None] | None = None
    ) -> WriteResult:
        """Commit ``traces`` as one batch; evict the oldest batches if the cap needs it.

        ``between`` is called after encoding each trace (the pipeline yields the GIL there).

        Raises:
            OSError: the batch could not be written (nothing was committed).
        """
        if not traces:
            return WriteResult(0, 0)
        lines = [_header(self.destination_key, len(traces))]
        for trace in traces:
            lines.append(_encode(trace))
            if between is not None:
                between()
        size = sum(len(line) for line in lines)
        if size > self.max_bytes:
            raise SpoolFullError(errno.EFBIG, f"batch of {size} bytes exceeds FLOWTEL_SPOOL_MAX_BYTES")
        self.ensure_directory()
        evicted = self._make_room(size)
        seq = next(_seq)
        ts = timestamp_ns if timestamp_ns is not None else time.time_ns()
        name = f"{ts:020d}-{self._pid}-{seq}-{len(traces)}.jsonl"
        tmp = self.directory / f".{self._pid}-{seq}.tmp"
        _atomic_write(self.directory, self.directory / name, lines, tmp=tmp)
        with self._lock:
            self._add_locked(_BatchFile(name, len(traces), size))
        return WriteResult(len(traces), evicted)

    def _make_room(self, size: int) -> int:
        if self._known_bytes() + size <= self.max_bytes:
            return 0
        self.rescan()  # other processes may have written or replayed since our last look
        evicted = 0
        for batch in self._oldest_first():
            if self._known_bytes() + size <= self.max_bytes:
                break
            if self._remove(batch):
                evicted += batch.count
        return evicted

    def _known_bytes(self) -> int:
        with self._lock:
            return sum(f.size for f in self._index.values())

    def _oldest_first(self) -> list[_BatchFile]:
        with self._lock:
            return sorted(self._index.values())

    def _remove(self, batch: _BatchFile) -> bool:
        with self._lock:
            self._index.pop(batch.name, None)
        try:
            os.unlink(self.directory / batch.name)
        except FileNotFoundError:
            return False  # replayed or evicted by another process meanwhile
        return True

    # -- replay -------------------------------------------------------------------------------
    def claim_oldest(self) -> ClaimedBatch | None:
        """Take the oldest batch for replay (atomic rename), or ``None`` when there is none."""
        for batch in self._oldest_first():
            claimed = self.directory / f"{batch.name}.claimed-{self._pid}"
            with self._lock:
                self._index.pop(batch.name, None)
            try:
                os.rename(self.directory / batch.name, claimed)
            except FileNotFoundError:
                continue  # another process claimed or evicted it first
            return ClaimedBatch(batch.name, claimed, batch.count)
        return None

    def read(self, claimed: ClaimedBatch, *, between: Callable[[], None] | None = None) -> tuple[list[Trace], int]:
        """The traces of a claimed batch and how many lines could not be decoded.

        Whatever a crash, another version or a person left in the file, this returns: a line
        that does not decode is counted and kept aside in ``<batch>.corrupt``; a symlink, a
        non-regular file or one larger than the spool cap is not read at all (all its traces
        count as corrupt and the file is set aside). ``between`` is called after each trace.

        Raises:
            OSError: the file could not be read (disk error).
        """
        from flowtel.entities import Trace

        traces: list[Trace] = []
        rejected: list[bytes] = []
        data = self._read_bounded(claimed)
        if data is None:
            self._set_aside(claimed)
            return [], max(claimed.count, 1)
        lines = data.splitlines()
        body = lines[1:] if lines and _is_header(lines[0]) else lines
        for line in body:
            try:
                traces.append(_decode(json.loads(line), Trace))
            except Exception:  # noqa: BLE001 - any undecodable line is counted, never fatal
                rejected.append(line)
            if between is not None:
                between()
        if rejected:
            self._keep_rejected(claimed, rejected)
        return traces, len(rejected) + max(claimed.count - len(body), 0)

    def _read_bounded(self, claimed: ClaimedBatch) -> bytes | None:
        """The file's bytes, or None if it is no plain file of ours of a sane size."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(claimed.path, flags)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                return None  # a symlink, fifo or directory under a batch name
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > self.max_bytes:
                return None
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(self.max_bytes + 1)
        finally:
            os.close(fd)

    def _keep_rejected(self, claimed: ClaimedBatch, lines: list[bytes]) -> None:
        target = self.directory / (claimed.original + _CORRUPT_SUFFIX)
        with contextlib.suppress(OSError):  # best effort: the lines are counted either way
            _atomic_write(self.directory, target, [line + b"\n" for line in lines])

    def _set_aside(self, claimed: ClaimedBatch) -> None:
        with contextlib.suppress(OSError):
            os.rename(claimed.path, self.directory / (claimed.original + _CORRUPT_SUFFIX))

    def complete(self, claimed: ClaimedBatch) -> None:
        """The batch was delivered (or its traces dropped): delete it."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(claimed.path)

    def release(self, claimed: ClaimedBatch) -> None:
        """Give a claimed batch back, unchanged, for a later replay."""
        target = self.directory / claimed.original
        os.rename(claimed.path, target)
        size = _size(target)
        with self._lock:
            self._add_locked(_BatchFile(claimed.original, claimed.count, size))

    def replace(self, claimed: ClaimedBatch, traces: Sequence[Trace]) -> None:
        """Keep only ``traces`` of a claimed batch (the rest was delivered or dropped).

        The remainder keeps the batch's original timestamp, so it keeps its place in line.
        """
        match = _BATCH_RE.match(claimed.original)
        ts = int(match.group(1)) if match else None
        if traces:
            self.write(traces, timestamp_ns=ts)
        self.complete(claimed)

    # -- maintenance --------------------------------------------------------------------------
    def purge(self) -> int:
        """Delete every committed batch (not ones being replayed now); traces deleted."""
        with self._lock:
            self._index = {}
        return purge_directory(self.directory)

    def _scan_entry(self, entry: os.DirEntry[str]) -> _BatchFile | None:
        name = entry.name
        try:
            if not entry.is_file(follow_symlinks=False):
                return None  # a symlink or directory under a batch name: never followed
        except OSError:
            return None
        match = _BATCH_RE.match(name)
        if match:
            return _BatchFile(name, int(match.group(4)), _entry_size(entry))
        claim = _CLAIM_RE.match(name)
        if claim and not _pid_alive(int(claim.group(2))):
            return self._recover_claim(entry, claim.group(1))
        tmp = _TMP_RE.match(name)
        if tmp and not _pid_alive(int(tmp.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)  # half-written by a process that died: never committed
        return None

    def _recover_claim(self, entry: os.DirEntry[str], original: str) -> _BatchFile | None:
        # The claimer died mid-replay: the batch is given back. If it had been delivered just
        # before the crash it is sent again (at-least-once); nothing is lost.
        try:
            os.rename(entry.path, self.directory / original)
        except OSError:
            return None
        match = _BATCH_RE.match(original)
        count = int(match.group(4)) if match else 0
        return _BatchFile(original, count, _size(self.directory / original))


# -- listing (CLI) -------------------------------------------------------------------------------
def list_spools(root: Path) -> list[SpoolSummary]:
    """Every destination directory under ``root`` with what it holds. Read-only."""
    summaries = []
    for entry in sorted(_scandir(root), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            summaries.append(_summarise(Path(entry.path)))
    return summaries


def purge_directory(directory: Path) -> int:
    """Delete every committed batch in one destination directory; traces deleted.

    Batches being replayed right now (claimed by a live process) are left alone.
    """
    removed = 0
    for entry in _scandir(directory):
        match = _BATCH_RE.match(entry.name)
        if match is None:
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # replayed meanwhile
        removed += int(match.group(4))
    return removed


def _summarise(directory: Path) -> SpoolSummary:
    meta = _read_meta(directory)
    batches = traces = size = claimed = 0
    oldest: int | None = None
    for entry in _scandir(directory):
        match = _BATCH_RE.match(entry.name) or _BATCH_RE.match(entry.name.split(".claimed-")[0])
        if not match:
            continue
        claimed += ".claimed-" in entry.name
        batches += 1
        traces += int(match.group(4))
        size += _entry_size(entry)
        ts = int(match.group(1))
        oldest = ts if oldest is None else min(oldest, ts)
    return SpoolSummary(
        directory, meta.get("destination_key"), meta.get("name"), batches, traces, size, claimed, oldest
    )


def _read_meta(directory: Path) -> dict[str, str]:
    try:
        data = json.loads((directory / _META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# -- file helpers --------------------------------------------------------------------------------
def _header(destination_key: str, count: int) -> bytes:
    header = {"flowtel_spool": FORMAT_VERSION, "destination_key": destination_key, "count": count}
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n"


def _is_header(line: bytes) -> bool:
    return line.startswith(b'{"flowtel_spool"')


def _encode(trace: Trace) -> bytes:
    """One line: ``Trace.to_dict()`` as JSON, built without the defensive copies ``to_dict``
    makes for callers (the dicts are only read here); ``Trace.from_dict`` reads it back."""
    spans = [_span_dict(span) for span in trace.data.spans]
    data: dict[str, Any] = {"info": trace.info.to_dict(), "data": {"spans": spans}}
    attachments = _attachments.attachments_of(trace)
    if attachments:  # media taken out of inputs/outputs travel with their trace
        data["flowtel_attachments"] = {
            a.attachment_id: [a.content_type, base64.b64encode(a.data).decode("ascii")] for a in attachments.values()
        }
    return json.dumps(data, separators=(",", ":")).encode("utf-8") + b"\n"


def _decode(data: dict[str, Any], trace_type: Any) -> Trace:
    stored = data.pop("flowtel_attachments", None)
    trace: Trace = trace_type.from_dict(data)
    if stored:
        _attachments.set_attachments(trace, {
            key: _attachments.Attachment(key, content_type, base64.b64decode(encoded))
            for key, (content_type, encoded) in stored.items()
        })
    return trace


def _span_dict(span: Any) -> Any:
    shared = getattr(span, "_to_dict_shared", None)
    return shared() if shared is not None else span.to_dict()


def _open_new_file(path: Path) -> int:
    """Create ``path`` exclusively, private to this user. A seam for disk-fault tests."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return os.open(path, flags, _FILE_MODE)


def _atomic_write(directory: Path, target: Path, chunks: Sequence[bytes], *, tmp: Path | None = None) -> None:
    tmp = tmp or directory / f".{os.getpid()}-{next(_seq)}.tmp"
    fd = _open_new_file(tmp)
    try:
        try:
            _write_all(fd, chunks)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _write_all(fd: int, chunks: Sequence[bytes]) -> None:
    data = memoryview(b"".join(chunks))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _fsync_dir(directory: Path) -> None:
    if sys.platform == "win32":
        return  # directories cannot be opened for fsync on Windows; rename is durable there
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_private_dirs(root: Path, *, check_shared: bool) -> None:
    """Create ``root`` and missing parents ``0700``; refuse a root others can write to."""
    missing = []
    path = root
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        _make_private_dir(directory)
    if check_shared:
        _check_private(root)


def _make_private_dir(directory: Path) -> None:
    try:
        os.mkdir(directory, _DIR_MODE)
    except FileExistsError:
        pass
    info = os.lstat(directory)
    _check_plain_private_dir(directory, info)
    if sys.platform != "win32" and stat.S_IMODE(info.st_mode) != _DIR_MODE:
        os.chmod(directory, _DIR_MODE)


def _check_plain_private_dir(directory: Path, info: os.stat_result) -> None:
    """A real directory of ours: a symlink or another user's directory could redirect traces."""
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeSpoolError(errno.ENOTDIR, f"{directory} is not a plain directory")
    _check_owner(directory, info)


def _check_private(directory: Path) -> None:
    if sys.platform == "win32":
        return
    info = os.stat(directory)
    _check_owner(directory, info)
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeSpoolError(
            errno.EACCES,
            f"{directory} is writable by other users; set FLOWTEL_SPOOL_DIR to choose a spool location",
        )


def _check_owner(directory: Path, info: os.stat_result) -> None:
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafeSpoolError(errno.EACCES, f"{directory} belongs to another user")


def _scandir(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            yield from list(entries)
    except FileNotFoundError:
        return


def _entry_size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a reused pid counts as alive: safe side)."""
    if pid == os.getpid() or sys.platform == "win32":
        return True  # on Windows os.kill would terminate the process: never probe there
    if not 0 < pid < 2**31:
        return False  # no process has such an id (and os.kill would overflow)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True
