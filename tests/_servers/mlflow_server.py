"""A real ``mlflow server`` subprocess for tests, with crash/restart support.

:class:`MlflowServer` runs ``<interpreter> -m mlflow server`` (this interpreter unless another
one, e.g. a venv with a different MLflow version, is given) on ``127.0.0.1`` with a
single uvicorn worker and either a SQLite backend (the default; supports the OTLP endpoint
``POST /v1/traces``) or the legacy FileStore backend (which answers ``/v1/traces`` with 501)::

    with MlflowServer("sqlite") as server:
        client = server.client()           # mlflow.MlflowClient(tracking_uri=server.url)
        exporter = OTLPSpanExporter(endpoint=server.otlp_traces_url,
                                    headers={"x-mlflow-experiment-id": "0"})

Fault injection: :meth:`MlflowServer.kill` SIGKILLs the whole process group (the CLI parent
and its uvicorn child), :meth:`MlflowServer.restart` brings the server back on the **same port
and the same backing store**, so data written before the crash stays readable.

Facts about the real server (mlflow 3.x) that this module relies on:

* ``mlflow server`` is a thin parent that spawns ``python -m uvicorn mlflow.server.fastapi_app:app``;
  the OTLP endpoint exists only on that FastAPI app. With ``--gunicorn-opts``/``--waitress-opts``
  the plain Flask app is served and ``/v1/traces`` is a 404, so this module always uses uvicorn.
* The parent forwards SIGTERM to uvicorn and exits after it; SIGKILL of the parent alone would
  orphan uvicorn, hence the process group.
* By default the server also starts a huey job runner with several consumer processes; tests do
  not need it, so ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` is set (faster, fewer processes).
* The FileStore backend refuses to start unless ``MLFLOW_ALLOW_FILE_STORE=true``.
* ``--host`` already defaults to ``127.0.0.1``; it is passed explicitly anyway.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["Backend", "HttpResponse", "MlflowServer", "MlflowServerError"]

Backend = Literal["sqlite", "file"]

_HOST: Final = "127.0.0.1"
_LOG_TAIL_LINES: Final = 60
_POLL_INTERVAL: Final = 0.1
_PORT_RACE_RETRIES: Final = 3
_ADDRESS_IN_USE_MARKERS: Final = ("address already in use", f"[errno {errno.EADDRINUSE}]")
# Inherited variables that could change how the server behaves; the server gets a clean slate.
_STRIPPED_ENV_PREFIXES: Final = ("MLFLOW_", "OTEL_", "_MLFLOW_")


class MlflowServerError(RuntimeError):
    """The MLflow server failed to start, died, or did not stop in time."""


@dataclass(frozen=True)
class HttpResponse:
    """A raw HTTP response from :meth:`MlflowServer.request`."""

    status: int
    headers: Mapping[str, str]
    """Response headers with lower-cased names."""
    body: bytes

    def json(self) -> Any:
        """Decode the body as JSON."""
        return json.loads(self.body)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def _port_accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _in_process_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class MlflowServer:
    """A real ``mlflow server`` subprocess bound to ``127.0.0.1`` (see module docstring).

    The instance owns a root directory holding the backing store (``mlflow.db`` or
    ``mlruns/``), the proxied artifact store (``artifacts/``) and the server log
    (``server.log``). If no ``root`` is given a temporary directory is created and removed by
    :meth:`close` (and by the context manager); :meth:`stop` never deletes data.
    """

    def __init__(
        self,
        backend: Backend = "sqlite",
        root: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        enable_job_execution: bool = False,
        python: str | None = None,
        version: str | None = None,
    ) -> None:
        """Configure (but do not start) a server.

        Args:
            backend: ``"sqlite"`` (``sqlite:///<root>/mlflow.db``) or ``"file"``
                (FileStore at ``<root>/mlruns``).
            root: Directory for store, artifacts and log; a temporary one if ``None``.
            port: Fixed port; by default a free port is picked on first start and kept for
                every restart.
            extra_args: Additional ``mlflow server`` CLI arguments.
            env: Extra environment variables for the server process (applied last).
            enable_job_execution: Keep MLflow's huey job runner (off by default: tests of
                tracing do not need it and it spawns ~7 extra processes).
            python: Interpreter that runs ``-m mlflow server`` (default: this one).
            version: The MLflow version of that interpreter, for test ids and version checks
                (default: the version importable here).
        """
        if backend not in ("sqlite", "file"):
            raise ValueError(f"backend must be 'sqlite' or 'file', got {backend!r}")
        self._backend: Backend = backend
        self._owns_root = root is None
        self._root = Path(tempfile.mkdtemp(prefix=f"mlflow-{backend}-") if root is None else root).resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self._port: int | None = port
        self._extra_args = tuple(extra_args)
        self._extra_env = dict(env or {})
        self._enable_job_execution = enable_job_execution
        self._python = python or sys.executable
        self.version = version or _in_process_version()
        """The MLflow version the server runs (``None`` if unknown)."""
        # One-element cell shared with the finalizer, which must not keep ``self`` alive.
        self._proc_cell: list[subprocess.Popen[bytes] | None] = [None]
        self._log_file: IO[bytes] | None = None
        self._starts = 0
        self._launched_at = 0.0
        self._lock = threading.RLock()
        self.last_startup_seconds: float | None = None
        """Wall-clock seconds the most recent :meth:`start` took until the server was ready."""
        # Last-resort cleanup if the owner forgets stop(): on garbage collection or at exit.
        weakref.finalize(self, MlflowServer._finalize, self._proc_cell)

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self._proc_cell[0]

    @_proc.setter
    def _proc(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._proc_cell[0] = proc

    # -- configuration / addresses ------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """``"sqlite"`` or ``"file"``."""
        return self._backend

    @property
    def root(self) -> Path:
        """Directory holding the backing store, the artifacts and ``server.log``."""
        return self._root

    @property
    def log_path(self) -> Path:
        """Server stdout/stderr (appended across restarts)."""
        return self._root / "server.log"

    @property
    def artifacts_path(self) -> Path:
        """Proxied artifact destination (``--artifacts-destination``)."""
        return self._root / "artifacts"

    @property
    def backend_store_uri(self) -> str:
        """The ``--backend-store-uri`` passed to the server."""
        if self._backend == "sqlite":
            return f"sqlite:///{self._root / 'mlflow.db'}"
        return str(self._root / "mlruns")

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """The port (fixed after the first start)."""
        if self._port is None:
            raise MlflowServerError("MlflowServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Tracking URI, ``http://127.0.0.1:<port>``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def otlp_traces_url(self) -> str:
        """``<url>/v1/traces`` (needs header ``x-mlflow-experiment-id``)."""
        return f"{self.url}/v1/traces"

    @property
    def pid(self) -> int | None:
        """PID of the ``mlflow server`` parent process (also its process-group id)."""
        return None if self._proc is None else self._proc.pid

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive (not necessarily ready)."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "<no port>"
        state = "running" if self.is_running else "stopped"
        return f"<MlflowServer {self.version} {self._backend} {where} {state} root={self._root}>"

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> MlflowServer:
        """Start the server (if not running) and wait until ``GET /health`` answers 200.

        A port picked automatically that turns out to be taken is replaced by a new one
        (only before the first successful start; restarts always reuse the port).

        Raises:
            MlflowServerError: the process exited or was not ready within ``timeout``
                seconds; the message includes the tail of the server log.
        """
        with self._lock:
            if self.is_running:
                return self
            deadline = time.monotonic() + timeout
            for attempt in range(_PORT_RACE_RETRIES):
                self.launch()
                try:
                    self.wait_ready(max(deadline - time.monotonic(), 0.0))
                    return self
                except MlflowServerError:
                    port_race = (
                        not self._fixed_port
                        and self._starts == 1
                        and attempt + 1 < _PORT_RACE_RETRIES
                        and any(marker in self.log_tail().lower() for marker in _ADDRESS_IN_USE_MARKERS)
                    )
                    # Not waiting for the port: after a port race it belongs to someone else.
                    self._terminate(timeout=5.0, wait_port=False)
                    if not port_race:
                        raise
                    self._port, self._starts = None, 0
            raise AssertionError("unreachable")  # pragma: no cover

    def launch(self) -> None:
        """Spawn the server process without waiting for readiness (see :meth:`wait_ready`).

        Lets a caller start several servers concurrently.
        """
        with self._lock:
            if self.is_running:
                return
            self._close_log()
            if self._port is None:
                self._port = _free_port()
            if self._starts > 0 and _port_accepts_connections(self._port):
                raise MlflowServerError(f"cannot restart MlflowServer: port {self._port} is in use")
            self._starts += 1
            self.artifacts_path.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _close_log()
            log.write(f"\n===== start #{self._starts}: {' '.join(self._command())} =====\n".encode())
            log.flush()
            self._log_file = log
            self._launched_at = time.monotonic()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._root,
                env=self._environment(),
                start_new_session=True,  # own process group: parent + uvicorn child
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Poll ``GET /health`` until it answers 200 (bounded by ``timeout`` seconds).

        The poll interval is spent in ``Popen.wait`` so a crashing server is noticed at once.

        Raises:
            MlflowServerError: the process exited or the deadline passed.
        """
        proc = self._proc
        if proc is None:
            raise MlflowServerError("MlflowServer.wait_ready() called before launch()")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise self._startup_error(f"mlflow server exited with code {proc.returncode} during startup")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._startup_error(f"mlflow server not ready within {timeout:.1f}s")
            if self._probe_health(min(2.0, remaining)):
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(_POLL_INTERVAL, max(deadline - time.monotonic(), 0.0)))
        if proc.poll() is not None:  # someone else answered on our port
            raise self._startup_error(f"mlflow server exited with code {proc.returncode} during startup")
        self.last_startup_seconds = time.monotonic() - self._launched_at

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server gracefully (SIGTERM to the CLI parent, which forwards it to uvicorn),
        SIGKILL the process group if it is not gone after ``timeout`` seconds, and wait until the
        port is released. Data is kept. Idempotent."""
        with self._lock:
            self._terminate(timeout)

    def kill(self) -> None:
        """Crash the server: SIGKILL its whole process group (no graceful shutdown). Data that
        was committed stays in the store; :meth:`restart` brings the server back."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            _signal_group(proc.pid, signal.SIGKILL)
            self._reap(proc, 10.0)
            self._proc = None
            self._wait_port_released(10.0)
            self._close_log()

    def restart(self, timeout: float = 90.0) -> MlflowServer:
        """Stop (if still running) and start again on the same port with the same store."""
        with self._lock:
            self._terminate(timeout=20.0)
            return self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete the root directory if this instance created it."""
        with self._lock:
            self._terminate(timeout=20.0)
            if self._owns_root:
                shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers for tests --------------------------------------------------------------

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log (empty if there is none)."""
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        """Send one raw HTTP request to the server (no proxies, no retries)."""
        conn = http.client.HTTPConnection(_HOST, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            return HttpResponse(
                status=response.status,
                headers={key.lower(): value for key, value in response.getheaders()},
                body=response.read(),
            )
        finally:
            conn.close()

    def post_otlp(
        self,
        body: bytes,
        experiment_id: str = "0",
        *,
        content_type: str = "application/x-protobuf",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> HttpResponse:
        """``POST /v1/traces`` with an already serialized OTLP body."""
        all_headers = {"Content-Type": content_type, "x-mlflow-experiment-id": experiment_id, **(headers or {})}
        return self.request("POST", "/v1/traces", body, all_headers, timeout)

    def create_experiment(self, name: str) -> str:
        """Create an experiment through the REST API and return its id."""
        response = self.request(
            "POST",
            "/api/2.0/mlflow/experiments/create",
            json.dumps({"name": name}).encode(),
            {"Content-Type": "application/json"},
        )
        if response.status != 200:
            raise MlflowServerError(f"create_experiment({name!r}) -> {response.status}: {response.body!r}")
        return str(response.json()["experiment_id"])

    def client(self) -> MlflowClient:
        """An ``mlflow.MlflowClient`` pointed at this server (imports mlflow lazily)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url)

    # -- internals ----------------------------------------------------------------------

    def _command(self) -> list[str]:
        args = [
            self._python,
            "-m",
            "mlflow",
            "server",
            "--host",
            _HOST,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_path),
        ]
        return [*args, *self._extra_args]

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(_STRIPPED_ENV_PREFIXES)}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if self._enable_job_execution else "false",
            }
        )
        if self._backend == "file":
            env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        env.update(self._extra_env)
        return env

    def _probe_health(self, timeout: float) -> bool:
        conn = http.client.HTTPConnection(_HOST, self.port, timeout=timeout)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _startup_error(self, reason: str) -> MlflowServerError:
        return MlflowServerError(
            f"{reason} ({self._backend} backend, port {self._port}, root {self._root}).\n"
            f"--- last {_LOG_TAIL_LINES} lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def _terminate(self, timeout: float, *, wait_port: bool = True) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # the CLI forwards it to uvicorn
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                self._reap(proc, 10.0)
        # Anything left in the group (e.g. uvicorn when the parent died first) is killed.
        _signal_group(proc.pid, signal.SIGKILL)
        self._proc = None
        self._close_log()
        if wait_port:
            self._wait_port_released(10.0)

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise MlflowServerError(f"mlflow server (pid {proc.pid}) did not exit after SIGKILL") from exc

    def _wait_port_released(self, timeout: float) -> None:
        """Bounded poll until nothing accepts connections on our port any more."""
        if self._port is None:
            return
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while _port_accepts_connections(self._port):
            if time.monotonic() >= deadline:
                raise MlflowServerError(f"port {self._port} still accepting connections {timeout}s after stop")
            pause.wait(_POLL_INTERVAL)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @staticmethod
    def _finalize(cell: list[subprocess.Popen[bytes] | None]) -> None:
        """Last-resort cleanup (garbage collection / interpreter exit): kill the group."""
        proc = cell[0]
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
