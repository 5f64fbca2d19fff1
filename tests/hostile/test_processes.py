"""Silent loss or corruption across processes: forks inside traces, multiprocessing pools."""

from __future__ import annotations

import json
import sys

import pytest

from tests.hostile._scripts import last_line, run_script

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(sys.platform == "win32", reason="fork"),
]


def _env(tmp_path) -> dict[str, str]:
    return {"FLOWTEL_STORE_PATH": str(tmp_path / "t.db"), "FLOWTEL_SPOOL_DIR": str(tmp_path / "spool")}


def test_fork_inside_a_traced_function_gives_the_child_its_own_linked_trace(tmp_path) -> None:
    proc = run_script("""
        import json, os, flowtel
        @flowtel.trace
        def step(x):
            return x
        @flowtel.trace
        def parent_work():
            step("before")
            with flowtel.start_span("around_fork"):
                pid = os.fork()
                if pid == 0:
                    step("in child")
                    with flowtel.start_span("child_block"):
                        step("nested in child")
                    os._exit(0 if flowtel.flush(30) else 3)
                os.waitpid(pid, 0)
            step("after")
        parent_work()
        assert flowtel.flush(30)
        out = []
        for t in flowtel.search_traces(max_results=10, return_type="list"):
            out.append({"id": t.info.trace_id, "spans": sorted(s.name for s in t.data.spans),
                        "links": [l for s in t.data.spans for l in (s.links or [])]})
        print(json.dumps(out))
    """, env=_env(tmp_path))
    traces = json.loads(last_line(proc))
    parent = next(t for t in traces if "parent_work" in t["spans"])
    # The parent's trace is whole: the child's fragments never replaced it.
    assert parent["spans"] == ["around_fork", "parent_work", "step", "step"]
    children = [t for t in traces if t is not parent]
    assert sorted(s for t in children for s in t["spans"]) == ["child_block", "step", "step"]
    for child in children:
        assert child["id"] != parent["id"]
        assert [link["trace_id"] for link in child["links"]] == [parent["id"]]


def test_fork_after_a_trace_ended_in_the_parent_keeps_both(tmp_path) -> None:
    # The child's spans under a span of the parent that ends later in the parent only.
    proc = run_script("""
        import os, flowtel
        @flowtel.trace
        def step(x):
            return x
        with flowtel.start_span("root"):
            pid = os.fork()
            if pid == 0:
                step(1)
                os._exit(0 if flowtel.flush(30) else 3)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert flowtel.flush(30)
        names = sorted(sorted(s.name for s in t.data.spans) for t in flowtel.search_traces(return_type="list"))
        print(names)
    """, env=_env(tmp_path))
    assert last_line(proc) == "[['root'], ['step']]"


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_context_manager_delivers_every_workers_traces(tmp_path, start_method) -> None:
    # ``with Pool() as pool`` terminates the workers (SIGTERM) on exit; their traces must not die.
    script = tmp_path / "pool_script.py"
    script.write_text(f"""
import multiprocessing, flowtel
@flowtel.trace
def square(x):
    return x * x
if __name__ == "__main__":
    multiprocessing.set_start_method({start_method!r})
    with multiprocessing.Pool(3) as pool:
        assert sum(pool.map(square, range(40))) == 20540
    print(len(flowtel.search_traces(max_results=100, return_type="list")))
""")
    proc = run_script(f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')", env=_env(tmp_path))
    assert last_line(proc) == "40", proc.stderr


def test_user_sigterm_handler_in_a_pool_worker_is_kept(tmp_path) -> None:
    proc = run_script("""
        import multiprocessing, signal
        import flowtel
        def mine(signum, frame):
            pass
        def init():
            signal.signal(signal.SIGTERM, mine)
        @flowtel.trace
        def handler_name(_):
            return signal.getsignal(signal.SIGTERM).__name__
        if __name__ == "__main__":
            with multiprocessing.get_context("fork").Pool(1, initializer=init) as pool:
                print(set(pool.map(handler_name, range(3))))
    """, env=_env(tmp_path))
    assert last_line(proc) == "{'mine'}"


def test_thread_outliving_its_trace_never_overwrites_it(tmp_path) -> None:
    # A span started under a trace that already completed must not become a second, headless
    # trace with the same id (the store would replace the whole trace by it): dropped, counted.
    proc = run_script("""
        import threading, flowtel
        from opentelemetry import context
        holder = {}
        @flowtel.trace
        def step(x):
            return x
        @flowtel.trace
        def request():
            holder["ctx"] = context.get_current()
            step(1)
        request()
        def late():
            token = context.attach(holder["ctx"])
            try:
                step(2)
            finally:
                context.detach(token)
        t = threading.Thread(target=late)
        t.start(); t.join()
        assert flowtel.flush(30)
        traces = flowtel.search_traces(return_type="list")
        print(len(traces), sorted(s.name for s in traces[0].data.spans), flowtel.get_delivery_stats()["late_spans"])
    """, env=_env(tmp_path))
    assert last_line(proc) == "1 ['request', 'step'] 1"
