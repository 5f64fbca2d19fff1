"""Credentials are never recorded, in any form they commonly take: parameter names, header
pairs, free text in exception messages and status descriptions. Checked on the bytes of the
store file itself, so no read path can hide a leak."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowtel
from flowtel import _redaction
from flowtel.tracing import _runtime

SECRET = "sk-proj-Zq8fL2mV9xR4tY7uW1eA5sD3gH6jK0"
OTHER_FORMS = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "url_password": "hunter2-the-password",
}


@pytest.fixture
def store_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "t.db"
    monkeypatch.setenv("FLOWTEL_STORE_PATH", str(path))
    _runtime.reset()
    return path


def _stored_bytes(path: Path) -> bytes:
    assert flowtel.flush(30)
    _runtime.reset()  # closes the store: everything is in the main file or its WAL
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.mark.parametrize("name", [
    "openai_key", "anthropic_key", "pwd", "jwt", "auth_header", "private_key_pem", "dsn", "sentry_dsn",
    "stripeKey", "db_password_plain", "basic_auth", "api_keys",
])
def test_parameters_named_like_credentials_are_redacted(store_file: Path, name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"def call({name}, question):\n    return 'answer'", namespace)  # a parameter with that name
    traced = flowtel.trace(namespace["call"])
    traced(SECRET, "what time is it")
    stored = _stored_bytes(store_file)
    assert SECRET.encode() not in stored
    assert b"what time is it" in stored  # the rest is recorded


@pytest.mark.parametrize("shape", [list, tuple])
def test_headers_as_name_value_pairs_are_redacted(store_file: Path, shape: type) -> None:
    @flowtel.trace
    def send(headers: object) -> int:
        return 200

    send([shape(("Authorization", f"Bearer {SECRET}")), shape(("X-Api-Key", SECRET)), shape(("Accept", "json"))])
    stored = _stored_bytes(store_file)
    assert SECRET.encode() not in stored
    assert b"Accept" in stored and b"json" in stored


def test_credentials_inside_exception_messages_are_redacted(store_file: Path) -> None:
    @flowtel.trace
    def call() -> None:
        raise RuntimeError(
            f"request failed: api_key={SECRET} aws={OTHER_FORMS['aws']} token {OTHER_FORMS['github']} "
            f"jwt {OTHER_FORMS['jwt']} db=postgres://bob:{OTHER_FORMS['url_password']}@db:5432/app"
        )

    with pytest.raises(RuntimeError) as raised:
        call()
    assert SECRET in str(raised.value)  # the user's exception passes through unchanged
    stored = _stored_bytes(store_file)
    for secret in [SECRET, *OTHER_FORMS.values()]:
        assert secret.encode() not in stored, secret
    assert b"request failed" in stored


@pytest.mark.parametrize("key", ["primary_key", "cache_key", "sort_key", "keyword", "monkey", "hotkey",
                                 "max_tokens", "author", "passage", "secretary", "key"])
def test_ordinary_names_stay_recorded(key: str) -> None:
    assert not _redaction.is_sensitive_key(key)
