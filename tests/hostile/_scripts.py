"""Run an attack script in a fresh interpreter, with a watchdog: a hang fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_S = 120  # generous on a loaded machine; a hang is still a failure, not a stuck suite


def run_script(source: str, *, env: dict[str, str] | None = None, cwd: str | None = None,
               timeout: float = WATCHDOG_S) -> subprocess.CompletedProcess[str]:
    """Run ``source`` with this checkout on the path; raise AssertionError on a hang."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWTEL_", "MLFLOW_", "OTEL_"))}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    # A hang dumps every thread's stack before the watchdog kills the script: the failure says where.
    preamble = f"import faulthandler; faulthandler.dump_traceback_later({max(timeout - 15, 5)}, exit=True)\n"
    try:
        return subprocess.run(
            [sys.executable, "-c", preamble + textwrap.dedent(source)], env=full_env, cwd=cwd,
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"script hung (killed after {timeout} s); output so far: {exc.stdout!r} {exc.stderr!r}") from None


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {proc.stderr}"
    return lines[-1]
