"""Credentials: which keys name one, and redaction of credentials written into free text.

The one rule for the whole package (recorded values, SDK call arguments, headers as mappings or
``(name, value)`` pairs, exception messages): a test pins the names it must and must not match.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["REDACTED", "is_sensitive_key", "redact_text"]

REDACTED: Final[str] = "[REDACTED]"

_NON_ALNUM_RE: Final = re.compile(r"[^0-9a-z]+")

# Matched against the normalised key (lower case, only [0-9a-z]).
_SENSITIVE_EXACT: Final = frozenset({"auth", "token", "secret", "cookie", "cookies", "credential", "credentials"})
_SENSITIVE_SUFFIXES: Final = (
    "apikey",
    "authorization",
    "password",
    "passwd",
    "passphrase",
    "secret",
    "secretkey",
    "privatekey",
    "accesskey",
    "subscriptionkey",  # Azure API Management: Ocp-Apim-Subscription-Key
    "cookie",
    "cookies",
    "credential",
    "credentials",
    "token",
)
_FINAL_CHARS: Final = frozenset(
    char for name in (*_SENSITIVE_EXACT, *_SENSITIVE_SUFFIXES) for char in (name[-1], name[-1].upper())
)
# "<prefix>token" keys that are not credentials: tokenizer special tokens, pagination cursors and
# singular usage counts ("max_token"). Plural usage counts ("max_tokens") never match "token" anyway.
_NON_CREDENTIAL_TOKEN_PREFIXES: Final = frozenset(
    {
        "bos", "eos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end", "special",
        "next", "nextpage", "page", "prev", "previous", "continuation", "cursor", "sync", "pagination",
        "max", "min", "num", "input", "output", "prompt", "completion", "reasoning", "cached", "total",
        "first", "last", "bad", "eot", "image", "audio", "system", "default",
    }
)  # fmt: skip


def is_sensitive_key(key: str) -> bool:
    """Whether values under ``key`` are credentials (case-, ``-``- and ``_``-insensitive).

    Matches names such as ``api_key``, ``X-Api-Key``, ``Authorization``, ``client_secret``,
    ``access_token``, ``Set-Cookie``, ``private_key``, ``credentials`` (also as suffixes, e.g.
    ``openai_api_key``), but not LLM usage counts like ``max_tokens`` / ``token_usage`` or tokenizer
    settings like ``eos_token``.
    """
    try:
        text = key if type(key) is str else str(key)
        last = text[-1:]
        # Every credential name ends in one of these letters: rejects ids like "doc_123" or "role"
        # without normalising (high-cardinality keys defeat the caches, so this must be cheap).
        if last.isascii() and last.isalnum() and last not in _FINAL_CHARS:
            return False
        norm = text.lower().replace("_", "").replace("-", "")
        if not (norm.isascii() and norm.isalnum()):  # the common case needs no regex
            norm = _NON_ALNUM_RE.sub("", norm)
    except Exception:  # noqa: BLE001 - a key whose str() fails is not a credential name
        return False
    if not norm:
        return False
    if norm in _SENSITIVE_EXACT:
        return True
    if not norm.endswith(_SENSITIVE_SUFFIXES):
        return False
    if norm.endswith("token") and not norm.endswith(("accesstoken", "refreshtoken", "idtoken")):
        return norm[: -len("token")] not in _NON_CREDENTIAL_TOKEN_PREFIXES
    return True


# "name=value" / "name: value" inside free text such as a repr; the name decides via is_sensitive_key.
_ASSIGNMENT_RE: Final = re.compile(
    r"""(?P<key>[A-Za-z_][\w.-]*)(?P<sep>['"]?\s*[=:]\s*)"""
    r"""(?:(?P<quote>['"])(?P<quoted>[^'"]*)(?P=quote)|(?P<bare>[^\s'",;)}\]]+))"""
)
_BEARER_RE: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def redact_text(text: str) -> str:
    """Redact credentials written as ``name=value`` / ``name: value`` or ``Bearer ...`` in free text.

    Used for ``str()``/``repr()`` fallbacks of arbitrary objects (e.g. a client whose repr shows its
    api_key); structured values are redacted by key instead.
    """
    if "=" not in text and ":" not in text and "earer" not in text and "asic" not in text:
        return text
    text = _BEARER_RE.sub(lambda m: f"{m[1]} {REDACTED}", text)
    return _ASSIGNMENT_RE.sub(_redact_assignment, text)


def _redact_assignment(match: re.Match[str]) -> str:
    """Replacement for one ``_ASSIGNMENT_RE`` match."""
    if not is_sensitive_key(match["key"]) or REDACTED in match[0]:
        return match[0]
    quote = match["quote"] or ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"
