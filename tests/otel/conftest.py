"""Fixtures for the OpenTelemetry suite: fast retries, a spool private to the test, no OTLP/MLflow
variables inherited from the environment, and helpers shared by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowtel.tracing import _runtime

_PREFIXES = ("OTEL_", "MLFLOW_", "FLOWTEL_OTLP")


@pytest.fixture(autouse=True)
def otel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A clean OTel/MLflow environment, millisecond backoffs and a private spool."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FLOWTEL_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS", "0.01")
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_MAX_SECONDS", "0.05")
    monkeypatch.setenv("FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS", "5")
    yield
    _runtime.reset()
