"""Every provider follows the recipe of CONTRIBUTING.md ("Adding an integration").

One registry entry (``flowtel/tracing/_providers.py``), one package ``flowtel/integrations/<name>/``
(``autolog``, ``_patch.install/uninstall``, ``_conventions.CONVENTIONS``), one extra in
pyproject.toml, one test folder ``tests/integrations/<name>/``.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from flowtel.integrations import _registry
from flowtel.tracing import _providers

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parent.parent.parent
PROVIDERS = sorted(_providers.PROVIDERS)


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]
    return extras


@pytest.mark.parametrize("name", PROVIDERS)
def test_provider_is_one_package(name: str) -> None:
    spec = _providers.PROVIDERS[name]
    package = importlib.import_module(f"flowtel.integrations.{name}")
    assert callable(package.autolog)
    assert spec.module == f"flowtel.integrations.{name}._patch"
    patch = importlib.import_module(spec.module)
    assert callable(patch.install) and callable(patch.uninstall)
    assert spec.conventions == f"flowtel.integrations.{name}._conventions:CONVENTIONS"
    assert spec.message_format == name
    assert isinstance(_providers.conventions_for(name), _providers.GenAiConventions)


@pytest.mark.parametrize("name", PROVIDERS)
def test_provider_has_its_extra_and_test_folder(name: str) -> None:
    spec = _providers.PROVIDERS[name]
    [requirement] = _extras()[spec.extra]
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement)
    assert match is not None, requirement
    assert match.group(1) == spec.distribution
    assert tuple(int(p) for p in match.group(2).split(".")) == spec.min_version
    assert (ROOT / "tests" / "integrations" / name / f"test_{name}.py").is_file()


def test_the_integration_registry_is_the_provider_registry() -> None:
    assert _registry.INTEGRATIONS is _providers.PROVIDERS


def test_unknown_message_format_has_no_provider_conventions() -> None:
    assert _providers.conventions_for("no-such-format") is None
    assert _providers.conventions_for(None) is None
    assert isinstance(_providers.generic_conventions(), _providers.GenAiConventions)
