"""Hangs must never happen: signal handlers running traced code, forks at awkward moments.

Each attack runs in its own interpreter under a watchdog (``_scripts.run_script``), so a
deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import sys

import pytest

from tests.hostile._scripts import last_line, run_script

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and fork"),
]


@pytest.mark.parametrize("where", ["inside_traces", "between_traces"])
def test_signal_handler_running_traced_code_never_deadlocks(tmp_path, where) -> None:
    # A 0.5 ms SIGALRM timer interrupts the main thread anywhere: inside span start/end, trace
    # hand-off, the pipeline's submit, the runtime's first build. The handler calls traced code.
    proc = run_script(f"""
        import signal, flowtel
        @flowtel.trace
        def in_handler(x):
            return x + 1
        handled = 0
        def handler(signum, frame):
            global handled
            in_handler(1)
            handled += 1
        @flowtel.trace
        def outer(i):
            return in_handler(i) + in_handler(i)
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        for i in range(2000):
            if {where == "inside_traces"!r}:
                outer(i)
            else:
                in_handler(i)
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        assert flowtel.flush(60)
        stats = flowtel.get_delivery_stats()["destinations"][0]
        assert not stats["dropped"], stats
        print("ok", handled, stats["sent"])
    """, env={"FLOWTEL_STORE_PATH": str(tmp_path / "t.db"), "FLOWTEL_SPOOL_DIR": str(tmp_path / "spool")})
    assert last_line(proc).startswith("ok"), proc.stderr
    assert "internal error" not in proc.stderr


def test_fork_while_another_thread_builds_the_runtime(tmp_path) -> None:
    # The builder thread is held inside the build while the main thread forks: the child's first
    # traced call must build its own runtime, not wait for a lock copied in the locked state.
    proc = run_script("""
        import os, threading, flowtel
        from flowtel.tracing import _runtime
        inside, release = threading.Event(), threading.Event()
        real_build = _runtime._build_runtime
        def slow_build():
            if threading.current_thread().name == "builder":
                inside.set()
                release.wait()
            return real_build()
        _runtime._build_runtime = slow_build
        @flowtel.trace
        def traced(x):
            return x * 2
        builder = threading.Thread(target=traced, args=(1,), name="builder")
        builder.start()
        inside.wait()
        pid = os.fork()
        if pid == 0:
            ok = traced(21) == 42 and flowtel.flush(30)
            os._exit(0 if ok else 3)
        release.set()
        builder.join()
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """, env={"FLOWTEL_STORE_PATH": str(tmp_path / "t.db"), "FLOWTEL_SPOOL_DIR": str(tmp_path / "spool")})
    assert last_line(proc) == "child 0", proc.stderr


@pytest.mark.xfail(
    strict=False,
    reason="known gap (issue #13, left open): about one full run in seven, one of the 30 forked "
    "children does not deliver within its 60 s flush (in_flight stays 1); the program never hangs",
)
def test_forks_while_delivery_is_inside_sqlite_never_deadlock(tmp_path) -> None:
    # The parent delivers continuously into the local store while forking 30 children; each
    # child traces and flushes into the same store. A child that inherited SQLite's mutex in
    # the locked state would hang here.
    proc = run_script("""
        import os, sys, threading, flowtel
        @flowtel.trace
        def work(i):
            return {"i": i, "payload": "x" * 2000}
        stop = threading.Event()
        def load():
            while not stop.is_set():
                for i in range(20):
                    work(i)
                flowtel.flush(30)
        loader = threading.Thread(target=load)
        loader.start()
        children = []
        for n in range(30):
            work(n)
            pid = os.fork()
            if pid == 0:
                work(1000 + n)
                flushed = flowtel.flush(60)
                stats = flowtel.get_delivery_stats()
                ok = flushed and stats["destinations"][0]["sent"] >= 1
                if not ok:
                    print("child failed:", flushed, stats, file=sys.stderr, flush=True)
                os._exit(0 if ok else 3)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        stop.set()
        loader.join()
        print("codes", sorted(set(codes)))
    """, env={"FLOWTEL_STORE_PATH": str(tmp_path / "t.db"), "FLOWTEL_SPOOL_DIR": str(tmp_path / "spool")})
    assert last_line(proc) == "codes [0]", proc.stderr
