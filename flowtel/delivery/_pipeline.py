"""Delivery: the pipeline between trace assembly and every exporter.

The user's thread only appends to a bounded in-memory queue (``submit`` never blocks, never
raises, never touches the network or the disk). Two daemon threads per destination do the rest:

* the **export worker** batches queued traces, calls ``exporter.export``, retries retryable
  failures with exponential backoff and jitter (honouring ``Retry-After``), isolates a trace that
  makes the destination refuse a whole batch by bisecting the batch, and replays the spool;
* the **spill worker** (only with a spool) moves queued traces to the durable on-disk spool
  (:mod:`flowtel.delivery._spool`) when memory passes half of its budget, and moves all of them
  there while the destination is unreachable.

Every trace ends in exactly one bucket, counted per destination: sent, spooled (and later
replayed), or dropped with a reason. Drops and spooling are logged as rate-limited warnings.

A destination is *unreachable* once a batch has used up its attempts
(``FLOWTEL_EXPORT_MAX_ATTEMPTS``). Its batch goes to the spool, new traces follow it there, and
the export worker probes with the oldest spooled batch at growing intervals; the first success
ends the outage and the spool drains, interleaved with fresh traces so neither starves.

Delivery is at-least-once: a trace can arrive twice only if the process dies (or shutdown gives
up on a request) after the destination accepted it but before flowtel learnt so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flowtel import _config
from flowtel._errors import report_internal_error
from flowtel._suppress import instrumentation_suppressed
from flowtel.delivery import _lifecycle as lifecycle
from flowtel.delivery._exporter import ExportFailure, ExportResult, TraceExporter
from flowtel.delivery._retry import RetryPolicy
from flowtel.delivery._spool import (
    Spool,
    SpoolFullError,
    WriteResult,
    default_spool_root,
)
from flowtel.entities._span import attribute_bytes

if TYPE_CHECKING:
    from flowtel.delivery._spool import ClaimedBatch
    from flowtel.entities import Trace

__all__ = [
    "Deliverable",
    "DeliveryOptions",
    "DeliveryPipeline",
    "DeliveryStats",
    "RetryPolicy",
    "SpoolOptions",
    "estimate_size",
]

_logger = logging.getLogger("flowtel")
_WARN_INTERVAL_S = 10.0
_SPOOL_RETRY_S = 30.0  # after a spool failure (disk full, read-only), try the disk again this late
_LOCAL_PHASE_GRACE_S = 5.0  # shutdown waits this long at most for finalising / disk writes
_LEFTOVERS_BUDGET_S = 5.0  # and this long for spooling what is left
_MAX_WAIT_S = 3600.0  # longest single condition wait (longer timeouts loop)
_MAX_WORKER_RESTARTS = 10  # past this a destination is "failed" (a bug that kills every worker)


class Deliverable(Protocol):
    """A finished trace waiting for delivery (finalised lazily, once, off the user's thread)."""

    trace_id: str

    def trace(self) -> Trace: ...

    def release(self) -> None: ...


# -- options -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpoolOptions:
    """Where and how much to spool. ``require_private_root`` is off for a root the user chose."""

    root: Path
    max_bytes: int = 512 * 1024 * 1024
    require_private_root: bool = True


@dataclass(frozen=True)
class DeliveryOptions:
    """Limits and policies of one pipeline; :meth:`from_env` reads the ``FLOWTEL_*`` variables.

    Args:
        max_queued: Traces waiting in memory at most.
        max_queued_bytes: Estimated bytes waiting in memory at most (see :func:`estimate_size`).
        batch_size: Traces per export call at most.
        max_batch_bytes: Estimated bytes per export call at most (a large trace goes alone).
        retry: Backoff policy.
        spool: Spool settings, or ``None`` for no spool.
        rescan_interval: How often an idle worker looks for batches other processes spooled.
    """

    max_queued: int = 10_000
    max_queued_bytes: int = 64 * 1024 * 1024
    batch_size: int = 100
    max_batch_bytes: int = 4 * 1024 * 1024
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    spool: SpoolOptions | None = None
    rescan_interval: float = 60.0

    @classmethod
    def from_env(cls) -> DeliveryOptions:
        """Options from the environment. Raises ``ConfigError`` for an invalid value."""
        return cls(
            max_queued=_config.FLOWTEL_MAX_QUEUED_TRACES.get(),
            max_queued_bytes=_config.FLOWTEL_MAX_QUEUED_BYTES.get(),
            batch_size=_config.FLOWTEL_EXPORT_BATCH_SIZE.get(),
            retry=RetryPolicy(
                max_attempts=_config.FLOWTEL_EXPORT_MAX_ATTEMPTS.get(),
                initial_backoff=_config.FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS.get(),
                max_backoff=_config.FLOWTEL_EXPORT_RETRY_MAX_SECONDS.get(),
            ),
            spool=spool_options_from_env(),
        )


def spool_options_from_env() -> SpoolOptions | None:
    """The spool configured by ``FLOWTEL_SPOOL_*``; ``None`` when off or without a home dir."""
    if not _config.FLOWTEL_SPOOL_ENABLED.get():
        return None
    max_bytes = _config.FLOWTEL_SPOOL_MAX_BYTES.get()
    chosen = _config.FLOWTEL_SPOOL_DIR.get()
    if chosen:
        return SpoolOptions(Path(os.path.expanduser(chosen)), max_bytes, require_private_root=False)
    root = default_spool_root()
    return None if root is None else SpoolOptions(root, max_bytes, require_private_root=True)


# -- stats ---------------------------------------------------------------------------------------
@dataclass
class DeliveryStats:
    """Counters of one destination. ``dropped`` maps reason to count.

    ``sent`` includes traces delivered from the spool (``replayed``). ``spooled`` counts traces
    written to the spool; ``spool_pending`` those known to be on disk now, including a batch
    being replayed (written by any process with the same destination). ``state`` is ``"ok"``,
    ``"retrying"``, ``"unreachable"``, ``"failed"`` (its worker kept dying) or ``"stopped"``;
    ``worker_restarts`` counts workers that died and were replaced.
    """

    destination: str
    queued: int = 0
    in_flight: int = 0
    sent: int = 0
    retried: int = 0
    spooled: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    spool_pending: int = 0
    queued_bytes: int = 0
    state: str = "ok"
    spool_dir: str | None = None
    worker_restarts: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


# -- internal records ----------------------------------------------------------------------------
class _Entry:
    """A queued trace with its estimated size and its submission number (for flush)."""

    __slots__ = ("item", "seq", "size")

    def __init__(self, item: Deliverable, size: int, seq: int) -> None:
        self.item = item
        self.size = size
        self.seq = seq


class _Batch:
    """Traces taken by a worker: from memory (``entries``) or from a spool file (``claim``).

    ``open`` counts traces not yet settled. While ``exporting`` is set the worker waits on the
    network; shutdown may then ``abandon`` the batch and settle it itself.
    """

    __slots__ = ("abandoned", "claim", "entries", "exporting", "min_seq", "open", "pending", "relaxed")

    def __init__(self, entries: list[_Entry], claim: ClaimedBatch | None = None, count: int = 0) -> None:
        self.entries = entries
        self.claim = claim
        self.pending: list[Trace] = []
        self.open = len(entries) if entries else count
        self.min_seq = entries[0].seq if entries else None
        self.exporting = False
        self.abandoned = False
        self.relaxed = False  # the worker keeps up: it may yield the GIL between traces


@dataclass
class _Outcome:
    """Result of exporting some traces, after isolating poisoned ones."""

    sent: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    retry: list[Trace] = field(default_factory=list)
    failure: ExportFailure | None = None
    bisected: bool = False


class _Warner:
    """Aggregates drops and spooling into at most one warning per interval. Thread-safe."""

    def __init__(self, destination: str) -> None:
        self._destination = destination
        self._lock = threading.RLock()  # note() runs on the user's thread too (signal handlers)
        self._last = 0.0
        self._dropped: Counter[str] = Counter()
        self._spooled = 0
        self._detail = ""

    def note(self, *, dropped: Counter[str] | None = None, spooled: int = 0, detail: str = "") -> None:
        with self._lock:
            if dropped:
                self._dropped.update(dropped)
            self._spooled += spooled
            self._detail = detail or self._detail
            now = time.monotonic()
            if self._last and now - self._last < _WARN_INTERVAL_S:
                # Rate-limited, never silent: what piles up is said when the interval is over,
                # even if nothing else happens by then (or earlier, at the next flush).
                self._schedule_locked(_WARN_INTERVAL_S - (now - self._last))
                return
            message = self._take_message_locked(now)
        if message:
            _logger.warning(message)

    def emit_pending(self) -> None:
        """Say now whatever is waiting for the end of the interval."""
        with self._lock:
            message = self._take_message_locked(time.monotonic())
        if message:
            _logger.warning(message)

    def _take_message_locked(self, now: float) -> str:
        message = self._message_locked()
        self._dropped.clear()
        self._spooled = 0
        self._detail = ""
        if message:
            self._last = now
        return message

    def _schedule_locked(self, delay: float) -> None:
        if getattr(self, "_timer", None) is not None:
            return
        timer = threading.Timer(max(delay, 0.0), self._timer_fired)
        timer.daemon = True
        self._timer: threading.Timer | None = timer
        timer.start()

    def _timer_fired(self) -> None:
        with self._lock:
            self._timer = None
        self.emit_pending()

    def _message_locked(self) -> str:
        parts = []
        if self._dropped:
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(self._dropped.items()))
            parts.append(f"dropped traces ({summary})")
        if self._spooled:
            parts.append(f"spooled {self._spooled} trace(s) to local disk, to be replayed")
        if not parts:
            return ""
        detail = f" {self._detail}." if self._detail else ""
        return (
            f"flowtel {' and '.join(parts)} for destination {self._destination!r}.{detail}"
            " See flowtel.get_delivery_stats()."
        )


# -- the pipeline --------------------------------------------------------------------------------
class DeliveryPipeline:
    """Bounded queue, workers, retry and spool in front of one exporter.

    Thread-safe and fork-safe: a forked child starts empty, with fresh workers, and never sends
    what the parent had queued. ``submit`` never blocks; ``flush``, ``drain`` and ``shutdown``
    block the calling thread up to their timeout (from ``async`` code, run them in a thread).

    Args:
        exporter: The destination. With a ``destination_key`` and ``options.spool`` set, traces
            it cannot take yet are kept on disk.
        options: Limits and policies; from the environment when omitted.
        max_queued: Override of ``options.max_queued``.
        batch_size: Override of ``options.batch_size``.
    """

    def __init__(
        self,
        exporter: TraceExporter,
        options: DeliveryOptions | None = None,
        *,
        max_queued: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        options = options or DeliveryOptions.from_env()
        if max_queued is not None or batch_size is not None:
            options = _replace(options, max_queued=max_queued, batch_size=batch_size)
        self.exporter = exporter
        self.name = exporter.name
        self.options = options
        self._retry = options.retry
        self._warner = _Warner(self.name)
        self._spool = _make_spool(exporter, options.spool)
        self._created_pid = os.getpid()  # a worker in another process is in a forked child
        self._init_state()
        _PIPELINES.add(self)
        lifecycle.install_multiprocessing_drain()
        if self._spool is not None:
            with self._lock:
                self._start_export_worker_locked()  # replays what an earlier run left behind

    def _init_state(self) -> None:
        # Reentrant: ``submit`` runs on the user's thread, where a signal handler may run traced
        # code in the middle of it; that nested submit must not wait for its own thread.
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)  # wakes the export worker
        self._spill = threading.Condition(self._lock)  # wakes the spill worker
        self._done = threading.Condition(self._lock)  # wakes flush / drain / shutdown
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._next_seq = 1
        self._active: dict[int, _Batch] = {}
        self._sent = self._retried = self._spooled = self._replayed = 0
        self._dropped: Counter[str] = Counter()
        self._stopping = False
        self._closed = False
        self._retrying = False
        self._down = False
        self._probe_failures = 0
        self._probe_at = 0.0
        self._replay_turn = False
        self._unbisectable: str | None = None
        self._spool_state = "closed"  # closed -> ok | broken (retried after _SPOOL_RETRY_S)
        self._spool_retry_at = 0.0
        self._spool_error = ""
        self._last_rescan = 0.0
        self._rescan_requested = False
        self._export_thread: threading.Thread | None = None
        self._spill_thread: threading.Thread | None = None
        self._worker_deaths = 0

    # == producer side (user's thread) ==========================================================
    def submit(self, item: Deliverable) -> bool:
        """Queue a finished trace. Never blocks, never raises, never does I/O.

        Returns False when the trace had to be dropped (counted, warned about).
        """
        try:
            return self._submit(item)
        except Exception as exc:  # noqa: BLE001 - runs on the user's thread; must not raise
            report_internal_error(f"{self.name} delivery submit", exc)
            with self._lock:
                self._dropped["internal_error"] += 1
            return False

    def _submit(self, item: Deliverable) -> bool:
        size = estimate_size(item)
        with self._lock:
            reason = self._refusal_locked(size)
            if reason is None:
                self._enqueue_locked(item, size)
                return True
            self._dropped[reason] += 1
        item.release()
        self._warner.note(dropped=Counter({reason: 1}), detail=_refusal_detail(reason, self.options))
        return False

    def _refusal_locked(self, size: int) -> str | None:
        if self._stopping:
            return "shutdown"
        if len(self._queue) >= self.options.max_queued:
            return "queue_full"
        if self._queue and self._queued_bytes + size > self.options.max_queued_bytes:
            return "queue_full"  # an empty queue takes any single trace, however large
        return None

    def _enqueue_locked(self, item: Deliverable, size: int) -> None:
        self._queue.append(_Entry(item, size, self._next_seq))
        self._next_seq += 1
        self._queued_bytes += size
        if self._export_thread is None:
            self._start_export_worker_locked()
        self._work.notify()
        if self._should_spill_locked():
            if self._spill_thread is None:
                self._start_spill_worker_locked()
            self._spill.notify()

    # == waiting ===============================================================================
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every trace submitted before the call was sent, spooled or dropped.

        A transient failure is retried as usual within ``timeout``; once the destination is
        known to be unreachable, traces go to the spool, so a flush during an outage returns as
        soon as the disk has everything. Blocks up to ``timeout`` seconds; True if everything
        was handled in time.
        """
        deadline = _deadline(timeout)
        with self._lock:
            target = self._next_seq - 1
            done = self._wait_locked(lambda: self._min_outstanding_locked() > target, deadline)
        self._warner.emit_pending()  # whoever waits for delivery hears about what was not delivered
        return done

    def drain(self, timeout: float | None = None) -> bool:
        """Like :meth:`flush`, then also wait until the spool of this destination is empty.

        Meant for tools (``flowtel spool replay``), tests and benchmarks: while the destination
        is unreachable this waits for the whole ``timeout``. True if drained in time.
        """
        deadline = _deadline(timeout)
        if not self.flush(timeout):
            return False
        with self._lock:
            if self._spool is None:
                return True
            self._rescan_requested = True  # see batches other processes left since our last look
            if self._export_thread is None:
                self._start_export_worker_locked()
            self._work.notify_all()
            return self._wait_locked(self._drained_locked, deadline)

    def wait_for(self, predicate: Callable[[DeliveryStats], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(stats)`` holds, re-checking whenever a trace is settled.

        For tests, benchmarks and tools that need to wait for a state without polling.
        ``predicate`` runs under the pipeline's lock: keep it a cheap expression.
        """
        with self._lock:
            return self._wait_locked(lambda: predicate(self._stats_locked()), _deadline(timeout))

    def _drained_locked(self) -> bool:
        if self._queue or self._active or self._rescan_requested:
            return False
        if self._spool is None or not self._spool_usable_locked():
            return True
        return not self._spool.has_batches()

    def _wait_locked(self, predicate: Callable[[], bool], deadline: float | None) -> bool:
        while not predicate():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # Capped: a huge finite timeout (1e308) would overflow the platform's time_t.
            self._done.wait(None if remaining is None else min(remaining, _MAX_WAIT_S))
        return True

    def _min_outstanding_locked(self) -> float:
        """Lowest submission number not yet settled (memory traces only)."""
        lowest = float(self._queue[0].seq) if self._queue else float("inf")
        for batch in self._active.values():
            if batch.min_seq is not None and batch.open > 0:
                lowest = min(lowest, batch.min_seq)
        return lowest

    # == shutdown ==============================================================================
    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what can be delivered within ``timeout``, then stop the workers.

        What is left (queued, waiting for a retry, or stuck in a request) goes to the spool when
        there is one, else it is dropped with reason ``shutdown``; either way one warning says
        how many and where. Blocks up to ``timeout``, plus at most 5 s for workers to finish
        writing a batch and 5 s to write the leftovers to disk. True if everything was sent or
        dropped for a non-shutdown reason.
        """
        with self._lock:
            if self._closed:
                return True  # e.g. the multiprocessing exit hook ran, then atexit
        delivered = self.flush(timeout)
        with self._lock:
            self._stopping = True
            self._closed = True
            spooled_before, dropped_before = self._spooled, sum(self._dropped.values())
            self._work.notify_all()  # a batch waiting for a retry is spooled or dropped now
            self._spill.notify_all()
            # Finalising and disk writes are short: let workers finish them; network waits are not.
            self._wait_locked(lambda: all(b.exporting for b in self._active.values()), _deadline(_LOCAL_PHASE_GRACE_S))
            leftovers, abandoned = self._take_everything_locked()
        self._settle_leftovers(leftovers, abandoned)
        self._join_workers()
        self._shutdown_exporter()
        with self._lock:
            spooled = self._spooled - spooled_before
            dropped = sum(self._dropped.values()) - dropped_before
        if spooled or dropped:
            self._warn_unsent(spooled, dropped)
        return delivered and not dropped

    def _take_everything_locked(self) -> tuple[list[_Entry], list[_Batch]]:
        leftovers = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        abandoned = [b for b in self._active.values() if b.exporting]
        for batch in abandoned:
            batch.abandoned = True
            self._active.pop(id(batch), None)
        return leftovers, abandoned

    def _settle_leftovers(self, leftovers: list[_Entry], abandoned: list[_Batch]) -> None:
        deadline = time.monotonic() + _LEFTOVERS_BUDGET_S
        traces: list[Trace] = []
        items = [e.item for e in leftovers]
        unfinished = failed = 0
        for entry in leftovers:
            if time.monotonic() > deadline:
                unfinished += 1
                continue
            trace = self._finalize_one(entry)
            if trace is None:
                failed += 1
            else:
                traces.append(trace)
        with self._lock:
            self._dropped.update(+Counter({"finalize_error": failed, "shutdown": unfinished}))
        for batch in abandoned:
            items += [e.item for e in batch.entries]
            if batch.claim is not None:
                self._give_back_claim(batch.claim)  # still on disk: nothing to write
            else:
                traces += batch.pending
        self._spool_or_drop_at_shutdown(traces, deadline)
        for item in items:
            item.release()
        with self._lock:
            self._done.notify_all()

    def _spool_or_drop_at_shutdown(self, traces: list[Trace], deadline: float) -> None:
        spooled = 0
        size = self.options.batch_size
        for start in range(0, len(traces), size):
            if time.monotonic() > deadline:
                break  # the rest is dropped (reason "shutdown"): exit must not wait on the disk
            chunk = traces[start:start + size]
            status, result = self._write_spool(chunk)
            if status == "ok" and result is not None:
                spooled += result.written
                with self._lock:
                    self._spooled += result.written
                    self._dropped.update(+Counter({"spool_full": result.evicted}))
        dropped = len(traces) - spooled
        if dropped:
            with self._lock:
                self._dropped["shutdown"] += dropped

    def _warn_unsent(self, spooled: int, dropped: int) -> None:
        parts = []
        if spooled and self._spool is not None:
            parts.append(
                f"{spooled} spooled to {self._spool.directory} (the next process with this "
                "destination replays them; or run `flowtel spool replay`)"
            )
        if dropped:
            with self._lock:
                reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self._dropped.items()))
            parts.append(f"{dropped} dropped (all drops so far: {reasons})")
        _logger.warning(
            "flowtel: %d trace(s) for destination %r were not delivered before shutdown "
            "(bounded by FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS): %s.",
            spooled + dropped, self.name, "; ".join(parts),
        )

    def _join_workers(self) -> None:
        for thread in (self._export_thread, self._spill_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=0.1)  # a worker stuck in a request was abandoned; don't wait

    def _shutdown_exporter(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutdown runs at exit; never raise there
            report_internal_error(f"{self.name} exporter shutdown", exc)

    # == stats =================================================================================
    def stats(self) -> DeliveryStats:
        """A snapshot of the counters. Thread-safe; no I/O."""
        with self._lock:
            return self._stats_locked()

    def _stats_locked(self) -> DeliveryStats:
        pending = self._spool.pending()[1] if self._spool is not None else 0
        pending += sum(b.claim.count for b in self._active.values() if b.claim is not None)  # being replayed
        return DeliveryStats(
            destination=self.name,
            queued=len(self._queue),
            in_flight=sum(b.open for b in self._active.values()),
            sent=self._sent,
            retried=self._retried,
            spooled=self._spooled,
            dropped=dict(self._dropped),
            replayed=self._replayed,
            spool_pending=pending,
            queued_bytes=self._queued_bytes,
            state=self._state_locked(),
            spool_dir=str(self._spool.directory) if self._spool is not None else None,
            worker_restarts=self._worker_deaths,
        )

    def _state_locked(self) -> str:
        if self._stopping:
            return "stopped"
        if self._worker_deaths > _MAX_WORKER_RESTARTS:
            return "failed"  # its worker kept dying: nothing is delivered; see internal_errors
        if self._down:
            return "unreachable"
        return "retrying" if self._retrying else "ok"

    # == export worker =========================================================================
    def _start_export_worker_locked(self) -> None:
        self._export_thread = _start_thread(
            lambda: self._supervised(self._export_loop, "export"), f"flowtel-delivery-{self.name}"
        )

    def _supervised(self, loop: Callable[[], None], kind: str) -> None:
        """Run a worker loop; if it dies (a bug, a hostile spool file), report it, count it and
        start a new worker, so a destination never sits still while its stats say ``ok``."""
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - a worker's death must be noticed, never silent
            report_internal_error(f"{self.name} {kind} worker died", exc)
            with self._lock:
                self._worker_deaths += 1
                restart = not self._stopping and self._worker_deaths <= _MAX_WORKER_RESTARTS
                if kind == "export":
                    self._export_thread = None
                    if restart:
                        self._start_export_worker_locked()
                else:
                    self._spill_thread = None
                    if restart and self._should_spill_locked():
                        self._start_spill_worker_locked()
                self._done.notify_all()

    def _export_loop(self) -> None:
        with instrumentation_suppressed():
            self._forget_parent_connections()
            self._open_spool()
            while True:
                job = self._next_job()
                if job is None:
                    return
                try:
                    job()
                except Exception as exc:  # noqa: BLE001 - the worker must survive any bug
                    report_internal_error(f"{self.name} delivery worker", exc)

    def _forget_parent_connections(self) -> None:
        if self._created_pid == os.getpid():
            return
        self._created_pid = os.getpid()
        try:
            self.exporter.after_fork_in_child()
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not stop delivery
            report_internal_error(f"{self.name} exporter after fork", exc)

    def _next_job(self) -> Callable[[], None] | None:
        with self._lock:
            while True:
                job, wait = self._pick_job_locked(time.monotonic())
                if job is not None or wait == 0.0:
                    return job
                self._work.wait(wait)

    def _pick_job_locked(self, now: float) -> tuple[Callable[[], None] | None, float | None]:
        """The next thing to do, or how long to sleep (``None``: until woken; 0: stop)."""
        if self._stopping:
            return None, 0.0
        spool_ok = self._spool is not None and self._spool_usable_locked()
        if spool_ok and (self._rescan_requested or now - self._last_rescan >= self.options.rescan_interval):
            return self._rescan, None
        if spool_ok and self._down:
            if now < self._probe_at:
                return None, self._probe_at - now
            return self._replay, None
        replay_ready = spool_ok and self._spool is not None and self._spool.has_batches()
        if self._queue and not (replay_ready and self._replay_turn):
            self._replay_turn = True
            batch = self._take_batch_locked()
            return (lambda: self._deliver_memory(batch)), None
        if replay_ready:
            self._replay_turn = False
            return self._replay, None
        if spool_ok:
            return None, max(self._last_rescan + self.options.rescan_interval - now, 0.01)
        return None, None

    def _take_batch_locked(self, limit: int | None = None) -> _Batch:
        entries: list[_Entry] = []
        size = 0
        limit = self.options.batch_size if limit is None else min(limit, self.options.batch_size)
        relaxed = self._relaxed_locked()
        while self._queue and len(entries) < limit:
            entry = self._queue[0]
            if entries and size + entry.size > self.options.max_batch_bytes:
                break
            self._queue.popleft()
            entries.append(entry)
            size += entry.size
        self._queued_bytes -= size
        batch = _Batch(entries)
        batch.relaxed = relaxed
        self._active[id(batch)] = batch
        return batch

    # -- memory batches ----------------------------------------------------------------------
    def _deliver_memory(self, batch: _Batch) -> None:
        try:
            self._deliver_with_retries(batch, self._finalize_batch(batch))
        except Exception as exc:  # noqa: BLE001 - settle the batch whatever happened
            report_internal_error(f"{self.name} delivery", exc)
            self._settle(batch, dropped=Counter({"internal_error": batch.open}), final=True)
        finally:
            self._finish(batch)

    def _deliver_with_retries(self, batch: _Batch, traces: list[Trace]) -> None:
        attempt = 1
        while traces:
            outcome = self._attempt(batch, traces)
            if outcome is None:
                return  # shutdown took the batch over
            if not self._settle(batch, sent=outcome.sent, dropped=outcome.dropped):
                return
            traces = outcome.retry
            if not traces:
                return
            assert outcome.failure is not None
            if attempt >= self._retry.max_attempts or not self._backoff(attempt, outcome.failure, len(traces)):
                self._give_up(batch, traces, outcome.failure, attempts=attempt)
                return
            attempt += 1

    def _backoff(self, attempt: int, failure: ExportFailure, count: int) -> bool:
        """Wait before the next attempt; False when cut short by shutdown."""
        deadline = time.monotonic() + self._retry.delay(attempt, failure.retry_after)
        with self._lock:
            self._retrying = True
            try:
                while not self._stopping:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._retried += count
                        return True
                    self._work.wait(remaining)
                return False
            finally:
                self._retrying = False

    def _give_up(self, batch: _Batch, traces: list[Trace], failure: ExportFailure, *, attempts: int) -> None:
        """Retries are over (or cut short): spool the traces, or drop them with the reason."""
        if self._spool is None:
            reason = "shutdown" if self._stopping else failure.reason
            self._settle(batch, dropped=Counter({reason: len(traces)}), final=True, detail=_failure_detail(failure))
            return
        status, result = self._write_spool(traces, batch)
        if status != "ok" or result is None:
            reason = "spool_full" if status == "full" else "spool_write_error"
            self._settle(batch, dropped=Counter({reason: len(traces)}), final=True, detail=self._spool_detail(failure))
            return
        self._settle(batch, spooled=result.written, dropped=Counter({"spool_full": result.evicted}), final=True)
        with self._lock:
            self._enter_down_locked(failure, failures=attempts)
        if not self._stopping:  # at shutdown one summary says it all
            self._warner.note(spooled=result.written, detail=_failure_detail(failure))

    # -- spool replay ----------------------------------------------------------------------
    def _replay(self) -> None:
        # Registered before the claim, so drain() never sees "no batch on disk, none active"
        # while a batch is between the two.
        batch = _Batch([])
        with self._lock:
            batch.relaxed = self._relaxed_locked()
            self._active[id(batch)] = batch
        try:
            self._replay_claimed(batch)
        finally:
            self._finish(batch)

    def _replay_claimed(self, batch: _Batch) -> None:
        claimed = self._claim()
        if claimed is None:
            with self._lock:
                self._down = False  # nothing left to probe with: fresh traces will tell
            return
        with self._lock:
            batch.claim = claimed  # still counted as waiting on disk (spool_pending) while read
        traces, bad = self._read_claim(claimed, batch)
        if traces is None:
            with self._lock:
                batch.claim = None  # given back: counted through the spool's index again
            return
        with self._lock:
            batch.open = len(traces)
            self._dropped.update(+Counter({"spool_corrupt": bad}))
        if bad:
            self._warner.note(dropped=Counter({"spool_corrupt": bad}),
                              detail=f"undecodable spool content set aside as *.corrupt in {self._spool.directory if self._spool else '-'}")
        if not traces:
            self._settle_claim(claimed, traces, [], bad)
            return
        self._replay_batch(batch, claimed, traces, bad)

    def _replay_batch(self, batch: _Batch, claimed: ClaimedBatch, traces: list[Trace], bad: int) -> None:
        outcome = self._attempt(batch, traces)
        if outcome is None:
            return  # shutdown gave the claim back
        self._settle(batch, sent=outcome.sent, replayed=outcome.sent, dropped=outcome.dropped, final=True)
        with self._lock:
            if outcome.retry and outcome.failure is not None:
                self._enter_down_locked(outcome.failure, failures=self._probe_failures + 1)
            else:
                self._leave_down_locked()
        self._settle_claim(claimed, traces, outcome.retry, bad)

    def _settle_claim(self, claimed: ClaimedBatch, traces: list[Trace], retry: list[Trace], bad: int) -> None:
        assert self._spool is not None
        try:
            if not retry:
                self._spool.complete(claimed)
            elif len(retry) == len(traces) and not bad:
                self._spool.release(claimed)
            else:
                self._spool.replace(claimed, retry)
        except OSError as exc:
            self._spool_failed(exc)
            self._give_back_claim(claimed)

    def _claim(self) -> ClaimedBatch | None:
        assert self._spool is not None
        try:
            return self._spool.claim_oldest()
        except OSError as exc:
            self._spool_failed(exc)
            return None

    def _read_claim(self, claimed: ClaimedBatch, batch: _Batch) -> tuple[list[Trace] | None, int]:
        assert self._spool is not None
        try:
            return self._spool.read(claimed, between=_yielder(batch))
        except OSError as exc:
            self._spool_failed(exc)
            self._give_back_claim(claimed)
            return None, 0

    def _give_back_claim(self, claimed: ClaimedBatch) -> None:
        if self._spool is None:
            return
        with contextlib.suppress(OSError):  # if even this fails, the next scan recovers it
            self._spool.release(claimed)

    def _rescan(self) -> None:
        assert self._spool is not None
        try:
            self._spool.rescan()
        except OSError as exc:
            self._spool_failed(exc)
        with self._lock:
            self._last_rescan = time.monotonic()
            self._rescan_requested = False
            self._done.notify_all()

    def _enter_down_locked(self, failure: ExportFailure, *, failures: int) -> None:
        self._down = True
        self._probe_failures = max(failures, 1)
        self._probe_at = time.monotonic() + self._retry.delay(self._probe_failures, failure.retry_after)
        if self._queue:
            if self._spill_thread is None:
                self._start_spill_worker_locked()
            self._spill.notify()

    def _leave_down_locked(self) -> None:
        self._down = False
        self._probe_failures = 0

    # -- one attempt, with poisoned-trace isolation -------------------------------------------
    def _attempt(self, batch: _Batch, traces: list[Trace]) -> _Outcome | None:
        """Export once (bisecting if needed). ``None`` if shutdown abandoned the batch meanwhile."""
        with self._lock:
            if batch.abandoned:
                return None
            batch.pending = traces
            batch.exporting = True
            self._done.notify_all()  # shutdown waits until workers only wait on the network
        try:
            outcome = self._export_isolating(traces)
        finally:
            with self._lock:
                batch.exporting = False
                abandoned = batch.abandoned
                self._done.notify_all()
        return None if abandoned else outcome

    def _export_isolating(self, traces: list[Trace]) -> _Outcome:
        outcome = _Outcome()
        self._export_into(traces, outcome)
        if outcome.sent:
            self._unbisectable = None
        elif outcome.bisected and len(outcome.dropped) == 1:
            # Bisection found no acceptable trace: the destination refuses everything (bad
            # endpoint, permissions). Don't spend 2n requests on every later batch.
            self._unbisectable = next(iter(outcome.dropped))
        return outcome

    def _export_into(self, traces: list[Trace], outcome: _Outcome) -> None:
        result = self._export(traces)
        blanket = _blanket_rejection(traces, result)
        if blanket is not None and len(traces) > 1 and blanket.reason != self._unbisectable:
            # The whole batch was refused for a reason that may lie in one trace: split it, so
            # one poisoned trace cannot take the good ones with it.
            outcome.bisected = True
            middle = len(traces) // 2
            self._export_into(traces[:middle], outcome)
            self._export_into(traces[middle:], outcome)
            return
        for trace in traces:
            failure = result.failures.get(trace.info.trace_id)
            if failure is None:
                outcome.sent += 1
            elif failure.retryable:
                outcome.retry.append(trace)
                outcome.failure = _later(outcome.failure, failure)
            else:
                outcome.dropped[failure.reason] += 1

    def _export(self, traces: list[Trace]) -> ExportResult:
        try:
            return self.exporter.export(traces)
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not kill the worker
            if not self._stopping:  # after shutdown the exporter may fail on closed resources
                report_internal_error(f"{self.name} exporter", exc)
            return ExportResult.all_failed(
                traces, ExportFailure("exporter_error", retryable=False, message=repr(exc))
            )

    # == spill worker ==========================================================================
    def _start_spill_worker_locked(self) -> None:
        self._spill_thread = _start_thread(
            lambda: self._supervised(self._spill_loop, "spool"), f"flowtel-spool-{self.name}"
        )

    def _spill_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._should_spill_locked():
                    self._spill.wait()
                if self._stopping:
                    return
                batch = self._take_batch_locked(self._spill_count_locked())
            try:
                self._spill_batch(batch)
            except Exception as exc:  # noqa: BLE001 - the worker must survive any bug
                report_internal_error(f"{self.name} spool writer", exc)
                self._settle(batch, dropped=Counter({"internal_error": batch.open}), final=True)
            finally:
                self._finish(batch)

    def _should_spill_locked(self) -> bool:
        if not self._queue or self._spool is None or not self._spool_usable_locked():
            return False
        if self._down:
            return True
        options = self.options
        return len(self._queue) * 2 > options.max_queued or self._queued_bytes * 2 > options.max_queued_bytes

    def _spill_count_locked(self) -> int:
        """How many to move to disk now: down to a quarter of the budget (hysteresis, so the
        disk sees few large writes), or everything while the destination is unreachable."""
        if self._down or self._queued_bytes * 2 > self.options.max_queued_bytes:
            return self.options.batch_size
        return max(len(self._queue) - self.options.max_queued // 4, 1)

    def _spill_batch(self, batch: _Batch) -> None:
        traces = self._finalize_batch(batch)
        status, result = self._write_spool(traces, batch)
        if status == "ok" and result is not None:
            self._settle(batch, spooled=result.written, dropped=Counter({"spool_full": result.evicted}), final=True)
            why = "destination unreachable" if self._down else "in-memory queue past half its budget"
            self._warner.note(spooled=result.written, detail=why)
        elif status == "full":
            self._settle(batch, dropped=Counter({"spool_full": len(traces)}), final=True)
        else:
            self._put_back(batch)  # the disk failed: keep them in memory, the budget still applies

    def _put_back(self, batch: _Batch) -> None:
        with self._lock:
            if self._active.pop(id(batch), None) is None:
                return
            kept = [e for e in batch.entries if e.item is not None]
            self._queue.extendleft(reversed(kept))
            self._queued_bytes += sum(e.size for e in kept)
            batch.entries = []
            batch.open = 0
            self._work.notify()

    # == spool access ==========================================================================
    def _open_spool(self) -> None:
        if self._spool is None:
            return
        try:
            self._spool.open()
        except OSError as exc:
            self._spool_failed(exc)
            return
        with self._lock:
            self._spool_state = "ok"
            self._last_rescan = time.monotonic()
            self._work.notify_all()

    def _write_spool(self, traces: list[Trace], batch: _Batch | None = None) -> tuple[str, WriteResult | None]:
        """Write one batch. Status ``ok``, ``full`` (larger than the cap) or ``error``."""
        if not traces:
            return "ok", WriteResult(0, 0)
        with self._lock:
            usable = self._spool is not None and self._spool_usable_locked()
            reopen = self._spool_state != "ok"
        if not usable or self._spool is None:
            return "error", None
        try:
            if reopen:
                self._spool.open()
            result = self._spool.write(traces, between=_yielder(batch))
        except SpoolFullError:
            return "full", None
        except OSError as exc:
            self._spool_failed(exc)
            return "error", None
        with self._lock:
            self._spool_state = "ok"
        return "ok", result

    def _spool_usable_locked(self) -> bool:
        if self._spool_state == "ok":
            return True
        return self._spool_state == "broken" and time.monotonic() >= self._spool_retry_at

    def _spool_failed(self, exc: OSError) -> None:
        with self._lock:
            first = self._spool_state != "broken"
            self._spool_state = "broken"
            self._spool_retry_at = time.monotonic() + _SPOOL_RETRY_S
            self._spool_error = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        if first:
            _logger.warning(
                "flowtel cannot use the spool for destination %r (%s); traces it cannot deliver "
                "are dropped and counted until the disk works again. Spool: %s",
                self.name, self._spool_error, self._spool.directory if self._spool else "-",
            )

    def _spool_detail(self, failure: ExportFailure) -> str:
        return f"{_failure_detail(failure)}; spool unusable ({self._spool_error or 'see earlier warning'})"

    # == settling ==============================================================================
    def _finalize_batch(self, batch: _Batch) -> list[Trace]:
        traces = []
        for entry in batch.entries:
            trace = self._finalize_one(entry)
            if trace is None:
                entry.item.release()
                entry.item = None  # type: ignore[assignment]
                self._settle(batch, dropped=Counter({"finalize_error": 1}))
            else:
                traces.append(trace)
            if batch.relaxed:
                time.sleep(0)
        return traces

    def _relaxed_locked(self) -> bool:
        """Whether workers keep up (queue under a tenth of its budget). Then they hand the GIL
        to the application's threads between traces of CPU work (finalising, encoding,
        decoding), so a busy worker does not stretch the latency of traced calls. Once they fall
        behind, keeping up matters more: otherwise the queue would fill and drop."""
        options = self.options
        return len(self._queue) * 10 <= options.max_queued and self._queued_bytes * 10 <= options.max_queued_bytes

    def _finalize_one(self, entry: _Entry) -> Trace | None:
        try:
            return entry.item.trace()
        except Exception as exc:  # noqa: BLE001 - one bad trace must not stop delivery
            report_internal_error("trace finalisation", exc)
            return None

    def _settle(
        self,
        batch: _Batch,
        *,
        sent: int = 0,
        replayed: int = 0,
        spooled: int = 0,
        dropped: Counter[str] | None = None,
        final: bool = False,
        detail: str = "",
    ) -> bool:
        """Account for traces of ``batch``. False if shutdown had taken the batch over."""
        dropped = +(dropped or Counter())  # unary plus drops zero counts
        if dropped:
            # The warner hears of the drop before anyone waiting (flush) is woken: flush says
            # what was not delivered, so it must not run ahead of this note.
            with self._lock:
                if batch.abandoned:
                    return False
                stopping = self._stopping
            if not stopping:  # at shutdown one summary says it all
                self._warner.note(dropped=dropped, detail=detail)
        with self._lock:
            if batch.abandoned:
                return False
            self._sent += sent
            self._replayed += replayed
            self._spooled += spooled
            self._dropped.update(dropped)
            batch.open -= sent + spooled + sum(dropped.values())
            if final:
                batch.open = 0
            self._done.notify_all()
        return True

    def _finish(self, batch: _Batch) -> None:
        """The worker is done with ``batch``: release its traces and wake waiters."""
        with self._lock:
            if self._active.pop(id(batch), None) is None:
                return
            if batch.open > 0:  # a path forgot to settle: make it visible rather than hang flush
                self._dropped["internal_error"] += batch.open
                batch.open = 0
            self._done.notify_all()
        for entry in batch.entries:
            if entry.item is not None:
                entry.item.release()

    # == fork ==================================================================================
    def _after_fork_in_child(self) -> None:
        # The parent still owns and sends what it queued; the child starts empty and counts anew.
        # Locks are new too: a parent's thread may have held one at the moment of the fork.
        self._warner = _Warner(self.name)
        self._init_state()
        if self._spool is not None:
            self._spool.after_fork_in_child()


# -- helpers -------------------------------------------------------------------------------------
# Measured with benchmarks/bench_delivery.py (RSS per queued trace of 10 small spans ~36 KB):
# a span's Python objects (SDK span, attributes mapping, context, wrapper) cost ~3 KB besides
# its attribute strings.
_TRACE_OVERHEAD = 3_000
_SPAN_OVERHEAD = 3_000
_EVENT_OVERHEAD = 400
_DEFAULT_SIZE = 32_000


def estimate_size(item: Any) -> int:
    """Cheap estimate of the memory a finished trace holds, in bytes.

    Sums the lengths of string attribute values (inputs and outputs dominate) plus fixed
    costs per span and event for the Python objects around them. A few microseconds per span:
    it runs on the user's thread, so it reads lengths and never serialises anything.
    """
    try:
        known = item.size_estimate
        if known is not None:
            return known  # type: ignore[no-any-return]  # several destinations: estimated once
        record = item.record()
        spans = record.finished.values()
    except AttributeError:  # not a flowtel trace record
        return _DEFAULT_SIZE
    try:
        total: int = (
            _TRACE_OVERHEAD + _SPAN_OVERHEAD * len(spans)
            # (events' attribute values included: streamed chunks carry up to a whole value
            # each (1 MB), so a fixed per-event cost would let memory outgrow the byte budget)
            + attribute_bytes(spans, event_bytes=_EVENT_OVERHEAD, event_values=True)
            + record.preview_chars  # explicit previews (update_current_trace)
        )
    except Exception:  # noqa: BLE001 - an estimate must never cost the trace itself
        return _DEFAULT_SIZE
    item.size_estimate = total
    return total


def _yielder(batch: _Batch | None) -> Callable[[], None] | None:
    """What to call between traces of CPU work for ``batch``: yield the GIL, or nothing."""
    return _yield_gil if batch is not None and batch.relaxed else None


def _yield_gil() -> None:
    time.sleep(0)


def _blanket_rejection(traces: list[Trace], result: ExportResult) -> ExportFailure | None:
    """The failure if every trace failed non-retryably for one reason, else None."""
    if len(result.failures) < len(traces):
        return None
    first: ExportFailure | None = None
    for trace in traces:
        failure = result.failures.get(trace.info.trace_id)
        if failure is None or failure.retryable or (first is not None and failure.reason != first.reason):
            return None
        first = first or failure
    return first


def _later(current: ExportFailure | None, new: ExportFailure) -> ExportFailure:
    """Of two retryable failures, the one asking to wait longest (Retry-After wins)."""
    if current is None or (new.retry_after or 0.0) > (current.retry_after or 0.0):
        return new
    return current


def _failure_detail(failure: ExportFailure | None) -> str:
    if failure is None:
        return ""
    text = f"last failure: {failure.reason}"
    return f"{text} ({failure.message})" if failure.message else text


def _refusal_detail(reason: str, options: DeliveryOptions) -> str:
    if reason == "queue_full":
        return (
            f"the in-memory queue is full (FLOWTEL_MAX_QUEUED_TRACES={options.max_queued}, "
            f"FLOWTEL_MAX_QUEUED_BYTES={options.max_queued_bytes})"
        )
    return "tracing was shut down"


def _deadline(timeout: float | None) -> float | None:
    """None or infinite: no limit; nan, negative or not a number: now."""
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        return time.monotonic()
    if seconds == float("inf"):
        return None
    return time.monotonic() + (seconds if seconds > 0 else 0.0)


def _replace(options: DeliveryOptions, **changes: Any) -> DeliveryOptions:
    from dataclasses import replace

    return replace(options, **{k: v for k, v in changes.items() if v is not None})


def _make_spool(exporter: TraceExporter, options: SpoolOptions | None) -> Spool | None:
    key = getattr(exporter, "destination_key", None)
    if options is None or not key:
        return None
    return Spool(
        options.root, key, name=exporter.name, max_bytes=options.max_bytes,
        require_private_root=options.require_private_root,
    )


def _start_thread(target: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


# -- process lifecycle ---------------------------------------------------------------------------
_PIPELINES: weakref.WeakSet[DeliveryPipeline] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pipeline in list(_PIPELINES):
        pipeline._after_fork_in_child()


lifecycle.on_fork_child(_reset_after_fork)
