"""Which service an OpenAI SDK client talks to, from its ``base_url``: ``mlflow.llm.provider``.

Groq, Ollama, DeepSeek, Mistral, Together, Fireworks, OpenRouter, xAI, Azure OpenAI, vLLM and
LM Studio all speak the OpenAI wire format, so the OpenAI integration traces them as they are; only
the provider name differs. It is read from :data:`BUILTIN_PROVIDERS` (host or host suffix, optional
port), after the rules added with :func:`register_provider`, which win. Provider names are LiteLLM's
(``together_ai``, ``fireworks_ai``, ...), so the same service is named alike through either library.
Any other address is ``openai``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flowtel._exceptions import InvalidParameterError

__all__ = ["BUILTIN_PROVIDERS", "ProviderRule", "provider_for", "register_provider", "reset_providers"]

DEFAULT_PROVIDER = "openai"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1", "host.docker.internal")


@dataclass(frozen=True)
class ProviderRule:
    """``host`` (exact) or ``.suffix`` (any host ending with it), optionally only on ``port``."""

    host: str
    provider: str
    port: int | None = None

    def matches(self, host: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("."):
            return host.endswith(self.host) or host == self.host[1:]
        return host == self.host


def _local(port: int, provider: str) -> tuple[ProviderRule, ...]:
    return tuple(ProviderRule(host, provider, port) for host in _LOCAL_HOSTS)


BUILTIN_PROVIDERS: tuple[ProviderRule, ...] = (
    ProviderRule("api.openai.com", "openai"),
    ProviderRule(".openai.azure.com", "azure"),
    ProviderRule(".cognitiveservices.azure.com", "azure"),
    ProviderRule(".services.ai.azure.com", "azure"),
    ProviderRule("api.groq.com", "groq"),
    ProviderRule("api.deepseek.com", "deepseek"),
    ProviderRule("api.mistral.ai", "mistral"),
    ProviderRule("api.together.xyz", "together_ai"),
    ProviderRule("api.together.ai", "together_ai"),
    ProviderRule("api.fireworks.ai", "fireworks_ai"),
    ProviderRule("openrouter.ai", "openrouter"),
    ProviderRule("api.x.ai", "xai"),
    ProviderRule("generativelanguage.googleapis.com", "gemini"),  # Gemini's OpenAI-compatible endpoint
    ProviderRule("api.perplexity.ai", "perplexity"),
    # local servers, on their default ports
    *_local(11434, "ollama"),
    *_local(8000, "vllm"),
    *_local(1234, "lm_studio"),
)
"""The built-in table, first match wins (after :func:`register_provider`'s rules)."""

_lock = threading.Lock()
_user_rules: list[ProviderRule] = []
_cache: dict[str, str] = {}
_CACHE_LIMIT = 256


def register_provider(host: str, provider: str, *, port: int | None = None) -> None:
    """Record calls to ``host`` (a host name, ``.suffix`` for every host under it, or a URL) as ``provider``.

    Rules registered here win over the built-in table and over each other in reverse order (the
    latest first). Thread-safe.

    Raises:
        InvalidParameterError: ``host`` or ``provider`` is empty, or ``port`` is not a TCP port.
    """
    if not isinstance(provider, str) or not provider.strip():
        raise InvalidParameterError(f"provider must be a non-empty string, got {provider!r}.")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise InvalidParameterError(f"port must be a TCP port number, got {port!r}.")
    name, url_port = _host_and_port(host) if isinstance(host, str) and "://" in host else (host, None)
    if not isinstance(name, str) or not name.strip(". "):
        raise InvalidParameterError(f"host must be a host name, '.suffix' or URL, got {host!r}.")
    rule = ProviderRule(name.strip().lower(), provider.strip(), port if port is not None else url_port)
    with _lock:
        _user_rules.insert(0, rule)
        _cache.clear()


def reset_providers() -> None:
    """Forget every rule added with :func:`register_provider`."""
    with _lock:
        _user_rules.clear()
        _cache.clear()


def provider_for(client: Any) -> str:
    """``mlflow.llm.provider`` of an OpenAI SDK client (``azure`` for Azure clients, else by base URL)."""
    if "Azure" in type(client).__name__:
        return "azure"
    base_url = getattr(client, "base_url", None)
    if base_url is None:
        return DEFAULT_PROVIDER
    key = str(base_url)
    found = _cache.get(key)
    if found is None:
        found = _lookup(*_host_and_port(key))
        with _lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[key] = found
    return found


def _lookup(host: str, port: int | None) -> str:
    for rule in (*_user_rules, *BUILTIN_PROVIDERS):
        if rule.matches(host, port):
            return rule.provider
    return DEFAULT_PROVIDER


def _host_and_port(url: str) -> tuple[str, int | None]:
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # not a URL (a malformed IPv6 host): no rule matches
        return "", None
    try:
        return host, parts.port
    except ValueError:  # a malformed port: match on the host alone
        return host, None
