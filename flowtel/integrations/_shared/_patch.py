"""Installing ``wrapt`` wrappers on SDK classes and putting the originals back exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wrapt

from flowtel._errors import report_internal_error

__all__ = ["Patcher", "import_attr"]


class Patcher:
    """Wraps methods with ``wrapt`` and puts the original class attributes back on :meth:`restore`.

    Only attributes defined on the class itself are wrapped: wrapping an inherited method on a
    subclass would record one call twice.
    """

    def __init__(self, library: str) -> None:
        self.library = library
        self._originals: list[tuple[type, str, Any]] = []

    def __len__(self) -> int:
        return len(self._originals)

    def wrap(self, owner: type | None, attribute: str, wrapper: Callable[..., Any]) -> bool:
        if owner is None or attribute not in vars(owner):
            return False
        if any(o is owner and a == attribute for o, a, _ in self._originals):
            return False
        original = vars(owner)[attribute]
        wrapt.wrap_function_wrapper(owner, attribute, wrapper)
        self._originals.append((owner, attribute, original))
        return True

    def restore(self) -> None:
        while self._originals:
            owner, attribute, original = self._originals.pop()
            try:
                setattr(owner, attribute, original)
            except Exception as exc:  # noqa: BLE001 - one stuck attribute must not keep the others patched
                report_internal_error(f"{self.library} unpatch {owner.__name__}.{attribute}", exc)


def import_attr(module: str, *names: str) -> Any:
    """``module.names[0].names[1]...`` or None when the SDK version does not have it."""
    try:
        obj: Any = __import__(module, fromlist=["_"])
    except ImportError:
        return None
    for name in names:
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj
