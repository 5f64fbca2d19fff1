"""Pytest fixtures for the real test servers; import them into a conftest with::

    from tests._servers.fixtures import *  # noqa: F401,F403

Fixtures:

* ``mlflow_version`` (session, parametrized): each MLflow version of
  :func:`tests._servers.mlflow_versions.versions` (3.17.2 and 3.18.0) in turn; every test that
  uses a server below runs once per version (test ids ``[mlflow-3.18.0]``).
* ``mlflow_server`` (session): a real ``mlflow server`` with a SQLite backend (OTLP ingest works).
* ``mlflow_file_server`` (session): a real ``mlflow server`` with the FileStore backend
  (``POST /v1/traces`` answers 501).
* ``mlflow_server_factory`` (function): builds dedicated servers, stopped at teardown. Use it
  for destructive tests (kill mid-run, long outages) instead of crashing the shared servers.
* ``otlp_grpc_receiver`` / ``otlp_http_receiver`` (function): running OTLP receivers.

The session servers are shared: a test that calls ``kill()``/``stop()`` on them must
``restart()`` before it returns (the URL stays the same). Isolate data per test with
``mlflow_server.create_experiment(name)`` rather than relying on experiment ``0`` being empty.

``FLOWTEL_TEST_MLFLOW_START_TIMEOUT`` (seconds, default 120) bounds server startup (not counting
the one-time creation of a cached venv for a version the test interpreter does not have).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests._servers.mlflow_server import Backend, MlflowServer
from tests._servers.mlflow_versions import python_for, versions
from tests._servers.otlp_receivers import OtlpGrpcReceiver, OtlpHttpReceiver

__all__ = [
    "mlflow_file_server",
    "mlflow_server",
    "mlflow_server_factory",
    "mlflow_version",
    "otlp_grpc_receiver",
    "otlp_http_receiver",
]

MlflowServerFactory = Callable[..., MlflowServer]
"""``factory(backend="sqlite", **MlflowServer kwargs) -> started MlflowServer``."""


def _start_timeout() -> float:
    return float(os.environ.get("FLOWTEL_TEST_MLFLOW_START_TIMEOUT", "120"))


@pytest.fixture(scope="session", params=versions(), ids=lambda version: f"mlflow-{version}")
def mlflow_version(request: pytest.FixtureRequest) -> str:
    """The MLflow version the server fixtures of this test run (each supported one in turn)."""
    return str(request.param)


def _server(backend: Backend, root: object, version: str, **kwargs: object) -> MlflowServer:
    return MlflowServer(backend, root, python=python_for(version), version=version, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, mlflow_version: str) -> Iterator[MlflowServer]:
    """A running real MLflow server with a SQLite backend, shared by the whole session."""
    server = _server("sqlite", tmp_path_factory.mktemp("mlflow-sqlite"), mlflow_version)
    server.start(timeout=_start_timeout())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_file_server(tmp_path_factory: pytest.TempPathFactory, mlflow_version: str) -> Iterator[MlflowServer]:
    """A running real MLflow server with the FileStore backend, shared by the whole session."""
    server = _server("file", tmp_path_factory.mktemp("mlflow-file"), mlflow_version)
    server.start(timeout=_start_timeout())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mlflow_server_factory(tmp_path_factory: pytest.TempPathFactory, mlflow_version: str) -> Iterator[MlflowServerFactory]:
    """Factory for dedicated, started MLflow servers; all are stopped at teardown."""
    servers: list[MlflowServer] = []

    def factory(backend: Backend = "sqlite", **kwargs: object) -> MlflowServer:
        server = _server(backend, tmp_path_factory.mktemp(f"mlflow-{backend}"), mlflow_version, **kwargs)
        servers.append(server)
        return server.start(timeout=_start_timeout())

    try:
        yield factory
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[OtlpGrpcReceiver]:
    """A running OTLP/gRPC receiver on 127.0.0.1 (``endpoint`` = ``http://127.0.0.1:<port>``)."""
    with OtlpGrpcReceiver() as receiver:
        yield receiver


@pytest.fixture
def otlp_http_receiver() -> Iterator[OtlpHttpReceiver]:
    """A running OTLP/HTTP receiver on 127.0.0.1 (``endpoint`` = ``.../v1/traces``)."""
    with OtlpHttpReceiver() as receiver:
        yield receiver
