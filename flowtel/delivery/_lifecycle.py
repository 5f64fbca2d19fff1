"""Process lifecycle in one place: interpreter exit, ``fork``, and multiprocessing children.

Every module that owns per-process state registers with this module instead of with ``atexit``,
``os.register_at_fork`` or ``multiprocessing.util`` directly, so the order is known and one
place says which hook runs when:

- :func:`on_exit` hooks run once per process, in registration order, at interpreter exit
  (``atexit``) and, in multiprocessing children that leave through ``os._exit`` and so skip
  ``atexit``, from a multiprocessing finaliser that those children run first.
- :func:`on_fork_child` hooks run in a forked child, in registration order, before any user
  code: they must only drop state (locks, queues, threads) inherited from the parent.
- A :class:`ForkGate` marks sections a fork must not split (calls into a C library whose own
  mutexes a child would inherit in the locked state, such as SQLite): ``fork()`` waits, bounded,
  until no other thread is inside one, and no section starts until the fork is done.

Hooks must not raise; a hook that does is reported as an internal error and the others still run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator

from flowtel import _errors
from flowtel._errors import report_internal_error

__all__ = ["ForkGate", "install_multiprocessing_drain", "on_exit", "on_fork_child"]

_exit_hooks: list[Callable[[], None]] = []
_fork_hooks: list[Callable[[], None]] = []
_exited_pid = 0


def on_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` once when this process exits (also a multiprocessing child)."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)


def on_fork_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in a forked child right after ``fork()``."""
    if hook not in _fork_hooks:
        _fork_hooks.append(hook)


# -- fork gates ----------------------------------------------------------------------------------
_FORK_GATE_WAIT_S = 5.0  # a section stuck longer than this (a hung disk) does not block fork forever


class ForkGate:
    """Sections that ``fork()`` must not split. Thread-safe; sections of one thread may nest.

    Entering blocks only while a fork is being prepared; a fork waits up to 5 s for sections
    of other threads to end (after that it goes ahead: a child then must not touch that state).
    """

    def __init__(self) -> None:
        self._reset()
        _GATES.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._inside = 0
        self._mine = threading.local()

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        with self._cond:
            self._inside += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._inside -= 1
                if not self._inside:
                    self._cond.notify_all()

    def _before_fork(self) -> None:
        self._cond.acquire()  # held across fork(): no section starts meanwhile
        own = getattr(self._mine, "depth", 0)  # the forking thread's own sections (fork inside one)
        deadline = time.monotonic() + _FORK_GATE_WAIT_S
        while self._inside > own:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _after_fork_in_parent(self) -> None:
        self._cond.release()

    def _after_fork_in_child(self) -> None:
        self._reset()  # the parent's threads and their sections do not exist here


_GATES: weakref.WeakSet[ForkGate] = weakref.WeakSet()


def _gates_before_fork() -> None:
    for gate in list(_GATES):
        try:
            gate._before_fork()
        except Exception as exc:  # noqa: BLE001 - never break the user's fork
            report_internal_error("before-fork gate", exc)


def _gates_after_fork_in_parent() -> None:
    for gate in list(_GATES):
        with contextlib.suppress(RuntimeError):  # not acquired if _before_fork failed
            gate._after_fork_in_parent()


def _run_exit_hooks() -> None:
    global _exited_pid
    if _exited_pid == os.getpid():
        return  # the multiprocessing finaliser ran, then atexit
    _exited_pid = os.getpid()
    _run(_exit_hooks, "exit hook")


def _after_fork_in_child() -> None:
    _errors.after_fork_in_child()
    for gate in list(_GATES):
        gate._after_fork_in_child()
    _run(_fork_hooks, "after-fork hook")
    if "multiprocessing.util" in sys.modules:
        # Runs before multiprocessing's bootstrap clears its finalizers; the after-fork
        # callback it then runs registers the exit drain in the child.
        sys.modules["multiprocessing.util"].register_after_fork(_MP_HOOK, _register_exit_finalizer)


def _run(hooks: list[Callable[[], None]], what: str) -> None:
    for hook in list(hooks):
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - never raise at exit or in a fresh child
            report_internal_error(what, exc)


# -- multiprocessing -----------------------------------------------------------------------------
class _MultiprocessingHook:
    """Owner object for multiprocessing's after-fork registry (it keys on a live object)."""


_MP_HOOK = _MultiprocessingHook()
_mp_finalizer_pid = 0


def install_multiprocessing_drain() -> None:
    """Make multiprocessing children run the exit hooks: they leave through ``os._exit``, which
    skips ``atexit``, but multiprocessing runs its own finalizers first. Called when delivery
    starts (a child can only exist once multiprocessing is imported)."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing
    import multiprocessing.util as mp_util

    mp_util.register_after_fork(_MP_HOOK, _register_exit_finalizer)
    if multiprocessing.parent_process() is not None:
        _register_exit_finalizer(_MP_HOOK)  # spawned child: pipelines are built after bootstrap


def _register_exit_finalizer(_owner: object) -> None:
    global _mp_finalizer_pid
    if _mp_finalizer_pid == os.getpid():
        return
    import multiprocessing.util as mp_util

    _mp_finalizer_pid = os.getpid()
    mp_util.Finalize(None, _run_exit_hooks, exitpriority=100)
    _drain_on_sigterm()


def _drain_on_sigterm() -> None:
    """``with Pool() as pool`` ends in ``Pool.terminate()``: SIGTERM to every worker, which
    would die with its traces still queued. A multiprocessing child that left SIGTERM at its
    default drains first (bounded by FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS), then dies of the signal
    as before. A handler the user installed is never replaced."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _terminate_after_drain)
    except (ValueError, OSError) as exc:  # no SIGTERM on this platform / embedded interpreter
        report_internal_error("SIGTERM drain", exc)


def _terminate_after_drain(signum: int, _frame: object) -> None:
    import signal

    signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM kills at once
    if _exited_pid == os.getpid():
        # The exit drain already runs (this signal interrupted it, e.g. a pool worker leaving
        # through multiprocessing's finalisers): let it finish; the process is exiting anyway.
        return
    _run_exit_hooks()
    os.kill(os.getpid(), signum)


atexit.register(_run_exit_hooks)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_gates_before_fork, after_in_parent=_gates_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
