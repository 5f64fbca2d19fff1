"""A small HTTP client for talking to an MLflow tracking server (standard library only).

One keep-alive connection per thread (delivery workers reuse theirs for every request), TLS
verified by default, bearer or basic auth, per-request timeouts, ``HTTP(S)_PROXY`` support.
A request that fails because the server closed an idle keep-alive connection is sent again once
on a fresh connection. Credentials are only ever placed in request headers: they never appear in
``repr``, log records or exception messages.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowtel import _config
from flowtel._version import __version__
from flowtel.delivery._retry import parse_retry_after

__all__ = ["HttpClient", "HttpResponse", "HttpSettings", "TransportError"]

_STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)
_USER_AGENT = f"flowtel/{__version__}"


@dataclass(frozen=True)
class HttpSettings:
    """How to reach a server. Secret fields are excluded from ``repr``.

    Args:
        base_url: ``http(s)://host[:port][/prefix]``; user info in it is used as basic auth.
        token: Bearer token (``MLFLOW_TRACKING_TOKEN``).
        username: Basic auth user (``MLFLOW_TRACKING_USERNAME``).
        password: Basic auth password (``MLFLOW_TRACKING_PASSWORD``).
        insecure_tls: Skip TLS verification (``MLFLOW_TRACKING_INSECURE_TLS``).
        server_cert_path: CA bundle to verify the server with (``MLFLOW_TRACKING_SERVER_CERT_PATH``).
        client_cert_path: Client certificate for mutual TLS (``MLFLOW_TRACKING_CLIENT_CERT_PATH``).
        timeout: Seconds per request (``MLFLOW_HTTP_REQUEST_TIMEOUT``).
    """

    base_url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    insecure_tls: bool = False
    server_cert_path: str | None = None
    client_cert_path: str | None = None
    timeout: float = 120.0

    @classmethod
    def from_env(cls, base_url: str) -> HttpSettings:
        """Settings for ``base_url`` from the standard MLflow environment variables.

        Raises:
            ConfigError: an invalid value (e.g. a non-numeric timeout).
        """
        return cls(
            base_url=base_url,
            token=_config.MLFLOW_TRACKING_TOKEN.get() or None,
            username=_config.MLFLOW_TRACKING_USERNAME.get() or None,
            password=_config.MLFLOW_TRACKING_PASSWORD.get() or None,
            insecure_tls=_config.MLFLOW_TRACKING_INSECURE_TLS.get(),
            server_cert_path=_config.MLFLOW_TRACKING_SERVER_CERT_PATH.get() or None,
            client_cert_path=_config.MLFLOW_TRACKING_CLIENT_CERT_PATH.get() or None,
            timeout=_config.MLFLOW_HTTP_REQUEST_TIMEOUT.get(),
        )


@dataclass(frozen=True)
class HttpResponse:
    """A complete response. ``headers`` has lower-cased names."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body decoded as JSON (``{}`` for an empty body).

        Raises:
            ValueError: the body is not JSON.
        """
        return json.loads(self.body) if self.body.strip() else {}

    @property
    def retry_after(self) -> float | None:
        """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if any."""
        return parse_retry_after(self.headers.get("retry-after"))


class TransportError(Exception):
    """The request got no HTTP response: connection refused/reset, timeout, TLS failure.

    Attributes:
        kind: ``"connection"``, ``"timeout"`` or ``"tls"``.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HttpClient:
    """Thread-safe: each thread uses its own keep-alive connection.

    Args:
        settings: Where and how to connect.

    Raises:
        ValueError: ``base_url`` is not an http(s) URL.
        ConfigError: a TLS certificate file cannot be loaded.
    """

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        parts = urllib.parse.urlsplit(settings.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {_redact_url(settings.base_url)}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self.display_url = f"{parts.scheme}://{_host_port(self._host, parts.port)}{self._prefix}"
        self._auth_header = _authorization(settings, parts)
        self._proxy = _proxy_for(parts.scheme, self._host)
        self._ssl_context = _ssl_context(settings) if self._https else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._generation = 0  # bumped by close(): threads then open fresh connections

    # -- public ---------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send one request and read the whole response. Blocks; each socket operation waits
        up to ``timeout`` seconds (default: the settings' timeout).

        Raises:
            TransportError: no HTTP response was received.
        """
        target = self._target(path, params)
        all_headers = self._headers(headers)
        for attempt in (1, 2):
            conn, reused = self._connection(timeout)
            try:
                conn.request(method, target, body=body, headers=all_headers)
                response = conn.getresponse()
                data = response.read()
            except _STALE_CONNECTION_ERRORS as exc:
                self._discard(conn)
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: retry once
                raise self._transport_error(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self._discard(conn)
                raise self._transport_error(exc) from None
            if response.will_close:
                self._discard(conn)
            else:
                self._local.used = True
            return HttpResponse(response.status, _lower(response.getheaders()), data)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection; later requests open new ones."""
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for conn in connections:
            conn.close()

    def __repr__(self) -> str:
        return f"HttpClient({self.display_url!r})"

    # -- connections ----------------------------------------------------------------------------
    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        local = self._local
        conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
        if conn is not None and (local.pid != os.getpid() or local.generation != self._generation):
            conn = None  # inherited through fork() (the parent's socket), or closed by close()
        if conn is None:
            conn = self._new_connection()
            local.conn, local.pid, local.generation, local.used = conn, os.getpid(), self._generation, False
        conn.timeout = timeout if timeout is not None else self.settings.timeout
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        return conn, bool(local.used) and conn.sock is not None

    def _new_connection(self) -> http.client.HTTPConnection:
        host, port = self._host, self._port
        if self._proxy is not None:
            host, port = self._proxy.host, self._proxy.port
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(host, port, context=self._ssl_context)
            if self._proxy is not None:
                conn.set_tunnel(self._host, self._port, headers=self._proxy.headers)
        else:
            conn = http.client.HTTPConnection(host, port)
        with self._lock:
            self._connections.append(conn)
        return conn

    def _discard(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    # -- request parts --------------------------------------------------------------------------
    def _target(self, path: str, params: Mapping[str, Any] | None) -> str:
        target = self._prefix + path
        if params:
            query = urllib.parse.urlencode(
                {k: v for k, v in params.items() if v is not None}, doseq=True
            )
            target = f"{target}?{query}" if query else target
        if self._proxy is not None and not self._https:
            target = f"http://{_host_port(self._host, self._port)}{target}"
        return target

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if self._auth_header is not None:
            headers["Authorization"] = self._auth_header
        if self._proxy is not None and not self._https:
            headers.update(self._proxy.headers)
        if extra:
            headers.update(extra)
        return headers

    def _transport_error(self, exc: BaseException) -> TransportError:
        where = self.display_url
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return TransportError(
                "timeout", f"Request to {where} timed out (MLFLOW_HTTP_REQUEST_TIMEOUT)."
            )
        if isinstance(exc, ssl.SSLError):
            return TransportError(
                "tls",
                f"TLS error talking to {where}: {exc.__class__.__name__}: {_reason(exc)}. "
                "Set MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA bundle, or "
                "MLFLOW_TRACKING_INSECURE_TLS=true to skip verification (unsafe).",
            )
        return TransportError(
            "connection", f"Could not reach {where}: {exc.__class__.__name__}: {_reason(exc)}"
        )


# -- helpers -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    headers: dict[str, str] = field(repr=False)


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    proxy_url = urllib.request.getproxies().get(scheme)
    if not proxy_url or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
    if not parts.hostname:
        return None
    headers: dict[str, str] = {}
    if parts.username:
        secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
    return _Proxy(parts.hostname, parts.port or 8080, headers)


def _authorization(settings: HttpSettings, parts: urllib.parse.SplitResult) -> str | None:
    if settings.token:
        return f"Bearer {settings.token}"
    username, password = settings.username, settings.password
    if username is None and parts.username:
        username = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
    if username is None:
        return None
    secret = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(secret).decode("ascii")


def _ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """Verifying TLS context (unless insecure_tls).

    Raises:
        ConfigError: a certificate file cannot be loaded.
    """
    try:
        if settings.insecure_tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=settings.server_cert_path)
        if settings.client_cert_path:
            context.load_cert_chain(settings.client_cert_path)
    except (OSError, ssl.SSLError) as exc:
        raise _config.ConfigError(
            "MLFLOW_TRACKING_SERVER_CERT_PATH / MLFLOW_TRACKING_CLIENT_CERT_PATH could not be "
            f"loaded: {exc}"
        ) from None
    return context


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers}


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc) or "no detail"
