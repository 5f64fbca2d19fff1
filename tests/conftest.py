"""Shared test set-up: real servers, isolated flowtel state, and internal errors as failures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

# Never write the default store into the repository during tests.
os.environ.setdefault("FLOWTEL_STORE_PATH", os.path.join(tempfile.mkdtemp(prefix="flowtel-tests-"), "traces.db"))
# Nor the delivery spool into the user's cache directory.
os.environ.setdefault("FLOWTEL_SPOOL_DIR", tempfile.mkdtemp(prefix="flowtel-tests-spool-"))
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
for _var in [v for v in os.environ if v.startswith("OTEL_EXPORTER_OTLP")]:
    os.environ.pop(_var)

from hypothesis import settings as _hypothesis_settings  # noqa: E402

# CI must not go red on a new random example the developer never saw: there, property tests
# replay a fixed set of examples (developers still explore new ones on every local run).
_hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")

import flowtel  # noqa: E402
from flowtel import _errors
from flowtel.tracing import _runtime  # noqa: E402
from tests._servers.fixtures import *  # noqa: E402,F403
from tests._servers.llm_fixtures import *  # noqa: E402,F403


@pytest.fixture(autouse=True)
def fail_on_internal_errors() -> Iterator[None]:
    """A swallowed internal error is a bug: the test that caused it fails."""
    errors: list[tuple[str, BaseException | None]] = []
    listener = lambda where, exc: errors.append((where, exc))  # noqa: E731
    _errors.add_listener(listener)
    try:
        yield
    finally:
        _errors.remove_listener(listener)
    if errors:
        where, exc = errors[0]
        raise AssertionError(f"flowtel internal error in {where}: {exc!r}") from exc


_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(autouse=True)
def fresh_flowtel() -> Iterator[None]:
    """Each test starts with default configuration and tracing enabled."""
    import flowtel.tracing
    from flowtel.tracing import _cost

    # mlflow's own set_tracking_uri() writes MLFLOW_TRACKING_URI into os.environ; a test that
    # drives real mlflow must not leave it (or an experiment) behind for the next test.
    saved = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    flowtel.tracing.enable()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    flowtel.tracing.enable()
    flowtel.tracing.configure(span_processors=[])
    _cost.reset()  # user prices and the FLOWTEL_PRICES_FILE read
    flowtel.tracing._links.reset()  # set_destination(location) / set_active_model are process-wide
    _runtime.reset()


@pytest.fixture
def local_store_path(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh embedded store for this test, used by the default destination."""
    path = str(tmp_path / "traces.db")  # type: ignore[operator]
    monkeypatch.setenv("FLOWTEL_STORE_PATH", path)
    _runtime.reset()
    return path


# -- LLM SDK integrations, each switched on for one test only ------------------------------------
@pytest.fixture
def openai_autolog() -> Iterator[None]:
    pytest.importorskip("openai")
    flowtel.openai.autolog()
    try:
        yield
    finally:
        flowtel.openai.autolog(disable=True)


@pytest.fixture
def anthropic_autolog() -> Iterator[None]:
    pytest.importorskip("anthropic")
    flowtel.anthropic.autolog()
    try:
        yield
    finally:
        flowtel.anthropic.autolog(disable=True)


@pytest.fixture
def langchain_autolog() -> Iterator[None]:
    pytest.importorskip("langchain_core")
    flowtel.langchain.autolog()
    try:
        yield
    finally:
        flowtel.langchain.autolog(disable=True)
