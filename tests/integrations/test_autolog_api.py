"""The autolog switches: lazy, idempotent, reversible, clear about missing or unsupported libraries."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import wrapt

import flowtel
from flowtel._exceptions import FlowtelException
from flowtel.integrations import IntegrationNotInstalledError, _registry
from tests._servers.llm import ScriptedLLMServer

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "hi"}]


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _targets() -> list[tuple[type, str]]:
    """Every (class, method) the OpenAI and Anthropic integrations wrap in this SDK version."""
    from flowtel.integrations._shared._patch import import_attr
    from flowtel.integrations.anthropic import _patch as anthropic_patch
    from flowtel.integrations.openai import _patch as openai_patch

    found = []
    for module, cls, method, _kind in openai_patch._TARGETS:
        owner = import_attr(module, cls)
        if owner is not None and method in vars(owner):
            found.append((owner, method))
    for module, cls in anthropic_patch._RESOURCES:
        owner = import_attr(module, cls)
        for method in ("create", "parse", "stream"):
            if owner is not None and method in vars(owner):
                found.append((owner, method))
    return found


def test_import_is_lazy_and_autolog_installs_on_first_import() -> None:
    out = _run_python(
        """
        import sys
        import flowtel
        sdks = ("openai", "anthropic", "langchain_core", "langgraph")
        assert not [m for m in sys.modules if m.split(".")[0] in sdks]
        loaded = [m for m in sys.modules if m.startswith("flowtel.integrations.")]
        assert loaded == ["flowtel.integrations._registry"], loaded
        flowtel.autolog()
        flowtel.anthropic.autolog(disable=True)  # armed, then disarmed before the import
        assert not [m for m in sys.modules if m.split(".")[0] in sdks]
        import wrapt
        import openai
        import anthropic
        from openai.resources.chat.completions import Completions
        from anthropic.resources import Messages
        assert isinstance(vars(Completions)["create"], wrapt.FunctionWrapper)
        assert not isinstance(vars(Messages)["create"], wrapt.FunctionWrapper)
        from langchain_core.tracers.context import _configure_hooks
        from flowtel.integrations.langchain import _patch as langchain_patch
        assert any(hook[0] is langchain_patch._switch for hook in _configure_hooks)
        flowtel.autolog(disable=True)
        assert not isinstance(vars(Completions)["create"], wrapt.FunctionWrapper)
        assert not any(hook[0] is langchain_patch._switch for hook in _configure_hooks)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_autolog_is_idempotent_and_disable_restores_the_originals() -> None:
    pytest.importorskip("openai")
    pytest.importorskip("anthropic")
    targets = _targets()
    originals = {(owner, method): vars(owner)[method] for owner, method in targets}
    assert len(originals) >= 10
    try:
        flowtel.openai.autolog()
        flowtel.openai.autolog()
        flowtel.anthropic.autolog()
        flowtel.autolog()
        for (owner, method), original in originals.items():
            current = vars(owner)[method]
            assert isinstance(current, wrapt.FunctionWrapper), (owner, method)
            assert current.__wrapped__ is original, (owner, method)  # wrapped exactly once
    finally:
        flowtel.autolog(disable=True)
    for (owner, method), original in originals.items():
        assert vars(owner)[method] is original, (owner, method)
    assert not any(_registry.is_patched(name) for name in _registry.INTEGRATIONS)


def test_a_wrapper_kept_past_disable_records_nothing(llm_server: ScriptedLLMServer, openai_client: Any,
                                                     flowtel_traces: Any) -> None:
    flowtel.openai.autolog()
    try:
        raw_create = openai_client.chat.completions.with_raw_response.create  # binds the wrapper
    finally:
        flowtel.openai.autolog(disable=True)
    raw_create(model="gpt-4o-mini", messages=USER).parse()
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=USER)
    assert flowtel_traces.traces == []


def test_explicit_request_for_a_missing_library_raises_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(
        _registry.INTEGRATIONS["openai"], import_name="flowtel_missing_sdk", distribution="flowtel-missing-sdk"
    )
    monkeypatch.setitem(_registry.INTEGRATIONS, "openai", spec)

    with pytest.raises(IntegrationNotInstalledError) as raised:
        flowtel.openai.autolog()
    assert "pip install 'flowtel[openai]'" in str(raised.value)
    assert isinstance(raised.value, ImportError) and isinstance(raised.value, FlowtelException)

    flowtel.autolog()  # every *installed* library: the missing one is skipped quietly
    try:
        assert not _registry.is_enabled("openai")
    finally:
        flowtel.autolog(disable=True)


def test_unsupported_version_is_skipped_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openai")
    spec = dataclasses.replace(_registry.INTEGRATIONS["openai"], min_version=(0, 1), below_version=(1,))
    monkeypatch.setitem(_registry.INTEGRATIONS, "openai", spec)
    from openai.resources.chat.completions import Completions

    with pytest.warns(UserWarning, match=r"does not instrument openai .* \(supported: >=0\.1,<1\)"):
        flowtel.openai.autolog()
    assert not isinstance(vars(Completions)["create"], wrapt.FunctionWrapper)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flowtel.openai.autolog(silent=True)
    assert not _registry.is_enabled("openai")


def test_autolog_exclude_and_its_validation() -> None:
    with pytest.raises(FlowtelException, match="Unknown integration"):
        flowtel.autolog(exclude=["openia"])
    flowtel.autolog(exclude=["openai"])
    try:
        assert not _registry.is_enabled("openai")
        assert _registry.is_enabled("anthropic") and _registry.is_enabled("langchain")
    finally:
        flowtel.autolog(disable=True)


def test_public_api() -> None:
    assert flowtel.openai is importlib.import_module("flowtel.integrations.openai")
    from flowtel import anthropic, langchain

    assert anthropic is importlib.import_module("flowtel.integrations.anthropic")
    assert callable(langchain.autolog) and callable(flowtel.autolog)
    assert {"anthropic", "autolog", "langchain", "openai"} <= set(flowtel.__all__)
    with pytest.raises(AttributeError):
        flowtel.no_such_integration  # noqa: B018
    assert _registry.parse_version("1.2.3rc1") == (1, 2, 3)
    assert _registry.parse_version("v0.3") == (0, 3)
    assert _registry.parse_version("unknown") is None


def test_autolog_includes_litellm_gemini_and_bedrock_lazily() -> None:
    for module in ("litellm.main", "google.genai", "boto3"):
        pytest.importorskip(module)
    out = _run_python(
        """
        import os
        import sys
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import flowtel
        from flowtel.integrations import _registry
        sdks = ("litellm", "google.genai", "boto3", "botocore")
        flowtel.autolog()
        assert not [m for m in sys.modules if m in sdks], "autolog imported an SDK"
        import wrapt
        import litellm
        from google.genai import models
        import boto3
        from botocore.client import BaseClient
        assert all(_registry.is_patched(n) for n in ("litellm", "gemini", "bedrock"))
        assert isinstance(vars(litellm)["completion"], wrapt.FunctionWrapper)
        assert isinstance(vars(models.Models)["generate_content"], wrapt.FunctionWrapper)
        assert isinstance(vars(BaseClient)["_make_api_call"], wrapt.FunctionWrapper)
        flowtel.autolog(disable=True)
        assert not isinstance(vars(litellm)["completion"], wrapt.FunctionWrapper)
        assert not isinstance(vars(models.Models)["generate_content"], wrapt.FunctionWrapper)
        assert not isinstance(vars(BaseClient)["_make_api_call"], wrapt.FunctionWrapper)
        print("ok")
        """
    )
    assert out.strip().splitlines()[-1] == "ok"
