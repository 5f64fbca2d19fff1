"""Auto-instrumentation of LLM SDKs: ``flowtel.autolog()`` and ``flowtel.<library>.autolog()``.

* ``openai`` (``openai`` >=1.40,<4): chat.completions create/parse/stream, responses
  create/parse/stream, legacy completions, embeddings.
* ``anthropic`` (``anthropic`` >=0.40,<3): messages create (also ``stream=True``), ``stream()``,
  parse; the same on ``beta.messages``.
* ``langchain`` (``langchain-core`` >=0.3.10,<2): chains, chat models, LLMs, tools, retrievers,
  agents, LangGraph graphs. (0.3.10 is the first to run inline async callbacks in the run's own
  context, which nesting and one-span-per-LLM-call rely on.)
* ``litellm`` (``litellm`` >=1.60,<2): ``completion`` / ``acompletion`` / ``embedding`` /
  ``aembedding``, streaming or not; one span per call even when LiteLLM goes through an
  instrumented SDK underneath.
* ``gemini`` (``google-genai`` >=1.0,<4): ``models.generate_content`` / ``generate_content_stream``
  / ``embed_content``, sync and ``client.aio``; chats go through them.
* ``bedrock`` (``boto3`` >=1.34,<2): ``bedrock-runtime`` ``converse`` / ``converse_stream`` /
  ``invoke_model`` / ``invoke_model_with_response_stream``, every client.

Importing flowtel imports none of these libraries: an integration that is switched on before its
library is imported installs itself when the library is imported.
"""

from __future__ import annotations

from collections.abc import Iterable

from flowtel._exceptions import InvalidParameterError
from flowtel.integrations._registry import (
    INTEGRATIONS,
    IntegrationNotInstalledError,
    set_enabled,
)

__all__ = ["IntegrationNotInstalledError", "autolog"]


def autolog(disable: bool = False, *, exclude: Iterable[str] = (), silent: bool = False) -> None:
    """Trace every supported LLM library that is installed (OpenAI, Anthropic, LangChain, LiteLLM...).

    Libraries that are not installed are skipped quietly; an installed library whose version is
    not supported is skipped with a warning. Idempotent; ``disable=True`` switches every
    integration off again and restores the libraries' original methods. Lazy: nothing is imported
    until the user's program imports the library.

    Args:
        disable: Switch the integrations off instead.
        exclude: Integration names to leave alone (``"openai"``, ``"anthropic"``, ``"langchain"``,
            ``"litellm"``...).
        silent: Do not warn about unsupported library versions.

    Raises:
        InvalidParameterError: ``exclude`` names an unknown integration.
    """
    excluded = set(exclude)
    unknown = excluded - set(INTEGRATIONS)
    if unknown:
        raise InvalidParameterError(
            f"Unknown integration(s) {sorted(unknown)}; choose from {sorted(INTEGRATIONS)}."
        )
    for name in INTEGRATIONS:
        if name not in excluded:
            set_enabled(name, not disable, explicit=False, silent=silent)
