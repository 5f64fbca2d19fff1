"""The one-flag fast path that skips run/model/location links when nothing is configured: the
flag follows every change of what it summarises (a stale True would drop links silently)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowtel.tracing import _links


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_ACTIVE_MODEL_ID", "_MLFLOW_ACTIVE_MODEL_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_links, "_context_locations_used", False)
    _links.reset()
    yield
    _links.reset()


def test_idle_only_once_the_environment_is_read_and_empty() -> None:
    assert not _links.idle  # the environment is not read yet
    _links._env()
    assert _links.idle
    _links.forget_environment()
    assert not _links.idle


def test_environment_with_a_run_or_model_is_not_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_RUN_ID", "r-1")
    _links._env()
    assert not _links.idle


def test_active_model_and_global_location_toggle_idle() -> None:
    _links._env()
    _links.set_active_model("m-1")
    assert not _links.idle
    _links.set_active_model(None)
    assert _links.idle
    _links.set_location("7", context_local=False)
    assert not _links.idle
    _links.clear_locations()
    assert _links.idle


def test_a_context_local_location_disables_the_fast_path_for_good() -> None:
    _links._env()
    _links.set_location("7", context_local=True)
    _links.clear_locations()  # clears this context only: others may still hold a location
    assert not _links.idle
