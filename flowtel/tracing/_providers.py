"""The provider registry: every library flowtel instruments, one entry each.

An entry names everything the rest of flowtel needs to know about a provider, as import strings
resolved lazily (nothing here imports an integration or an SDK):

* the integration registry (``flowtel.integrations._registry``) patches ``module`` when
  ``import_name`` is imported, for ``flowtel.<name>.autolog()`` / ``flowtel.autolog()``;
* the OTLP exporter (``flowtel.exporters.otlp._genai``) asks :func:`conventions_for` how spans
  recorded in the provider's ``mlflow.message.format`` read in GenAI semantic conventions.

It lives below both (exporters and integrations never import each other). Adding a provider is one
entry in :data:`PROVIDERS` plus its package ``flowtel/integrations/<name>/`` (see CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowtel._errors import report_internal_error

__all__ = [
    "GENERIC_CONVENTIONS",
    "GenAiConventions",
    "IntegrationSpec",
    "MessageConverter",
    "PROVIDERS",
    "all_conventions",
    "conventions_for",
    "generic_conventions",
    "semconv_provider_name",
]


@dataclass(frozen=True)
class IntegrationSpec:
    """One supported library.

    Attributes:
        name: Integration name (``flowtel.<name>.autolog``).
        import_name: Top-level module whose import activates the patches.
        distribution: Installed distribution whose version is checked.
        module: flowtel module that implements ``install()`` / ``uninstall()`` (its ``_patch``).
        min_version: Oldest supported version (inclusive).
        below_version: First unsupported major version (exclusive).
        extra: ``pip install 'flowtel[<extra>]'``.
        message_format: The ``mlflow.message.format`` its spans carry, or None.
        conventions: ``"module:attribute"`` of its :class:`GenAiConventions`, or None.
    """

    name: str
    import_name: str
    distribution: str
    module: str
    min_version: tuple[int, ...]
    below_version: tuple[int, ...]
    extra: str
    message_format: str | None = None
    conventions: str | None = None

    def install_hint(self) -> str:
        return f"pip install 'flowtel[{self.extra}]'"

    def supports(self, version: tuple[int, ...]) -> bool:
        return self.min_version <= version < self.below_version

    def range_text(self) -> str:
        return f">={_dotted(self.min_version)},<{_dotted(self.below_version)}"


def _spec(name: str, distribution: str, min_version: tuple[int, ...], below_version: tuple[int, ...], *,
          import_name: str | None = None) -> IntegrationSpec:
    """The entry of a provider laid out as CONTRIBUTING.md says: ``flowtel/integrations/<name>/``
    with ``_patch.py`` and ``_conventions.py``, extra ``<name>``, message format ``<name>``."""
    package = f"flowtel.integrations.{name}"
    return IntegrationSpec(
        name, import_name or name, distribution, f"{package}._patch", min_version, below_version, name,
        message_format=name, conventions=f"{package}._conventions:CONVENTIONS",
    )


PROVIDERS: dict[str, IntegrationSpec] = {
    "openai": _spec("openai", "openai", (1, 40), (4,)),
    "anthropic": _spec("anthropic", "anthropic", (0, 40), (3,)),
    "langchain": _spec("langchain", "langchain-core", (0, 3, 10), (2,), import_name="langchain_core"),
    "litellm": _spec("litellm", "litellm", (1, 60), (2,)),
    "gemini": _spec("gemini", "google-genai", (1, 0), (4,), import_name="google.genai"),
    "bedrock": _spec("bedrock", "boto3", (1, 34), (2,), import_name="boto3"),
}
"""Every provider, in the order ``flowtel.autolog()`` enables them (and conventions are tried)."""

GENERIC_CONVENTIONS = "flowtel.integrations._shared._conventions:CONVENTIONS"
"""Chat messages in MLflow's standard (OpenAI-compatible) shape: the reading of last resort."""

# mlflow.llm.provider values whose GenAI semconv gen_ai.provider.name differs (others: lowercased).
_SEMCONV_PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "google": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}


def semconv_provider_name(provider: str) -> str:
    """``gen_ai.provider.name`` for an ``mlflow.llm.provider`` value."""
    return _SEMCONV_PROVIDER_NAMES.get(provider.lower(), provider.lower())


# -- GenAI semantic conventions ------------------------------------------------------------------
Messages = tuple[list[Any] | None, list[Any] | None]
"""``(system instructions, messages)`` in the semconv "parts" model; None where not recognised."""


@dataclass(frozen=True)
class MessageConverter:
    """One recorded request/response format as semconv messages.

    Attributes:
        inputs: Recorded inputs -> ``(system instructions, input messages)``.
        outputs: Recorded outputs -> output messages, or None when not recognised.
    """

    inputs: Callable[[dict[str, Any]], Messages]
    outputs: Callable[[dict[str, Any]], list[Any] | None]


@dataclass(frozen=True)
class GenAiConventions:
    """How one provider's spans read in OpenTelemetry GenAI semantic conventions.

    Attributes:
        converter: ``(inputs, outputs, claimed) -> MessageConverter | None``. ``claimed``: the span's
            ``mlflow.message.format`` names this provider; otherwise answer only for a shape that
            is unmistakably this provider's.
        finish_reasons: Recorded outputs -> finish reasons; empty when not this provider's shape.
        tool_definition: One tool definition -> its semconv form, or None when not this provider's shape.
    """

    converter: Callable[[Any, Any, bool], MessageConverter | None]
    finish_reasons: Callable[[dict[str, Any]], list[str]]
    tool_definition: Callable[[dict[str, Any]], Any]


_lock = threading.Lock()
_loaded: dict[str, GenAiConventions | None] = {}


def conventions_for(message_format: Any) -> GenAiConventions | None:
    """The conventions of the provider whose spans carry ``message_format``, or None."""
    for spec in PROVIDERS.values():
        if spec.message_format is not None and spec.message_format == message_format and spec.conventions:
            return _load(spec.conventions)
    return None


def all_conventions() -> list[GenAiConventions]:
    """Every provider's conventions, in registry order (those that fail to load are left out)."""
    found = (_load(spec.conventions) for spec in PROVIDERS.values() if spec.conventions)
    return [conventions for conventions in found if conventions is not None]


def generic_conventions() -> GenAiConventions | None:
    """The reading of last resort: chat messages in MLflow's standard shape."""
    return _load(GENERIC_CONVENTIONS)


def _load(target: str) -> GenAiConventions | None:
    try:
        return _loaded[target]
    except KeyError:
        pass
    with _lock:
        try:
            module, _, attribute = target.partition(":")
            loaded: Any = getattr(importlib.import_module(module), attribute)
            conventions = loaded if isinstance(loaded, GenAiConventions) else None
            if conventions is None:
                raise TypeError(f"{target} is not a GenAiConventions")
        except Exception as exc:  # noqa: BLE001 - export goes on without this provider's reading
            report_internal_error(f"provider conventions {target}", exc)
            conventions = None
        _loaded[target] = conventions
        return conventions


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)
