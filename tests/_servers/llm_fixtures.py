"""Pytest fixtures around :class:`tests._servers.llm.ScriptedLLMServer`.

Plain fixture functions; make them available from a conftest with e.g.::

    from tests._servers.llm_fixtures import (  # noqa: F401
        anthropic_client, llm_server, openai_client,
    )

Clients built here use ``max_retries=0`` (the SDKs would otherwise retry 408/409/429/5xx answers and
dropped connections, consuming extra scripted answers) and a bounded timeout. Async clients are not
offered as fixtures: an ``httpx`` async pool is bound to the event loop that first used it, so tests
create ``openai.AsyncOpenAI`` / ``anthropic.AsyncAnthropic`` inside their own coroutine (``async with``).
The API keys are distinctive constants so tests can assert that they reached the server (see
``RecordedRequest.headers``) but never appear in recorded traces.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests._servers.llm import ScriptedLLMServer

if TYPE_CHECKING:  # optional dependencies: only imported by the fixtures that need them
    import anthropic
    import openai

__all__ = [
    "CLIENT_TIMEOUT_S",
    "TEST_ANTHROPIC_API_KEY",
    "TEST_OPENAI_API_KEY",
    "anthropic_client",
    "llm_server",
    "openai_client",
]

#: Sent as ``Authorization: Bearer <key>`` by the openai SDK.
TEST_OPENAI_API_KEY = "sk-flowtel-test-openai-key-0123456789abcdef"
#: Sent by the anthropic SDK as ``Authorization: Bearer <key>`` (2.x) or ``x-api-key: <key>`` (older).
TEST_ANTHROPIC_API_KEY = "sk-ant-flowtel-test-anthropic-key-0123456789abcdef"
#: Per-request client timeout (seconds) so a broken server can never hang a test for the SDK default.
CLIENT_TIMEOUT_S = 30.0


@pytest.fixture
def llm_server() -> Iterator[ScriptedLLMServer]:
    """A started :class:`ScriptedLLMServer` on ``127.0.0.1:<free port>``, stopped after the test.

    Teardown fails the test if the server recorded internal errors (a scripted streaming answer hit
    by a non-streaming request, a renderer exception, a handler crash). Leftover scripted answers are
    allowed; call ``llm_server.assert_script_consumed()`` in tests that care.
    """
    server = ScriptedLLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
    errors = server.errors
    if errors:
        pytest.fail("scripted LLM server reported errors:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture
def openai_client(llm_server: ScriptedLLMServer) -> Iterator[openai.OpenAI]:
    """A sync ``openai.OpenAI`` client pointed at :func:`llm_server` (``max_retries=0``)."""
    openai_module = pytest.importorskip("openai")
    client = openai_module.OpenAI(
        base_url=llm_server.openai_base_url,
        api_key=TEST_OPENAI_API_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def anthropic_client(llm_server: ScriptedLLMServer) -> Iterator[anthropic.Anthropic]:
    """A sync ``anthropic.Anthropic`` client pointed at :func:`llm_server` (``max_retries=0``)."""
    anthropic_module = pytest.importorskip("anthropic")
    client = anthropic_module.Anthropic(
        base_url=llm_server.anthropic_base_url,
        api_key=TEST_ANTHROPIC_API_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    try:
        yield client
    finally:
        client.close()
