"""The MLflow versions the interop tests run against, each with an interpreter that has it.

flowtel must stay a drop-in for more than one MLflow release, so the server fixtures and the
client-side reading checks run once per version in :func:`versions` (``3.17.2`` and ``3.18.0``
unless ``FLOWTEL_TEST_MLFLOW_VERSIONS`` names others, comma-separated). The version installed in
the test interpreter (the ``test`` extra pins it) uses that interpreter; any other gets a virtual
environment created on first use under ``FLOWTEL_TEST_CACHE_DIR`` (default
``~/.cache/flowtel-tests``) as ``mlflow-<version>/``, reused by later runs. Creation is guarded by
a file lock (parallel sessions wait for one another) and marked complete only once pip succeeded,
so an interrupted install is redone, never used half-made.

``make test`` creates them before pytest starts (``python -m tests._servers.mlflow_versions``);
a test that needs one that is missing creates it itself (minutes, on a slow package index).

Client-side checks run in such an interpreter through :func:`run_mlflow_client`: a script reads
JSON on stdin and prints JSON on its last line of stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

__all__ = ["SUPPORTED_VERSIONS", "in_process_version", "python_for", "run_mlflow_client", "versions"]

SUPPORTED_VERSIONS: Final = ("3.17.2", "3.18.0")
_COMPLETE_MARKER: Final = ".flowtel-complete"
_INSTALL_TIMEOUT_S: Final = 1800.0
# Variables that would point the client subprocess at some other server or change what it records.
_STRIPPED_ENV_PREFIXES: Final = ("MLFLOW_", "OTEL_", "_MLFLOW_", "FLOWTEL_")


def versions() -> tuple[str, ...]:
    """The MLflow versions to test against (``FLOWTEL_TEST_MLFLOW_VERSIONS`` or both supported)."""
    configured = os.environ.get("FLOWTEL_TEST_MLFLOW_VERSIONS", "")
    chosen = tuple(v.strip() for v in configured.split(",") if v.strip())
    return chosen or SUPPORTED_VERSIONS


def in_process_version() -> str | None:
    """The ``mlflow`` version importable in this interpreter, if any."""
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None


def python_for(version: str) -> str:
    """An interpreter with ``mlflow==version``: this one, or a cached venv (created on demand)."""
    if in_process_version() == version:
        return sys.executable
    return str(_ensure_venv(version) / "bin" / "python")


def run_mlflow_client(version: str, script: str, payload: Any = None, *, timeout: float = 300.0) -> Any:
    """Run ``script`` with the real ``mlflow`` ``version``; it gets ``payload`` as JSON on stdin
    and must print its result as JSON on the last line of stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PYTHONUNBUFFERED": "1"})
    env.pop("PYTHONPATH", None)  # the client under test is mlflow's, never this checkout's
    proc = subprocess.run(
        [python_for(version), "-c", script],
        input=json.dumps(payload).encode(),
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"mlflow {version} client script failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-4000:]}"
        )
    lines = proc.stdout.decode().strip().splitlines()
    if not lines:
        raise AssertionError(f"mlflow {version} client script printed nothing:\n{proc.stderr.decode()[-4000:]}")
    return json.loads(lines[-1])


def _cache_dir() -> Path:
    configured = os.environ.get("FLOWTEL_TEST_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "flowtel-tests"


def _ensure_venv(version: str) -> Path:
    root = _cache_dir() / f"mlflow-{version}"
    if (root / _COMPLETE_MARKER).exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(root.parent / f"mlflow-{version}.lock"):
        if (root / _COMPLETE_MARKER).exists():  # another session made it while we waited
            return root
        shutil.rmtree(root, ignore_errors=True)  # an interrupted earlier attempt
        _run([sys.executable, "-m", "venv", str(root)])
        _run([str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
              f"mlflow=={version}"])
        (root / _COMPLETE_MARKER).write_text(version)
    return root


def _run(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, timeout=_INSTALL_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-4000:]}"
        )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    """``python -m tests._servers.mlflow_versions``: make the interpreters of every version now
    (``make test`` runs it before pytest, so no test waits on an install)."""
    for version in versions():
        print(f"mlflow {version}: {python_for(version)}")


if __name__ == "__main__":
    main()
