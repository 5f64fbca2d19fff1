"""``flowtel ui``: the real MLflow UI on the embedded store's traces.

    flowtel ui [--port N] [--data-dir DIR] [--no-browser] [--interval SECONDS]

Starts a private ``mlflow server`` bound to 127.0.0.1 (SQLite backend and artifacts under the
data directory, default ``<user cache dir>/flowtel/ui``), copies every trace of the embedded
store into it with :func:`flowtel.cli._push.push_traces` (tags, metadata, assessments,
experiments mapped by name), keeps copying new and changed traces every ``--interval`` seconds
while it runs, prints the URL and opens the browser. A second ``flowtel ui`` on the same data
directory finds the running one (``server.json``) and reuses it.

The server never outlives the command: it runs in its own process group, which is stopped on
Ctrl-C, SIGTERM and SIGHUP; if the command is killed outright (SIGKILL), a small watchdog
process that holds the read end of a pipe from it sees end-of-file and kills the group (on
Linux the server also gets ``PR_SET_PDEATHSIG``).

MLflow is heavy and optional: ``pip install 'flowtel[ui]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["DEFAULT_PORT", "add_ui_commands"]

DEFAULT_PORT = 5051
"""Fixed so a bookmark keeps working; a free port is taken when it is busy (unless ``--port``)."""
_HOST = "127.0.0.1"
_INSTALL_HINT = "flowtel ui needs MLflow, which is an optional extra. Install it with:\n    pip install 'flowtel[ui]'"
_STARTUP_TIMEOUT = 300.0

# Runs in its own process; reads its stdin (a pipe from `flowtel ui`) until end-of-file, i.e.
# until `flowtel ui` is gone however it died, then stops the server's process group.
_WATCHDOG = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
group = int(sys.argv[1])
while sys.stdin.buffer.read(4096):
    pass
def alive():
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
if alive():
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        os.killpg(group, signal.SIGKILL)
"""


def add_ui_commands(subparsers: Any) -> None:
    """Add ``ui`` to the top-level ``flowtel`` sub-parser collection (sets ``handler``)."""
    ui = subparsers.add_parser("ui", help="open the MLflow UI on the embedded store's traces (needs flowtel[ui])")
    ui.add_argument("--port", type=int, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or a free one if busy)")
    ui.add_argument("--data-dir", help="where the UI's server keeps its data (default: <user cache dir>/flowtel/ui)")
    ui.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    ui.add_argument("--interval", type=float, default=2.0, help="seconds between copies of new traces (default 2)")
    ui.set_defaults(handler=_cmd_ui)


def _cmd_ui(args: argparse.Namespace) -> int:
    if not _mlflow_installed():
        print(f"error: {_INSTALL_HINT}", file=sys.stderr)
        return 1
    store_path = os.path.abspath(args.store or os.environ.get("FLOWTEL_STORE_PATH", "flowtel-traces.db"))
    data_dir = _data_dir(args.data_dir)
    if data_dir is None:
        print("error: no home directory for the UI's data: pass --data-dir DIR.", file=sys.stderr)
        return 1
    stop = threading.Event()
    with _stop_on_signals(stop):
        return _UiSession(store_path, data_dir, args, stop).run()


# -- one run of `flowtel ui` ---------------------------------------------------------------------
class _UiSession:
    def __init__(self, store_path: str, data_dir: Path, args: argparse.Namespace, stop: threading.Event) -> None:
        self.store_path = store_path
        self.data_dir = data_dir
        self.args = args
        self.stop = stop
        self.server: subprocess.Popen[bytes] | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.experiments: dict[str, str] = {}  # embedded store's experiment id -> the server's

    def run(self) -> int:
        from flowtel.tracing._notebook import read_ui_state

        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = _try_lock(self.data_dir / "ui.lock")
        if lock is None:  # another `flowtel ui` owns this data directory
            return self._reuse(read_ui_state(self.data_dir) or self._wait_for_other())
        try:
            state = read_ui_state(self.data_dir)
            if state is not None:  # its process is alive but lost the lock: cannot happen, be safe
                return self._reuse(state)
            return self._serve()
        finally:
            self._shutdown()
            lock.close()

    def _serve(self) -> int:
        port = self._port()
        if port is None:
            return 1
        self.url = f"http://{_HOST}:{port}"
        if not self._start_server(port):
            return 1 if not self.stop.is_set() else 0
        self._write_state()
        if not os.path.exists(self.store_path):
            print(f"No traces yet: {self.store_path} does not exist; they will appear when traced code runs.")
        self._sync(show_progress=True)
        if self.stop.is_set():
            print("\nflowtel ui stopped.", flush=True)
            return 0
        print(f"flowtel ui: {self.url}  (traces of {self.store_path}; Ctrl-C to stop)", flush=True)
        if not self.args.no_browser:
            _open_browser(self.url)
        return self._keep_syncing()

    def _write_state(self) -> None:
        _write_private(self.data_dir / "server.json", json.dumps({
            "url": self.url, "pid": os.getpid(), "server_pid": self.server.pid if self.server else None,
            "store": self.store_path, "data_dir": str(self.data_dir), "experiments": self.experiments,
        }))

    def _reuse(self, state: dict[str, Any] | None) -> int:
        if state is None:
            print(f"error: another flowtel ui holds {self.data_dir} but is not serving; stop it or pass "
                  "--data-dir.", file=sys.stderr)
            return 1
        url = str(state.get("url"))
        print(f"flowtel ui: {url}  (already running, pid {state.get('pid')}, traces of {state.get('store')})",
              flush=True)
        if state.get("store") != self.store_path:
            print(f"note: it shows {state.get('store')}, not {self.store_path}; to copy this store there run\n"
                  f"    flowtel --store {self.store_path} traces push --to {url}", file=sys.stderr)
        if not self.args.no_browser:
            _open_browser(url)
        return 0

    def _wait_for_other(self) -> dict[str, Any] | None:
        from flowtel.tracing._notebook import read_ui_state

        print("Another flowtel ui is starting on this data directory; waiting for it...", flush=True)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while not self.stop.wait(0.5) and time.monotonic() < deadline:
            state = read_ui_state(self.data_dir)
            if state is not None:
                return state
        return None

    def _port(self) -> int | None:
        if self.args.port is not None:
            if not _port_free(self.args.port):
                print(f"error: port {self.args.port} on {_HOST} is in use; choose another --port.", file=sys.stderr)
                return None
            return int(self.args.port)
        return DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()

    # -- the server ----------------------------------------------------------------------------
    def _start_server(self, port: int) -> bool:
        artifacts = self.data_dir / "artifacts"
        artifacts.mkdir(exist_ok=True)
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", _HOST, "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{self.data_dir / 'mlflow.db'}",
            "--artifacts-destination", str(artifacts),
        ]
        log_path = self.data_dir / "server.log"
        with open(log_path, "ab") as log:
            self.server = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                env=_server_env(), start_new_session=True,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.server.pid)], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self._wait_ready(port, log_path)

    def _wait_ready(self, port: int, log_path: Path) -> bool:
        started = time.monotonic()
        out = sys.stdout
        print(f"Starting the MLflow UI server on {self.url} (the first start can take a minute)", end="", flush=True)
        last_dot = 0
        while not self.stop.is_set():
            assert self.server is not None
            if self.server.poll() is not None:
                print(f"\nerror: the MLflow server exited (code {self.server.returncode}). "
                      f"Last lines of {log_path}:\n{_tail(log_path)}", file=sys.stderr)
                return False
            if _healthy(port):
                print(f" ready ({time.monotonic() - started:.0f}s).", flush=True)
                return True
            elapsed = time.monotonic() - started
            if elapsed > _STARTUP_TIMEOUT:
                print(f"\nerror: the MLflow server was not ready after {elapsed:.0f}s. "
                      f"Last lines of {log_path}:\n{_tail(log_path)}", file=sys.stderr)
                return False
            if int(elapsed) // 5 > last_dot:  # a mark every 5 s so the wait is visibly alive
                last_dot = int(elapsed) // 5
                out.write(f" {int(elapsed)}s")
                out.flush()
            self.stop.wait(0.25)
        print()
        return False

    def _shutdown(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            with contextlib.suppress(FileNotFoundError):
                state = json.loads((self.data_dir / "server.json").read_text())
                if state.get("pid") == os.getpid():
                    (self.data_dir / "server.json").unlink()
            _stop_group(server)
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None:
            with contextlib.suppress(OSError):
                assert watchdog.stdin is not None
                watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=15)

    # -- copying -------------------------------------------------------------------------------
    def _keep_syncing(self) -> int:
        last = _store_signature(self.store_path)
        while not self.stop.wait(max(self.args.interval, 0.1)):
            assert self.server is not None
            if self.server.poll() is not None:
                print(f"error: the MLflow server stopped (code {self.server.returncode}); see "
                      f"{self.data_dir / 'server.log'}", file=sys.stderr)
                return 1
            signature = _store_signature(self.store_path)
            if signature != last:
                last = signature
                self._sync(show_progress=False)
        print("\nflowtel ui stopped.", flush=True)
        return 0

    def _sync(self, *, show_progress: bool) -> None:
        from flowtel._exceptions import FlowtelException
        from flowtel.cli._push import ProgressBar, PushJournal, push_traces

        if not os.path.exists(self.store_path):
            return
        digest = hashlib.sha256(self.store_path.encode()).hexdigest()[:16]
        journal = PushJournal(self.data_dir / f"sync-{digest}.jsonl")
        bar = ProgressBar(sys.stdout, "copying traces") if show_progress else None
        try:
            report = push_traces(self.store_path, self.url, journal=journal, stop=self.stop,
                                 progress=bar.update if bar else None)
        except FlowtelException as exc:
            print(f"warning: copying traces to the UI failed: {exc}", file=sys.stderr, flush=True)
            return
        finally:
            if bar is not None:
                bar.close()
        if any(self.experiments.get(k) != v for k, v in report.experiments.items()):
            self.experiments.update(report.experiments)
            self._write_state()  # notebooks link to traces in their server-side experiment
        if show_progress or report.sent or report.failed:
            print(f"{report.sent} traces copied, {report.unchanged} already there"
                  + (f", {len(report.failed)} failed" if report.failed else ""), flush=True)
        for trace_id, reason in sorted(report.failed.items()):
            print(f"  failed {trace_id}: {reason}", file=sys.stderr, flush=True)


# -- helpers -------------------------------------------------------------------------------------
def _mlflow_installed() -> bool:
    try:
        return importlib.util.find_spec("mlflow") is not None and importlib.util.find_spec("uvicorn") is not None
    except (ImportError, ValueError):
        return False


def _data_dir(option: str | None) -> Path | None:
    from flowtel.tracing._notebook import default_ui_dir

    return Path(option).expanduser().resolve() if option else default_ui_dir()


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Any:
    """SIGINT, SIGTERM and SIGHUP end the session cleanly (the main thread sees ``stop``)."""
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous: dict[int, Any] = {}
    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING_", "FLOWTEL_"))}
    env.update({
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    return env


def _die_with_parent() -> None:
    """In the server process before exec (Linux): SIGTERM when `flowtel ui` dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the watchdog still stops the server


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (the mlflow CLI forwards it to uvicorn), then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # uvicorn if the parent went first
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _try_lock(path: Path) -> IO[str] | None:
    """An exclusive lock on ``path`` held while the returned file is open; ``None`` if taken."""
    f = open(path, "a")  # noqa: SIM115 - held for the session, closed by the caller
    try:
        import fcntl
    except ImportError:  # Windows: no lock, the server.json check still reuses a running UI
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _store_signature(path: str) -> tuple[tuple[int, int], ...]:
    """Changes whenever the SQLite store (or its write-ahead log) is written."""
    signature = []
    for name in (path, path + "-wal"):
        try:
            st = os.stat(name)
        except OSError:
            signature.append((0, 0))
            continue
        signature.append((st.st_mtime_ns, st.st_size))
    return tuple(signature)


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(_HOST, port, timeout=2)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _open_browser(url: str, opener: Callable[[str], Any] | None = None) -> None:
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and opener is None:
        return  # no desktop (ssh, container): Python would pick a text browser and take the terminal
    try:
        import webbrowser

        (opener or webbrowser.open)(url)
    except Exception:  # noqa: BLE001 - no browser (ssh, container): the printed URL is enough
        pass
