"""Fixtures for the LLM SDK integration tests: each integration switched on for one test only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import flowtel


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
