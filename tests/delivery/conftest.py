"""Fixtures for the delivery fault-injection suite: fast retries, a private spool per test,
and helpers to route traces to one destination and check what arrived."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowtel.tracing import _runtime


@pytest.fixture(autouse=True)
def fast_delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Millisecond backoffs (so outages resolve quickly) and a spool private to the test."""
    spool = tmp_path / "spool"
    monkeypatch.setenv("FLOWTEL_SPOOL_DIR", str(spool))
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_INITIAL_SECONDS", "0.01")
    monkeypatch.setenv("FLOWTEL_EXPORT_RETRY_MAX_SECONDS", "0.05")
    monkeypatch.setenv("FLOWTEL_EXPORT_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("FLOWTEL_SHUTDOWN_TIMEOUT_SECONDS", "5")
    yield spool
    _runtime.reset()


@pytest.fixture
def spool_root(fast_delivery: Path) -> Path:
    """The spool root this test's pipelines use."""
    return fast_delivery
