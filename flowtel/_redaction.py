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
_SENSITIVE_EXACT: Final = frozenset({
    "auth", "token", "secret", "cookie", "cookies", "credential", "credentials", "pwd", "jwt", "dsn",
})
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
    "pwd",  # db_pwd
    "jwt",  # id_jwt, user_jwt
    "dsn",  # sentry_dsn, database_dsn: URLs with a password or key inside
    "auth",  # basic_auth, http_auth, proxy_auth
    "authheader",
    "authheaders",
    "connectionstring",
    "apikeys",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "servicekey",
    "licensekey",
    "webhooksecret",
)
# Found anywhere in the key: private_key_pem, password_plain, openai_api_key_2, client_secret_b64.
_SENSITIVE_PARTS: Final = ("privatekey", "password", "apikey", "secretkey", "accesskey", "clientsecret")
# "<vendor>_key" (openai_key, anthropic_key, stripe_key) names a credential, unless the prefix says
# it is a lookup key of some kind.
_NON_CREDENTIAL_KEY_PREFIXES: Final = frozenset({
    "primary", "foreign", "sort", "cache", "partition", "dict", "idempotency", "public", "row", "hash",
    "lookup", "map", "group", "unique", "composite", "index", "object", "storage", "s3", "bucket",
    "translation", "i18n", "message", "state", "attribute", "metadata", "config", "setting", "field",
    "column", "entity", "item", "record", "table", "tag", "label", "name", "shard", "routing", "dedup",
    "dedupe", "cursor", "page", "dataset", "feature", "join", "hot", "short", "sub", "parent", "child",
    "node", "redis", "kv", "registry", "context", "event", "doc", "document", "file", "path", "result",
    "task", "job", "run", "trace", "span", "experiment", "model", "prompt", "input", "output", "target",
    "source", "cluster", "region", "zone", "music", "piano", "sign", "distinct", "natural", "surrogate",
    "grouping", "ordering", "order", "query", "search", "filter", "match", "key", "next", "prev", "last",
    "first", "start", "end", "min", "max", "id",
})  # fmt: skip
_SEPARATED_KEY_RE: Final = re.compile(r"(?:^|.*?)([A-Za-z0-9]+)(?:[_\-.\s]key|Key)$")
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
        if last.isascii() and last.isalnum() and last not in _FINAL_CHARS and not _has_part_stem(text):
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
    if any(part in norm for part in _SENSITIVE_PARTS):
        return True
    if last in "yY" and _vendor_key(text):
        return True
    if not norm.endswith(_SENSITIVE_SUFFIXES):
        return False
    if norm.endswith("token") and not norm.endswith(("accesstoken", "refreshtoken", "idtoken")):
        return norm[: -len("token")] not in _NON_CREDENTIAL_TOKEN_PREFIXES
    return True


def _has_part_stem(text: str) -> bool:
    """Whether one of ``_SENSITIVE_PARTS`` may occur (those need not end the key)."""
    lowered = text.lower()
    return "key" in lowered or "pass" in lowered or "secret" in lowered


def _vendor_key(text: str) -> bool:
    """``openai_key``, ``anthropicKey``: a word and a separate "key" naming a credential."""
    match = _SEPARATED_KEY_RE.match(text)
    return match is not None and match[1].lower() not in _NON_CREDENTIAL_KEY_PREFIXES


# "name=value" / "name: value" inside free text such as a repr; the name decides via is_sensitive_key.
_ASSIGNMENT_RE: Final = re.compile(
    r"""(?P<key>[A-Za-z_][\w.-]*)(?P<sep>['"]?\s*[=:]\s*)"""
    r"""(?:(?P<quote>['"])(?P<quoted>[^'"]*)(?P=quote)|(?P<bare>[^\s'",;)}\]]+))"""
)
_BEARER_RE: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# Credentials recognisable by their shape alone, wherever they appear: OpenAI / Anthropic keys
# (sk-...), AWS access key ids, GitHub and Slack tokens, Google API keys, JWTs.
_TOKEN_SHAPES_RE: Final = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{30,}|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
# scheme://user:password@host: the password part.
_URL_PASSWORD_RE: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)(?P<at>@)")


def redact_text(text: str) -> str:
    """Redact credentials written as ``name=value`` / ``name: value`` or ``Bearer ...`` in free text.

    Used for ``str()``/``repr()`` fallbacks of arbitrary objects (e.g. a client whose repr shows its
    api_key); structured values are redacted by key instead.
    """
    if ("sk-" in text or "AKIA" in text or "eyJ" in text or "gh" in text or "xox" in text
            or "AIza" in text):
        text = _TOKEN_SHAPES_RE.sub(REDACTED, text)
    if "=" not in text and ":" not in text and "earer" not in text and "asic" not in text:
        return text
    if "://" in text:
        text = _URL_PASSWORD_RE.sub(lambda m: f"{m['head']}{REDACTED}{m['at']}", text)
    text = _BEARER_RE.sub(lambda m: f"{m[1]} {REDACTED}", text)
    return _ASSIGNMENT_RE.sub(_redact_assignment, text)


def _redact_assignment(match: re.Match[str]) -> str:
    """Replacement for one ``_ASSIGNMENT_RE`` match."""
    if not is_sensitive_key(match["key"]) or REDACTED in match[0]:
        return match[0]
    quote = match["quote"] or ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"
