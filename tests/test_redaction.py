"""The one credential-key rule (flowtel._redaction.is_sensitive_key), pinned.

Every place that decides whether a key names a credential (recorded values, SDK call arguments,
headers, free text) uses this function; these lists are the union of what the earlier copies
matched, plus the names that must never be taken for credentials."""

from __future__ import annotations

import pytest

from flowtel import _redaction
from flowtel.integrations._shared import _values
from flowtel.tracing import _serialize

CREDENTIAL_KEYS = [
    # from the recorder's rule
    "api_key", "X-Api-Key", "Authorization", "client_secret", "access_token", "Set-Cookie", "private_key",
    "credentials", "credential", "openai_api_key", "aws_secret_access_key", "passphrase", "secret_key",
    "accessKey", "Ocp-Apim-Subscription-Key", "password", "passwd", "cookie", "cookies", "auth", "token",
    "secret", "refresh_token", "id_token",
    # from the integrations' rule
    "apikey", "proxy_authorization", "x_api_key", "api_token", "set_cookie", "auth_token", "bearer_token",
    "session_token", "x_goog_api_key", "ocp_apim_subscription_key", "azure_ad_token", "my_api_key",
    "db_password", "app_secret",
]
NOT_CREDENTIAL_KEYS = [
    "max_tokens", "max_token", "token_usage", "eos_token", "pad_token", "next_page_token", "input_tokens",
    "completion_tokens", "role", "content", "doc_123", "model", "author", "tokenizer", "", "message",
]


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_credential_names_are_sensitive(key: str) -> None:
    assert _redaction.is_sensitive_key(key)


@pytest.mark.parametrize("key", NOT_CREDENTIAL_KEYS)
def test_ordinary_names_are_not(key: str) -> None:
    assert not _redaction.is_sensitive_key(key)


def test_one_rule_everywhere() -> None:
    assert _serialize.is_sensitive_key is _redaction.is_sensitive_key
    assert _values.is_sensitive_key is _redaction.is_sensitive_key


def test_non_string_keys_are_not_credentials() -> None:
    assert not _redaction.is_sensitive_key(3)  # type: ignore[arg-type]
    assert not _redaction.is_sensitive_key(None)  # type: ignore[arg-type]
