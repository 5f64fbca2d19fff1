"""A real Arize Phoenix server for interop tests, from its own cached virtual environment.

Phoenix is large (about 860 MB installed, several minutes to install) and pins its own
OpenTelemetry and SQLAlchemy versions, so it never goes into the test venv: it lives in
``~/.cache/flowtel-tests/phoenix-venv`` (``FLOWTEL_TEST_PHOENIX_VENV`` overrides), created on
first use (or by ``make phoenix-venv``, which ``make test`` runs) and reused afterwards. Each
server runs on 127.0.0.1 with its working directory (SQLite database) in a temp folder, and is
asserted on through Phoenix's own REST (``/v1/...``) and GraphQL (``/graphql``) APIs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

__all__ = ["PHOENIX_REQUIREMENT", "PhoenixServer", "PhoenixUnavailableError", "ensure_phoenix_venv"]

#: The version the tests were written against (ingests the OTel GenAI semconv since 15.10).
PHOENIX_REQUIREMENT = "arize-phoenix==20.26.1"
_INSTALL_TIMEOUT_S = 1800.0
_POLL_INTERVAL_S = 0.25


class PhoenixUnavailableError(RuntimeError):
    """Phoenix could not be installed or started here (the message says why)."""


def phoenix_venv() -> Path:
    default = Path.home() / ".cache" / "flowtel-tests" / "phoenix-venv"
    return Path(os.environ.get("FLOWTEL_TEST_PHOENIX_VENV", default))


def ensure_phoenix_venv() -> Path:
    """The ``phoenix`` executable of the cached venv, installing it first if needed."""
    venv = phoenix_venv()
    executable = venv / "bin" / "phoenix"
    marker = venv / f".installed-{PHOENIX_REQUIREMENT}"
    if executable.exists() and marker.exists():
        return executable
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "-q", PHOENIX_REQUIREMENT]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise PhoenixUnavailableError(f"{' '.join(step)} took longer than {_INSTALL_TIMEOUT_S}s") from exc
        if done.returncode != 0:
            raise PhoenixUnavailableError(f"{' '.join(step)} failed: {done.stderr[-2000:]}")
    marker.touch()
    return executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PhoenixServer:
    """One ``phoenix serve`` process. ``otlp_endpoint`` takes OTLP/HTTP protobuf."""

    def __init__(self, working_dir: Path) -> None:
        self.working_dir = working_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def otlp_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def start(self, timeout: float = 180.0) -> PhoenixServer:
        executable = ensure_phoenix_venv()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_", "FLOWTEL_"))}
        env.update(PHOENIX_WORKING_DIR=str(self.working_dir), PHOENIX_HOST="127.0.0.1", PHOENIX_PORT=str(self.port),
                   PHOENIX_GRPC_PORT=str(_free_port()), PHOENIX_TELEMETRY_ENABLED="false")
        log = (self.working_dir / "phoenix.log").open("wb")
        self._proc = subprocess.Popen([str(executable), "serve"], env=env, cwd=self.working_dir,
                                      stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PhoenixUnavailableError(f"phoenix serve exited: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            self._proc_wait(_POLL_INTERVAL_S)  # readiness polling of a subprocess, not test synchronisation
        self.stop()
        raise PhoenixUnavailableError(f"phoenix serve not ready after {timeout}s: {self.log_tail()}")

    def _proc_wait(self, seconds: float) -> None:
        assert self._proc is not None
        try:
            self._proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)

    def log_tail(self) -> str:
        path = self.working_dir / "phoenix.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- Phoenix's own APIs ---------------------------------------------------------------------
    def rest(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}/v1/{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def graphql(self, query: str, **variables: Any) -> Any:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(body["errors"])
        return body["data"]

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of ``project`` as Phoenix stored it (REST ``/v1/projects/{p}/spans``)."""
        return list(self.rest(f"projects/{project}/spans", limit=1000)["data"])

    def wait_for_spans(self, project: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Phoenix ingests asynchronously: poll its API until ``count`` spans are stored."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.spans(project)
            except requests.HTTPError:
                found = []  # the project appears with its first span
            if len(found) >= count or time.monotonic() >= deadline:
                assert len(found) >= count, f"{len(found)} of {count} spans in Phoenix: {self.log_tail()[-500:]}"
                return found
            self._proc_wait(_POLL_INTERVAL_S)
