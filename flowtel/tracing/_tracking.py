"""Tracking URI: where traces go. Unset means the embedded local store."""

from __future__ import annotations

from flowtel import _config
from flowtel._config import ConfigError

_uri_override: str | None = None


def override(uri: str) -> None:
    """Record a validated URI (``""`` for the embedded store) as the one in force."""
    global _uri_override
    _uri_override = uri


def current_or_none() -> str | None:
    try:
        return resolve_tracking_uri()
    except ConfigError:
        return None


def get_tracking_uri() -> str:
    """The current tracking URI, or ``flowtel-local:<path>`` for the embedded store."""
    uri = resolve_tracking_uri()
    return uri if uri is not None else f"flowtel-local:{_config.FLOWTEL_STORE_PATH.get()}"


def is_tracking_uri_set() -> bool:
    return bool(_uri_override) or _config.MLFLOW_TRACKING_URI.is_set()


def resolve_tracking_uri() -> str | None:
    raw = _uri_override if _uri_override is not None else _config.MLFLOW_TRACKING_URI.get()
    return validate_tracking_uri(raw)


def validate_tracking_uri(uri: str) -> str | None:
    uri = uri.strip()
    if not uri:
        return None
    lowered = uri.lower()
    if lowered.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if lowered.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        raise ConfigError(
            f"Tracking URI {uri!r} is a database URI: that is MLflow's own backend store, which "
            "flowtel never writes into. Run an MLflow server on it "
            f"(`mlflow server --backend-store-uri {uri}`) and set MLFLOW_TRACKING_URI to the "
            "server's http://host:port, or unset MLFLOW_TRACKING_URI to use flowtel's embedded "
            "store (FLOWTEL_STORE_PATH)."
        )
    if lowered.startswith(("file:", "/", "./", "databricks", "uc:")) or "://" not in uri:
        raise ConfigError(
            f"Tracking URI {uri!r} is not supported by flowtel. Use an MLflow tracking server "
            "(http://host:port or https://host:port), or unset MLFLOW_TRACKING_URI to keep "
            "traces in the embedded store (its path is FLOWTEL_STORE_PATH)."
        )
    raise ConfigError(
        f"Tracking URI {uri!r} has an unsupported scheme. Use http:// or https://, or unset "
        "MLFLOW_TRACKING_URI for the embedded store."
    )
