"""flowtel's one HTTP client, on ``requests`` (which ``opentelemetry-exporter-otlp-proto-http``,
a core dependency, already requires; MLflow's own client uses it too).

Used by the MLflow exporter, its read side and ``MlflowSpanExporter`` (MLflow REST + OTLP
endpoints) and by the OTLP/HTTP exporter. Keep-alive connections pooled per client (thread-safe
pool; a forked child starts its own), TLS verified by default, bearer or basic auth, per-request
timeouts, proxies from the environment (``HTTP(S)_PROXY``, ``NO_PROXY``), no redirects followed.
A request that fails because the server dropped a pooled keep-alive connection is sent again
once. Credentials are only ever placed in request headers: they never appear in ``repr``, log
records or exception messages (``~/.netrc`` is not consulted: credentials come from settings).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
import threading
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flowtel import _config
from flowtel._version import __version__
from flowtel.delivery._retry import parse_retry_after

if TYPE_CHECKING:
    import requests

__all__ = ["HttpClient", "HttpResponse", "HttpSettings", "TransportError"]

_USER_AGENT = f"flowtel/{__version__}"
_POOL_SIZE = 32  # >= the exporter's connections + the read side's search threads
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# Errors of a pooled connection the server closed while idle: worth one more try.
_STALE_CONNECTION_ERRORS = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


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
        client_key_path: Its private key, when not in ``client_cert_path``.
        timeout: Seconds per request (``MLFLOW_HTTP_REQUEST_TIMEOUT``).
    """

    base_url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    insecure_tls: bool = False
    server_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
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
        kind: ``"connection"``, ``"timeout"``, ``"tls"`` or ``"request"`` (a request that
            cannot be sent at all, e.g. an invalid URL).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class HttpClient:
    """Thread-safe; ``request`` blocks up to its timeout.

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
        self._base = urllib.parse.urlunsplit(
            (parts.scheme, _host_port(parts.hostname, parts.port), parts.path.rstrip("/"), "", "")
        )
        self.display_url = self._base
        self._query = parts.query
        self._auth_header = _authorization(settings, parts)
        # Loaded now so that a bad certificate file is a configuration error, not a delivery one.
        self._ssl_context = _ssl_context(settings) if parts.scheme == "https" else None
        # Passed with every request: a session's own verify/cert lose to REQUESTS_CA_BUNDLE.
        self._verify: bool | str = False if settings.insecure_tls else (settings.server_cert_path or True)
        self._cert: str | tuple[str, str] | None = (
            (settings.client_cert_path, settings.client_key_path)
            if settings.client_cert_path and settings.client_key_path else settings.client_cert_path
        )
        if settings.insecure_tls:
            _silence_insecure_warning(parts.hostname)
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid = 0

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
        """Send one request and read the whole response. Blocks; connecting and each read
        wait up to ``timeout`` seconds (default: the settings' timeout).

        Raises:
            TransportError: no HTTP response was received.
        """
        import requests

        url = self._url(path)
        seconds = timeout if timeout is not None else self.settings.timeout
        all_headers = self._headers(headers)
        for attempt in (1, 2):
            session = self._current_session()
            try:
                response = session.request(
                    method, url, data=body, headers=all_headers, params=_params(params),
                    timeout=seconds, allow_redirects=False, auth=_NO_NETRC, verify=self._verify, cert=self._cert,
                )
            except requests.RequestException as exc:
                if attempt == 1 and _is_stale_connection(exc):
                    continue  # the server closed an idle keep-alive connection: retry once
                raise self._transport_error(exc) from None
            return HttpResponse(
                response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection; later requests open new ones."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and self._session_pid == os.getpid():
            session.close()

    def __repr__(self) -> str:
        return f"HttpClient({self.display_url!r})"

    # -- internals ------------------------------------------------------------------------------
    def _current_session(self) -> requests.Session:
        with self._lock:
            # A session inherited through fork() shares the parent's sockets: leave it alone.
            if self._session is None or self._session_pid != os.getpid():
                self._session, self._session_pid = self._new_session(), os.getpid()
            return self._session

    def _new_session(self) -> requests.Session:
        import requests
        import requests.adapters

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=_POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _url(self, path: str) -> str:
        url = self._base + path
        return f"{url}?{self._query}" if self._query else url

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if self._auth_header is not None:
            headers["Authorization"] = self._auth_header
        if extra:
            headers.update(extra)
        return headers

    def _transport_error(self, exc: BaseException) -> TransportError:
        import requests

        where = self.display_url
        if isinstance(exc, requests.exceptions.SSLError):
            return TransportError(
                "tls",
                f"TLS error talking to {where}: {_reason(exc)}. "
                "Set MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA bundle, or "
                "MLFLOW_TRACKING_INSECURE_TLS=true to skip verification (unsafe).",
            )
        if isinstance(exc, requests.Timeout):
            return TransportError("timeout", f"Request to {where} timed out (MLFLOW_HTTP_REQUEST_TIMEOUT).")
        if isinstance(exc, requests.ConnectionError):
            return TransportError("connection", f"Could not reach {where}: {_reason(exc)}")
        return TransportError("request", f"Could not send a request to {where}: {_reason(exc)}")


# -- helpers -------------------------------------------------------------------------------------
def _no_netrc(request: Any) -> Any:
    # An ``auth`` callable keeps requests from reading ~/.netrc; our header is already set.
    return request


_NO_NETRC = _no_netrc


def _silence_insecure_warning(host: str) -> None:
    """The user turned verification off for this server on purpose (MLFLOW_TRACKING_INSECURE_TLS):
    urllib3's per-request warning about it is muted for this host only."""
    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings(
        "ignore", f"Unverified HTTPS request is being made to host '{re.escape(host)}'", InsecureRequestWarning
    )


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: v for k, v in params.items() if v is not None}


def _is_stale_connection(exc: BaseException) -> bool:
    import requests

    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.Timeout):
        return False
    cause: BaseException | None = exc
    for _ in range(6):  # requests -> urllib3 ProtocolError/MaxRetryError -> the socket error
        if isinstance(cause, _STALE_CONNECTION_ERRORS):
            return True
        if cause is None:
            return False
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException):
            inner = cause.args[1] if len(cause.args) > 1 and isinstance(cause.args[1], BaseException) else (
                cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else cause.__cause__
            )
        cause = inner
    return False


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
    """The TLS settings, checked: verifying unless insecure_tls, certificate files loaded.

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
            context.load_cert_chain(settings.client_cert_path, settings.client_key_path)
    except (OSError, ssl.SSLError) as exc:
        raise _config.ConfigError(
            "MLFLOW_TRACKING_SERVER_CERT_PATH / MLFLOW_TRACKING_CLIENT_CERT_PATH could not be "
            f"loaded: {exc}"
        ) from None
    return context


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _reason(exc: BaseException) -> str:
    """The innermost error's text, with any ``user:password@`` of a URL (a proxy's) removed."""
    inner: BaseException = exc
    for _ in range(6):
        nested = getattr(inner, "reason", None)
        if not isinstance(nested, BaseException):
            nested = inner.args[0] if inner.args and isinstance(inner.args[0], BaseException) else None
        if nested is None:
            break
        inner = nested
    text = str(getattr(inner, "strerror", None) or inner) or "no detail"
    return f"{type(inner).__name__}: {_USERINFO.sub('***@', text)}"
