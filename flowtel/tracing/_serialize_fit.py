"""Structure-aware truncation: shrink a converted tree until its JSON encoding fits the
attribute byte limit (the last step of :mod:`flowtel.tracing._serialize`'s slow path)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from flowtel.tracing._serialize_json import (
    _MORE_KEY,
    Json,
    _cut_suffix,
    _encode,
    _encode_str,
    _more_items_marker,
    _unique_key,
    _utf8_len,
)

if TYPE_CHECKING:
    from flowtel.tracing._serialize import _Converter


# --------------------------------------------------------------------------------------------------
# Structure-aware truncation
# --------------------------------------------------------------------------------------------------

_INFINITE: Final = sys.maxsize
_STR_FLOOR: Final = 256  # shrink strings down to this before cutting containers
_ITEM_FLOOR: Final = 8  # shrink containers down to this before shrinking strings further
_ITEM_SEP: Final = 2  # len(", ")
_KEY_SEP: Final = 2  # len(": ")
_FIT_ATTEMPTS: Final = 6
_MIN_CUTTABLE_CHARS: Final = len(_cut_suffix(1, 10))  # "...[truncated 1 of 10 chars]"


class _Fitter:
    """Shrink a converted tree so its encoding fits in ``limit`` bytes, keeping its structure.

    Strings and containers are cut "water-filling" style: a single cap on string length (and, if that
    is not enough, on container length) is binary-searched so that only the largest strings / lists are
    cut, each with a marker. Sizes are estimated from cached per-subtree statistics, then the rendered
    result is encoded and verified; an underestimate just tightens the target and retries.
    """

    def __init__(self, tree: Json, converter: _Converter, limit: int) -> None:
        self.tree = tree
        self.limit = limit
        self.str_cuts = converter.str_cuts
        self.container_cuts = converter.container_cuts
        self._str_bytes: dict[int, int] = {}
        self._stats: dict[int, tuple[int, int, int]] = {}  # id -> (bytes, max str len, max items)

    def fit(self, size: int) -> str:
        """Return JSON within the limit; a size marker if nothing structural fits."""
        target = self.limit
        for _ in range(_FIT_ATTEMPTS):
            caps = self._choose_caps(target)
            if caps is None:
                break
            tree = self._render(self.tree, *caps)
            out = _encode(tree)
            actual = _utf8_len(out)
            if actual <= self.limit:
                return out
            target -= actual - self.limit + 8
        return _encode(f"[truncated {size} bytes]")

    # Cap selection --------------------------------------------------------------------------------

    def _choose_caps(self, target: int) -> tuple[int, int] | None:
        """Largest (string cap, item cap) whose estimated size is within ``target``."""
        _, max_str, max_items = self._node_stats(self.tree)
        stages: tuple[tuple[Callable[[int], tuple[int, int]], int, int], ...] = (
            (lambda c: (c, _INFINITE), _STR_FLOOR, max(max_str, _STR_FLOOR)),
            (lambda c: (_STR_FLOOR, c), _ITEM_FLOOR, max(max_items, _ITEM_FLOOR)),
            (lambda c: (c, _ITEM_FLOOR), 0, _STR_FLOOR),
            (lambda c: (0, c), 0, _ITEM_FLOOR),
        )
        for make_caps, low, high in stages:
            best = self._largest_fitting(make_caps, low, high, target)
            if best is not None:
                return make_caps(best)
        return None

    def _largest_fitting(
        self, make_caps: Callable[[int], tuple[int, int]], low: int, high: int, target: int
    ) -> int | None:
        """Binary search for the largest cap in [low, high] whose estimated size fits."""
        if self._size(self.tree, *make_caps(low)) > target:
            return None
        while low < high:
            middle = (low + high + 1) // 2
            if self._size(self.tree, *make_caps(middle)) <= target:
                low = middle
            else:
                high = middle - 1
        return low

    # Size estimation ------------------------------------------------------------------------------

    def _encoded_str_bytes(self, text: str) -> int:
        """Exact encoded size of a string (quotes and escapes included), cached by identity."""
        size = self._str_bytes.get(id(text))
        if size is None:
            size = _utf8_len(_encode_str(text))
            self._str_bytes[id(text)] = size
        return size

    def _logical_str(self, text: str) -> tuple[str, int]:
        """(kept prefix, original length), looking through a converter truncation marker."""
        return self.str_cuts.get(id(text)) or (text, len(text))

    def _logical_container(self, node: list[Json] | dict[str, Json]) -> tuple[list[Any], int]:
        """(entries without the converter's "more items" marker, original count)."""
        entries: list[Any] = list(node.items()) if type(node) is dict else list(node)
        original = self.container_cuts.get(id(node))
        if original is None:
            return entries, len(entries)
        return entries[:-1], original

    def _node_stats(self, node: Json) -> tuple[int, int, int]:
        """(exact encoded bytes, longest string, largest container) of a subtree, cached."""
        t: type[Any] = type(node)  # tuples too: embedded input
        if t is str:
            length = len(self._logical_str(node)[0])  # type: ignore[arg-type]
            # Strings shorter than any cut marker can never shrink: leaving them out of the stats lets
            # the size estimate skip subtrees made only of them.
            cuttable = length if length > _MIN_CUTTABLE_CHARS else 0
            return self._encoded_str_bytes(node), cuttable, 0  # type: ignore[arg-type]
        if t is not dict and t is not list and t is not tuple:  # tuples: embedded input
            return len(_encode(node)), 0, 0
        cached = self._stats.get(id(node))
        if cached is not None:
            return cached
        # A dict, list or tuple (as ``t`` says: mypy cannot narrow ``node`` through it).
        container: Any = node
        entries, _ = self._logical_container(container)
        size, max_str, max_items = 2 + _ITEM_SEP * max(len(container) - 1, 0), 0, len(entries)
        values = container.values() if t is dict else container
        if t is dict:
            size += sum(self._encoded_str_bytes(k) + _KEY_SEP for k in container)
        for child in values:
            child_size, child_str, child_items = self._node_stats(child)
            size += child_size
            max_str = max(max_str, child_str)
            max_items = max(max_items, child_items)
        stats = (size, max_str, max_items)
        self._stats[id(node)] = stats
        return stats

    def _size(self, node: Json, str_cap: int, item_cap: int) -> int:
        """Estimated encoded bytes of ``node`` rendered with the given caps."""
        full, max_str, max_items = self._node_stats(node)
        if max_str <= str_cap and max_items <= item_cap:
            return full
        if type(node) is str:
            return self._cut_str_bytes(node, str_cap)
        entries, original = self._logical_container(node)  # type: ignore[arg-type]
        kept = entries[:item_cap]
        is_dict = type(node) is dict
        size = 2 + _ITEM_SEP * max(len(kept) - 1, 0)
        for entry in kept:
            if is_dict:
                size += self._encoded_str_bytes(entry[0]) + _KEY_SEP + self._size(entry[1], str_cap, item_cap)
            else:
                size += self._size(entry, str_cap, item_cap)
        if original > len(kept):
            size += len(_more_items_marker(original - len(kept))) + 2 + (_ITEM_SEP if kept else 0)
            size += len(_MORE_KEY) + 2 + _KEY_SEP if is_dict else 0
        return size

    def _cut_str_bytes(self, text: str, cap: int) -> int:
        """Estimated encoded bytes of ``text`` rendered with string cap ``cap``.

        The estimate uses the string's average bytes per char. A string is only cut when that saves
        bytes: cutting a short string would just replace it with a longer marker.
        """
        full = self._encoded_str_bytes(text)
        prefix, original = self._logical_str(text)
        if len(prefix) <= cap:
            return full
        per_char = (self._encoded_str_bytes(prefix) - 2) / max(len(prefix), 1)
        estimate = 2 + math.ceil(cap * per_char) + len(_cut_suffix(original - cap, original))
        return estimate if estimate < full else full

    # Rendering ------------------------------------------------------------------------------------

    def _render(self, node: Json, str_cap: int, item_cap: int) -> Json:
        """Copy of ``node`` with the caps applied; untouched subtrees are shared, not copied."""
        _, max_str, max_items = self._node_stats(node)
        if max_str <= str_cap and max_items <= item_cap:
            return node
        if type(node) is str:
            if self._cut_str_bytes(node, str_cap) >= self._encoded_str_bytes(node):
                return node  # cutting would not make it smaller
            prefix, original = self._logical_str(node)
            return prefix[:str_cap] + _cut_suffix(original - str_cap, original)
        entries, original = self._logical_container(node)  # type: ignore[arg-type]
        kept = entries[:item_cap]
        more = original - len(kept)
        if type(node) is dict:
            out = {key: self._render(child, str_cap, item_cap) for key, child in kept}
            if more > 0:
                out[_unique_key(out, _MORE_KEY, None) if _MORE_KEY in out else _MORE_KEY] = _more_items_marker(more)
            return out
        items = [self._render(child, str_cap, item_cap) for child in kept]
        if more > 0:
            items.append(_more_items_marker(more))
        return items
