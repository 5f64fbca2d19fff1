"""``flowtel traces push``: copy the embedded store's traces to an MLflow server.

    flowtel traces push --to URL [--experiment NAME] [--filter "..."] [--batch-size N]

Every trace goes with its spans, tags, metadata and assessments (assessment ids kept), in the
experiment of the same name on the server (created when missing; ``--experiment`` puts them all
in one). Sending goes through the MLflow destination's exporter (``create_destination("mlflow")``),
the same code a traced process uses.

Idempotent and resumable, through a journal (JSON lines, permissions 0600) per (store,
destination, experiment) in the user's cache dir: before a batch is sent its ids are written as
*in flight*, after the server took it as *sent* with a fingerprint of what was sent (tags,
metadata, assessments, state). A re-run skips what was sent and unchanged, re-sends what changed
(the server upserts by trace id and assessment id), and asks the server about the batch that was
in flight when a run was interrupted. When the server no longer has the last trace recorded as
sent (its data was wiped), the journal is ignored and everything is sent again.

:func:`push_traces` is also the engine of ``flowtel ui``, which syncs the store into its private
server with it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from flowtel.delivery import Destination, TraceStore
    from flowtel.entities import Trace, TraceInfo

__all__ = ["PushJournal", "PushReport", "add_push_commands", "default_journal_path", "push_traces"]

DEFAULT_BATCH_SIZE = 50
_PAGE = 500
_ATTEMPTS = 4


def add_push_commands(traces_subparsers: Any) -> None:
    """Add ``push`` to the ``flowtel traces`` sub-parser collection (sets ``handler``)."""
    push = traces_subparsers.add_parser(
        "push", help="copy the embedded store's traces to an MLflow server (idempotent, resumable)"
    )
    push.add_argument("--to", required=True, metavar="URL", help="MLflow tracking server, http(s)://host:port")
    push.add_argument("--experiment", metavar="NAME", help="put every trace in this experiment (default: same names)")
    push.add_argument("--filter", dest="filter_string", help="only traces matching this MLflow filter")
    push.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="traces per request (default 50)")
    push.add_argument("--journal", metavar="PATH", help="journal file (default: in the user cache dir)")
    push.set_defaults(handler=_cmd_push)


@dataclass
class PushReport:
    """What one push did. ``failed`` maps trace id to the reason it was not delivered."""

    total: int = 0
    sent: int = 0
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    experiments: dict[str, str] = field(default_factory=dict)
    """Local experiment id -> the server's, for the experiments of the traces sent."""

    @property
    def ok(self) -> bool:
        return not self.failed


def push_traces(
    store_path: str | os.PathLike[str],
    tracking_uri: str,
    *,
    experiment: str | None = None,
    filter_string: str | None = None,
    journal: PushJournal | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> PushReport:
    """Copy the traces of the embedded store at ``store_path`` to the MLflow server at ``tracking_uri``.

    Blocks until done (or ``stop`` is set between batches). Not thread-safe per journal.

    Args:
        progress: Called with ``(done, total)`` after each batch.

    Raises:
        FlowtelException: the server cannot be reached or refused the request (a clear message).
    """
    from flowtel.delivery import create_destination

    source = create_destination("local", path=os.fspath(store_path)).store
    target = create_destination("mlflow", tracking_uri=tracking_uri)
    assert source is not None and target.store is not None
    journal = journal or PushJournal(default_journal_path(store_path, tracking_uri, experiment))
    try:
        _check_reachable(target.store, tracking_uri)
        journal.forget_if_server_was_wiped(target.store)
        journal.settle_in_flight(target.store)
        infos = list(_all_infos(source, filter_string))
        todo = [info for info in infos if journal.sent.get(info.trace_id) != fingerprint(info)]
        report = PushReport(total=len(infos), unchanged=len(infos) - len(todo))
        experiments = _ExperimentMap(store_path, target.store, experiment)
        done = report.unchanged
        if progress is not None:
            progress(done, report.total)
        for start in range(0, len(todo), max(1, batch_size)):
            if stop is not None and stop.is_set():
                break
            batch = todo[start:start + max(1, batch_size)]
            _push_batch(batch, source, target, experiments, journal, report)
            done += len(batch)
            if progress is not None:
                progress(done, report.total)
        report.experiments = dict(experiments.ids)
        return report
    finally:
        target.exporter.shutdown()
        target.store.close()
        source.close()


def fingerprint(info: TraceInfo) -> str:
    """What a re-run compares: the parts of a stored trace that can still change."""
    d = info.to_dict()
    changing = {k: d.get(k) for k in ("tags", "trace_metadata", "assessments", "state")}
    return hashlib.sha256(json.dumps(changing, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- one batch -----------------------------------------------------------------------------------
def _push_batch(infos: list[TraceInfo], source: TraceStore, target: Destination,
                experiments: _ExperimentMap, journal: PushJournal, report: PushReport) -> None:
    traces: list[Trace] = []
    prints: dict[str, str] = {}
    for info in infos:
        trace = source.get_trace(info.trace_id)
        if trace is None:  # deleted since it was listed
            report.total -= 1
            continue
        try:
            experiments.relocate(trace)
        except Exception as exc:  # noqa: BLE001 - one experiment's problem is that trace's failure
            report.failed[info.trace_id] = f"experiment: {exc}"
            continue
        traces.append(trace)
        prints[info.trace_id] = fingerprint(info)
    if not traces:
        return
    journal.begin(prints)
    pending = traces
    for attempt in range(_ATTEMPTS):
        result = target.exporter.export(pending)
        delivered = {t.info.trace_id: prints[t.info.trace_id] for t in pending if t.info.trace_id not in result.failures}
        journal.mark_sent(delivered)
        report.sent += len(delivered)
        retry = [t for t in pending if t.info.trace_id in result.failures and result.failures[t.info.trace_id].retryable]
        for trace_id, failure in result.failures.items():
            if not failure.retryable or attempt == _ATTEMPTS - 1:
                report.failed[trace_id] = f"{failure.reason}: {failure.message}".rstrip(": ")
        if not retry or attempt == _ATTEMPTS - 1:
            break
        waits = [f.retry_after for f in result.failures.values() if f.retry_after]
        threading.Event().wait(min(max(waits, default=0.5 * 2 ** attempt), 10.0))  # backing off
        pending = retry
    journal.end()


def _all_infos(store: TraceStore, filter_string: str | None) -> Iterator[TraceInfo]:
    token: str | None = None
    while True:
        traces, token = store.search_traces(
            experiment_ids=None, filter_string=filter_string, order_by=["timestamp_ms ASC"],
            max_results=_PAGE, page_token=token, include_spans=False,
        )
        for trace in traces:
            yield trace.info
        if not token:
            return


def _check_reachable(store: TraceStore, url: str) -> None:
    from flowtel._exceptions import FlowtelException

    try:
        store.get_experiment("0")  # type: ignore[attr-defined]
    except FlowtelException as exc:
        raise FlowtelException(f"cannot push to the MLflow server at {url}: {exc}") from None


class _ExperimentMap:
    """Local experiment id -> the server's id of the experiment with the same name."""

    def __init__(self, store_path: str | os.PathLike[str], server: Any, override: str | None) -> None:
        from flowtel.exporters.local import experiment_registry

        self._local = experiment_registry(os.fspath(store_path))
        self._server = server
        self._override = override
        self.ids: dict[str, str] = {}

    def relocate(self, trace: Trace) -> None:
        from flowtel.entities import TraceLocation

        local_id = trace.info.experiment_id or "0"
        if local_id not in self.ids:
            self.ids[local_id] = self._server_id(local_id)
        trace.info.trace_location = TraceLocation.from_experiment_id(self.ids[local_id])

    def _server_id(self, local_id: str) -> str:
        from flowtel.tracing._experiments import get_or_create

        if self._override:
            name = self._override
        else:
            local = self._local.get_experiment(local_id)
            name = local.name if local is not None else "Default"
        if name == "Default":
            return "0"
        return str(get_or_create(self._server, name).experiment_id)


# -- the journal ---------------------------------------------------------------------------------
def default_journal_path(store_path: str | os.PathLike[str], tracking_uri: str, experiment: str | None) -> Path:
    """``<user cache dir>/flowtel/push/<hash of store, destination, experiment>.jsonl``."""
    from flowtel.delivery._spool import default_spool_root

    identity = json.dumps([os.path.abspath(os.fspath(store_path)), tracking_uri.rstrip("/"), experiment or ""])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:20]
    root = default_spool_root()
    base = root.parent if root is not None else Path(os.fspath(store_path)).parent
    return base / "push" / f"{digest}.jsonl"


class PushJournal:
    """Append-only record of what was sent (JSON lines, mode 0600). See the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.sent: dict[str, str] = {}
        self.in_flight: dict[str, str] = {}
        self._last_sent: str | None = None
        self._load()

    def begin(self, prints: dict[str, str]) -> None:
        self._append({"in_flight": prints})
        self.in_flight = dict(prints)

    def mark_sent(self, prints: dict[str, str]) -> None:
        if not prints:
            return
        self._append({"sent": prints})
        self.sent.update(prints)
        self._last_sent = next(reversed(prints))

    def end(self) -> None:
        self._append({"in_flight": {}})
        self.in_flight = {}

    def settle_in_flight(self, server: Any) -> None:
        """Ask the server which traces of an interrupted batch it has; those count as sent."""
        if not self.in_flight:
            return
        found = {tid: fp for tid, fp in self.in_flight.items() if server.get_trace_info(tid) is not None}
        self.mark_sent(found)
        self.end()

    def forget_if_server_was_wiped(self, server: Any) -> None:
        if self._last_sent is not None and server.get_trace_info(self._last_sent) is None:
            print(f"The server no longer has traces this journal recorded as sent; sending all again "
                  f"({self.path}).", file=sys.stderr)
            self.sent.clear()
            self._last_sent = None
            self._truncate()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write: the batch it began is re-checked
            if isinstance(entry.get("sent"), dict):
                self.sent.update(entry["sent"])
                if entry["sent"]:
                    self._last_sent = next(reversed(entry["sent"]))
            if isinstance(entry.get("in_flight"), dict):
                self.in_flight = dict(entry["in_flight"])
        self.in_flight = {t: fp for t, fp in self.in_flight.items() if t not in self.sent}

    def _append(self, entry: dict[str, Any]) -> None:
        with self._open("a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _truncate(self) -> None:
        with self._open("w"):
            pass

    def _open(self, mode: str) -> IO[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC)
        fd = os.open(self.path, flags, 0o600)
        return os.fdopen(fd, mode, encoding="utf-8")


# -- the command ---------------------------------------------------------------------------------
def _cmd_push(args: argparse.Namespace) -> int:
    store_path = args.store or os.environ.get("FLOWTEL_STORE_PATH", "flowtel-traces.db")
    if not os.path.exists(store_path):
        print(f"error: the store {store_path!r} does not exist (pass --store PATH).", file=sys.stderr)
        return 1
    if not args.to.startswith(("http://", "https://")):
        print(f"error: --to must be an http(s):// MLflow tracking server URL, got {args.to!r}.", file=sys.stderr)
        return 2
    journal = PushJournal(args.journal or default_journal_path(store_path, args.to, args.experiment))
    bar = ProgressBar(sys.stderr, "pushing")
    report = push_traces(store_path, args.to, experiment=args.experiment, filter_string=args.filter_string,
                         journal=journal, batch_size=args.batch_size, progress=bar.update)
    bar.close()
    print(f"{report.sent} sent, {report.unchanged} already there, {len(report.failed)} failed "
          f"(of {report.total} traces) -> {args.to}")
    for trace_id, reason in sorted(report.failed.items()):
        print(f"  failed {trace_id}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1


class ProgressBar:
    """A one-line progress bar on a terminal; plain lines every 10% otherwise (logs, pipes)."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self._stream = stream
        self._label = label
        self._tty = stream.isatty()
        self._last_decile = -1
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if total <= 0:
            return
        fraction = done / total
        if self._tty:
            filled = int(30 * fraction)
            self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            self._drawn = True
        elif int(fraction * 10) != self._last_decile:
            self._last_decile = int(fraction * 10)
            self._stream.write(f"{self._label}: {done}/{total}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
