"""The integrations flowtel ships, and switching them on and off lazily.

Switching an integration on never imports its SDK: if the SDK is already imported it is patched
at once, otherwise a post-import hook (``wrapt.register_post_import_hook``) patches it the moment
the user's program imports it. Switching off removes the patches (or, before the import, disarms
the hook). Every operation is idempotent and thread-safe.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
import sys
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Protocol, cast

from flowtel._errors import report_internal_error
from flowtel._exceptions import FlowtelException
from flowtel.tracing._providers import PROVIDERS, IntegrationSpec

__all__ = [
    "INTEGRATIONS",
    "IntegrationNotInstalledError",
    "IntegrationSpec",
    "is_enabled",
    "is_patched",
    "set_enabled",
]

_logger = logging.getLogger("flowtel")


class IntegrationNotInstalledError(FlowtelException, ModuleNotFoundError):
    """An integration was requested explicitly but its library is not installed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "INVALID_PARAMETER_VALUE", 400)


INTEGRATIONS: dict[str, IntegrationSpec] = PROVIDERS
"""Every integration, in the order ``flowtel.autolog()`` enables them: the provider registry
(``flowtel.tracing._providers``), one entry per provider."""


class _Implementation(Protocol):
    """An integration's ``_patch`` module."""

    def install(self) -> None: ...

    def uninstall(self) -> None: ...


class _State:
    __slots__ = ("wanted", "hooked", "patched")

    def __init__(self) -> None:
        self.wanted = False
        self.hooked = False
        self.patched = False


_lock = threading.RLock()
_states: dict[str, _State] = {}


def set_enabled(name: str, enabled: bool, *, explicit: bool = True, silent: bool = False) -> bool:
    """Switch one integration on or off; True when it is (or will be, on import) active.

    Raises:
        IntegrationNotInstalledError: ``explicit`` and the library is not installed.
    """
    spec = INTEGRATIONS[name]
    with _lock:
        state = _states.setdefault(name, _State())
        if not enabled:
            state.wanted = False
            _unpatch(spec, state)
            return False
        if not _installed(spec):
            if explicit:
                raise IntegrationNotInstalledError(
                    f"flowtel.{name}.autolog() needs the '{spec.distribution}' package, which is not "
                    f"installed: {spec.install_hint()}"
                )
            _logger.debug("flowtel: %s is not installed; its integration stays off.", spec.distribution)
            return False
        if not _version_supported(spec, silent=silent):
            return False
        state.wanted = True
        if spec.import_name in sys.modules:
            _patch(spec, state)
        elif not state.hooked:
            import wrapt

            wrapt.register_post_import_hook(_hook_for(name), spec.import_name)
            state.hooked = True
        return True


def is_enabled(name: str) -> bool:
    """Whether the integration is switched on (patched now, or armed for the import)."""
    state = _states.get(name)
    return state is not None and state.wanted


def is_patched(name: str) -> bool:
    """Whether the library's methods are currently wrapped."""
    state = _states.get(name)
    return state is not None and state.patched


def _hook_for(name: str) -> Callable[[ModuleType], None]:
    def on_import(module: ModuleType) -> None:
        del module
        spec = INTEGRATIONS[name]
        with _lock:
            state = _states.setdefault(name, _State())
            if state.wanted:
                _patch(spec, state)

    return on_import


def _patch(spec: IntegrationSpec, state: _State) -> None:
    if state.patched:
        return
    try:
        implementation = cast(_Implementation, importlib.import_module(spec.module))
        implementation.install()
        state.patched = True
    except Exception as exc:  # noqa: BLE001 - an SDK we cannot patch must not break the user's import
        report_internal_error(f"{spec.name} integration install", exc)
        try:
            cast(_Implementation, importlib.import_module(spec.module)).uninstall()
        except Exception as inner:  # noqa: BLE001 - same reason; leave the SDK as it is
            report_internal_error(f"{spec.name} integration uninstall", inner)


def _unpatch(spec: IntegrationSpec, state: _State) -> None:
    if not state.patched:
        return
    state.patched = False
    try:
        cast(_Implementation, importlib.import_module(spec.module)).uninstall()
    except Exception as exc:  # noqa: BLE001 - disabling must not raise into the user's program
        report_internal_error(f"{spec.name} integration uninstall", exc)


# -- installed library and version ---------------------------------------------------------------
def _installed(spec: IntegrationSpec) -> bool:
    if sys.modules.get(spec.import_name) is not None:
        return True
    try:
        return importlib.util.find_spec(spec.import_name) is not None
    except (ImportError, ValueError):
        return False


def _version_supported(spec: IntegrationSpec, *, silent: bool) -> bool:
    try:
        raw = importlib.metadata.version(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        return True  # importable without metadata (vendored, source checkout): nothing to check
    version = parse_version(raw)
    if version is None or spec.supports(version):
        return True
    message = (
        f"flowtel does not instrument {spec.distribution} {raw} (supported: {spec.range_text()}); "
        f"the {spec.name} integration stays off."
    )
    if silent:
        _logger.debug(message)
    else:
        warnings.warn(message, UserWarning, stacklevel=4)
    return False


_VERSION_RE = re.compile(r"\d+(?:\.\d+)*")


def parse_version(text: str) -> tuple[int, ...] | None:
    """Leading numeric release of a version string: ``"1.2.3rc1"`` -> ``(1, 2, 3)``."""
    match = _VERSION_RE.match(text.strip().lstrip("vV"))
    return tuple(int(part) for part in match.group(0).split(".")) if match else None
