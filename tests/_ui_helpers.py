"""Helpers for the ``flowtel ui`` / ``flowtel traces push`` tests: fill a store the way users do
(the demo scripts, in subprocesses), run the command, and find its server processes."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"flowtel ui: (http://127\.0\.0\.1:\d+)")
T = TypeVar("T")

# Extra traces next to the demo's: a named experiment, a session, user tags and a feedback.
EXTRA_TRACES = """
import flowtel
from flowtel import SpanType

flowtel.set_experiment("ui-test-experiment")

@flowtel.trace(span_type=SpanType.AGENT)
def turn(question):
    flowtel.update_current_trace(tags={"team": "search"}, session_id="session-42", user="ada")
    return answer(question)

@flowtel.trace(span_type=SpanType.CHAT_MODEL)
def answer(question):
    return {"choices": [{"message": {"role": "assistant", "content": "42"}}]}

ids = []
for q in ("first", "second"):
    turn(q)
    ids.append(flowtel.get_last_active_trace_id())
flowtel.flush()
flowtel.log_feedback(trace_id=ids[0], name="helpful", value=True, rationale="right answer")
print(" ".join(ids))
"""


def child_env(store: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPENAI_", "FLOWTEL_"))}
    env.update({"PYTHONPATH": str(ROOT), "FLOWTEL_STORE_PATH": os.fspath(store),
                "MLFLOW_DISABLE_TELEMETRY": "true"})
    env.update(extra)
    return env


def run_python(code_or_script: str, store: str | os.PathLike[str], *, script: bool = False) -> str:
    args = [sys.executable, code_or_script] if script else [sys.executable, "-c", code_or_script]
    done = subprocess.run(args, cwd=ROOT, env=child_env(store), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def fill_store(store: str | os.PathLike[str]) -> list[str]:
    """The `make demo` traces plus :data:`EXTRA_TRACES`; returns the extra traces' ids."""
    run_python(str(ROOT / "examples" / "demo.py"), store, script=True)
    run_python(str(ROOT / "examples" / "openai_agent.py"), store, script=True)
    return run_python(EXTRA_TRACES, store).split()


class FlowtelCommand:
    """``python -m flowtel ...`` as a subprocess with its output read line by line."""

    def __init__(self, args: list[str], store: str | os.PathLike[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowtel", "--store", os.fspath(store), *args],
            cwd=ROOT, env=child_env(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 300.0) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                match = regex.search(line)
                if match:
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {regex.pattern!r} in output:\n{self.output()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait()
                for old in self.lines:
                    if regex.search(old):
                        return regex.search(old)  # type: ignore[return-value]
                raise AssertionError(f"exited {self.proc.returncode} without {regex.pattern!r}:\n{self.output()}")
            self.lines.append(line)

    def output(self) -> str:
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines)

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.output()
        return code


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy (bounded; a condition, not a delay)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.2)


def live_processes_in_group(pgid: int) -> list[str]:
    """Non-zombie processes whose process group is ``pgid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            found.append(f"{entry.name} {stat[:120]}")
    return found


def chromium() -> str:
    """Path of a headless-capable Chromium, or skip with how to get it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium: install it with `apt-get install -y chromium` (make browser-deps does it)")


def dump_dom(url: str, profile: Path, budget_ms: int = 30000) -> str:
    """The DOM of ``url`` after it rendered, from headless Chromium."""
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
        "--dump-dom", url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def iter_ids(traces: Iterator[object]) -> list[str]:
    return [t.info.trace_id for t in traces]  # type: ignore[attr-defined]
