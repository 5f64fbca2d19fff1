"""Snapshot arbitrary Python values as JSON span attribute values (MLflow encoding).

Every span attribute flowtel records is a JSON string, produced like MLflow's
``dump_span_attribute_value`` (``json.dumps(value, ensure_ascii=False)`` with default separators).
This runs on the user's hot path inside ``@flowtel.trace``, so it has two paths:

* **Fast path** -- a value made only of exact ``dict`` (str keys) / ``list`` / ``tuple`` / ``str`` /
  ``int`` / ``float`` / ``bool`` / ``None`` that is within every limit, has no credential-like keys and
  no base64 media is encoded directly by the C JSON encoder. A cheap pre-scan proves those conditions;
  the output is byte-identical to ``json.dumps(value, ensure_ascii=False)``.
* **Slow path** -- everything else goes through :class:`_Converter`, which builds a fresh tree of plain
  JSON types (applying redaction, media replacement, per-string / per-container / depth limits, cycle
  detection), then :class:`_Fitter` shrinks that tree structurally if the encoding is still larger
  than ``max_attribute_bytes``.

Rooms: this module (public API, key classification, fast path, :class:`_Converter`),
:mod:`~flowtel.tracing._serialize_json` (the reusable C encoder, truncation markers),
:mod:`~flowtel.tracing._serialize_media` (binary / base64 media detection and markers),
:mod:`~flowtel.tracing._serialize_fit` (:class:`_Fitter`).

Neither function raises (``Exception`` subclasses are all turned into markers; ``KeyboardInterrupt``
and ``SystemExit`` are deliberately left alone). Only the standard library is imported: pydantic,
numpy, pandas, attrs and SDK types are recognised by duck typing and ``sys.modules`` lookups, so
importing flowtel never imports them.

Decisions (kept in one place so reviewers can find them):

* **NaN / Infinity** are emitted as the bare tokens ``NaN`` / ``Infinity`` / ``-Infinity`` exactly like
  ``json.dumps`` and MLflow, so flowtel and MLflow produce identical attribute strings. Python's
  ``json.loads`` (and MLflow) read them back; strict parsers such as JavaScript's ``JSON.parse`` do not.
* **SDK sentinels** (OpenAI / Anthropic ``NOT_GIVEN`` / ``omit``, recognised by the class names
  ``NotGiven`` and ``Omit``) mean "argument not supplied": they are *dropped* from mappings and rendered
  as ``null`` anywhere else (top level, inside lists).
* **Redaction**: a value under a credential-like key (see :func:`is_sensitive_key`) becomes
  :data:`REDACTED`, at any depth. ``None`` is kept as ``null`` because it reveals no secret and "the key
  was unset" is useful when debugging.
* **Binary data** is replaced by a readable string marker (so a value keeps its JSON shape, a scalar stays
  a scalar): ``"[binary 123 bytes]"`` or, when the content type is known or sniffed from magic bytes,
  ``"[binary image/png 123456 bytes]"``. This covers ``bytes``/``bytearray``/``memoryview``, base64
  data URIs anywhere (``data:image/png;base64,...``), strings under ``b64_json`` and base64 ``data``
  under a media-looking mapping (Anthropic ``{"type": "base64", "media_type": ..., "data": ...}``,
  OpenAI ``input_audio.data``, Gemini ``inline_data``). Key-based detection only applies to strings of
  at least 256 characters that are pure base64. With ``capture_binary=True`` media strings are kept
  and bytes are recorded as standard base64 text.
* **Markers** (all plain strings so the output is still ordinary JSON):
  ``"<cycle>"``; ``"<max depth exceeded: dict>"``; a final list element ``"[... N more items]"`` or a
  final mapping entry ``"...": "[... N more items]"``; a string suffix
  ``"...[truncated N of M chars]"``; ``"<generator object name>"`` (iterators are never consumed);
  ``"<unserializable module.Type>"`` when converting an object failed.
* Other types: pydantic v2 ``model_dump(mode="json")`` (falling back to python mode, then to the
  declared fields), pydantic v1 ``dict()``, dataclasses / attrs / namedtuples as field dicts (shallow,
  no ``deepcopy``), enums by value, ``datetime``/``date``/``time`` as ISO 8601, ``timedelta`` as an ISO
  8601 duration like pydantic (``"P1DT1.5S"``, but days are never folded into years), ``UUID`` and
  ``Decimal`` as strings (exact), sets as sorted lists when sortable, non-string mapping keys as they
  would be by ``json.dumps`` (``1`` -> ``"1"``, ``None`` -> ``"null"``) or ``str(key)``, numpy arrays via
  ``tolist`` (row-limited) and numpy scalars via ``item``, pandas ``DataFrame`` as records and
  ``Series`` as a list (default index) or mapping, objects with ``model_dump`` / ``to_dict`` /
  ``__json__``; anything else as ``str(obj)`` like MLflow.
* Lone surrogates in strings are replaced by U+FFFD so the attribute is valid UTF-8 (OTLP requires it).
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as _dt
import decimal
import enum
import heapq
import itertools
import json
import json.encoder
import logging
import math
import sys
import types
import uuid
from collections import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowtel._redaction import REDACTED, is_sensitive_key, redact_text
from flowtel.tracing._serialize_fit import _Fitter
from flowtel.tracing._serialize_json import (
    _MORE_KEY,
    Json,
    _cut_suffix,
    _encode,
    _more_items_marker,
    _unique_key,
    _utf8_len,
)
from flowtel.tracing._serialize_media import (
    _MEDIA_MIN_CHARS,
    _data_uri_marker,
    _keyed_media_marker,
    _media,
    _mime_from_magic,
    binary_marker,
)

__all__ = [
    "CYCLE_MARKER",
    "DEFAULT_LIMITS",
    "REDACTED",
    "CaptureLimits",
    "binary_marker",
    "dump_json",
    "is_sensitive_key",
    "redact_text",
    "to_jsonable",
]

_logger = logging.getLogger(__name__)


CYCLE_MARKER: Final[str] = "<cycle>"

# Smallest max_attribute_bytes accepted: the last-resort marker must always fit.
_MIN_ATTRIBUTE_BYTES: Final[int] = 64
# Converter recursion uses a few Python frames per level; keep well inside the default limit.
_MAX_DEPTH_LIMIT: Final[int] = 256


@dataclass(frozen=True)
class CaptureLimits:
    """Bounds applied when recording a value as a span attribute.

    Attributes:
        max_attribute_bytes: Maximum UTF-8 size of one JSON-encoded attribute value.
        max_depth: Maximum number of nested containers; deeper ones become a marker.
        max_items: Maximum entries kept per list / mapping / set.
        max_string_chars: Maximum characters kept per individual string.
        max_nodes: Maximum values visited per attribute in total; bounds the time spent on huge or
            exponentially shared structures (what is left out is marked like other cut items).
        redact: Replace values under credential-like keys with :data:`REDACTED`.
        capture_binary: Keep bytes / base64 media (as base64 text) instead of a size marker.
        extract_attachments: Instead of a size marker, take bytes / base64 media out as a trace
            attachment and record its ``mlflow-attachment://`` reference (span inputs and
            outputs, as MLflow does; ``capture_binary`` wins).
        max_attachment_bytes: Attachments larger than this are dropped with a marker (0: no cap).
    """

    max_attribute_bytes: int = 1_000_000
    max_depth: int = 32
    max_items: int = 10_000
    max_string_chars: int = 100_000
    max_nodes: int = 200_000
    redact: bool = True
    capture_binary: bool = False
    extract_attachments: bool = False
    max_attachment_bytes: int = 0

    def __post_init__(self) -> None:
        """Reject nonsensical limits early with a clear message (bad config must fail loudly)."""
        minimums = {
            "max_attribute_bytes": _MIN_ATTRIBUTE_BYTES,
            "max_depth": 1,
            "max_items": 1,
            "max_string_chars": 1,
            "max_nodes": 1,
        }
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if type(value) is not int:
                raise TypeError(f"CaptureLimits.{name} must be an int, got {type(value).__name__}")
            if value < minimum:
                raise ValueError(f"CaptureLimits.{name} must be >= {minimum}, got {value}")
        if self.max_depth > _MAX_DEPTH_LIMIT:
            raise ValueError(f"CaptureLimits.max_depth must be <= {_MAX_DEPTH_LIMIT}, got {self.max_depth}")
        if type(self.max_attachment_bytes) is not int or self.max_attachment_bytes < 0:
            raise ValueError(f"CaptureLimits.max_attachment_bytes must be an int >= 0, got {self.max_attachment_bytes!r}")
        for name in ("redact", "capture_binary", "extract_attachments"):
            if type(getattr(self, name)) is not bool:
                raise TypeError(f"CaptureLimits.{name} must be a bool")


DEFAULT_LIMITS: Final[CaptureLimits] = CaptureLimits()


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def dump_json(value: object, limits: CaptureLimits = DEFAULT_LIMITS) -> str:
    """Return ``value`` as a JSON string suitable for a span attribute. Never raises.

    The result is valid JSON (with MLflow's ``NaN``/``Infinity`` tokens for non-finite floats), valid
    UTF-8, at most ``limits.max_attribute_bytes`` bytes, and for plain in-limit values identical to
    ``json.dumps(value, ensure_ascii=False)``.
    """
    try:
        fast = _fast_dump(value, limits)
        if fast is not None:
            return fast
        return _slow_dump(value, limits)
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's program
        return _encode(_failure_marker(value, exc))


def to_jsonable(value: object, limits: CaptureLimits = DEFAULT_LIMITS) -> Json:
    """Return a snapshot of ``value`` made of fresh dict/list/str/int/float/bool/None. Never raises.

    Exactly the value :func:`dump_json` encodes (``json.dumps(to_jsonable(v), ensure_ascii=False)
    == dump_json(v)``, NaN aside), sharing no mutable object with ``value``.
    """
    try:
        # Re-parsing in C is both the cheapest deep copy and a guarantee of consistency with
        # dump_json (whose trees may share plain, already-valid subtrees with the input).
        return json.loads(dump_json(value, limits))  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - tracing must never break the user's program
        return _failure_marker(value, exc)


# --------------------------------------------------------------------------------------------------
# Credential-like keys
# --------------------------------------------------------------------------------------------------

# Key kinds, cached per key string because payload keys repeat constantly ("role", "content").
_KIND_PLAIN: Final = 0
_KIND_SENSITIVE: Final = 1
_KIND_MEDIA: Final = 2  # may hold base64 media: decided with the value and sibling keys
_MEDIA_KEYS: Final = frozenset({"data", "b64_json"})
_KEY_KIND_CACHE: dict[str, int] = {}
_KEY_KIND_CACHE_MAX: Final = 4096


def _key_kind(key: str) -> int:
    """Classify a (string) mapping key; memoised for keys seen before."""
    kind = _KEY_KIND_CACHE.get(key)
    if kind is None:
        if is_sensitive_key(key):
            kind = _KIND_SENSITIVE
        elif key in _MEDIA_KEYS:
            kind = _KIND_MEDIA
        else:
            kind = _KIND_PLAIN
        # Bounded so payloads keyed by ids cannot grow the cache without limit.
        if len(_KEY_KIND_CACHE) < _KEY_KIND_CACHE_MAX:
            _KEY_KIND_CACHE[key] = kind
    return kind


# --------------------------------------------------------------------------------------------------
# Fast path
# --------------------------------------------------------------------------------------------------


_SCALAR_TYPES: Final = frozenset({str, int, float, bool, type(None)})
# Exact-str keys already classified as ordinary (not credential-like, not media) and short enough for
# any sensible max_string_chars; checked as a whole with one C-level set.issuperset() per dict.
_PLAIN_KEYS: set[str] = set()
_PLAIN_KEYS_MAX: Final = 4096
_PLAIN_KEY_MAX_CHARS: Final = 64


def _fast_dump(value: object, limits: CaptureLimits) -> str | None:
    """Encode a plain, in-limit value directly; ``None`` means "take the slow path"."""
    t = type(value)
    try:
        if t is dict or t is list or t is tuple:
            if _scan(value, 0, min(limits.max_attribute_bytes, limits.max_nodes), limits) < 0:
                return None
        elif t is str:
            if len(value) > limits.max_string_chars:  # type: ignore[arg-type]
                return None
        elif t not in _SCALAR_TYPES:
            return None
        out = _encode(value)
    except Exception:  # noqa: BLE001 - huge ints, hostile key __eq__, concurrent mutation: slow path
        return None
    # One C-level substring search over the output is far cheaper than a check per string. Only
    # base64 data URIs are replaced, and each contains ";base64,"; false positives just cost a
    # slow-path run.
    if not limits.capture_binary and ";base64," in out:
        return None
    try:
        size = _utf8_len(out)
    except UnicodeEncodeError:  # lone surrogates: the slow path repairs them
        return None
    return out if size <= limits.max_attribute_bytes else None


def _scan(value: Any, depth: int, budget: int, limits: CaptureLimits) -> int:
    """Check that a dict/list/tuple tree can be encoded as is.

    Returns the remaining node budget, or -1 when the slow path is required: a non-plain type
    (subclasses included, e.g. namedtuples or enums), a limit exceeded, a credential-like key,
    possible base64 media under a media key, or -- via the depth bound -- a cycle. The budget bounds
    the work (ours and the encoder's) for huge or exponentially shared structures. Dict keys are
    usually vouched for by one C-level ``set.issuperset`` against the cache of ordinary keys.
    """
    if depth >= limits.max_depth or len(value) > limits.max_items:
        return -1
    if (limits.redact and type(value) is not dict and len(value) == 2 and type(value[0]) is str
            and _is_credential_pair(value)):
        return -1  # ("Authorization", "...") header pairs: the slow path redacts them
    budget -= len(value)
    if budget < 0:
        return -1
    if type(value) is dict:
        plain = _PLAIN_KEYS.issuperset(value) and limits.max_string_chars >= _PLAIN_KEY_MAX_CHARS
        if not plain and not _keys_are_plain(value, limits):
            return -1
        children: Iterable[Any] = value.values()
    else:
        children = value
    max_chars = limits.max_string_chars
    for item in children:
        t = type(item)
        if t is str:
            if len(item) > max_chars:
                return -1
        elif t is dict or t is list or t is tuple:
            budget = _scan(item, depth + 1, budget, limits)
            if budget < 0:
                return -1
        elif t not in _SCALAR_TYPES:
            return -1
    return budget


def _is_credential_pair(item: Any) -> bool:
    """A ``(name, value)`` pair whose name is a credential key (headers as a list of pairs)."""
    return len(item) == 2 and type(item[0]) is str and _key_kind(item[0]) == _KIND_SENSITIVE


def _keys_are_plain(mapping: dict[Any, Any], limits: CaptureLimits) -> bool:
    """Per-key check of a dict the key cache could not vouch for; caches the ordinary keys."""
    for key, item in mapping.items():
        if type(key) is not str or len(key) > limits.max_string_chars:
            return False
        kind = _key_kind(key)
        if kind == _KIND_PLAIN:
            if len(key) <= _PLAIN_KEY_MAX_CHARS and len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX:
                _PLAIN_KEYS.add(key)
        elif kind == _KIND_SENSITIVE:
            if limits.redact:
                return False
        elif not limits.capture_binary and type(item) is str and len(item) >= _MEDIA_MIN_CHARS:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Slow path
# --------------------------------------------------------------------------------------------------


def _slow_dump(value: object, limits: CaptureLimits) -> str:
    """Convert ``value`` into a plain tree, encode it, and shrink it if over the byte limit.

    The first attempt embeds subtrees that pass the fast-path scan by reference (no per-node
    conversion). What the scan cannot see is checked on the output instead -- base64 data URIs, lone
    surrogates, ints too large to print -- and if any may be present the conversion is redone node by
    node.
    """
    converter = _Converter(limits, embed=True)
    tree = converter.convert(value, 0)
    try:
        out = _encode(tree)
        size = _checked_size(out, limits, media=converter.embedded)
    except ValueError:  # an embedded int too large for int.__repr__ (sys.get_int_max_str_digits)
        size = -1
    if size < 0:
        converter = _Converter(limits, embed=False)
        tree = converter.convert(value, 0)
        out = _encode(tree)
        size = _checked_size(out, limits, media=False)
        if size < 0:  # defensive: node-by-node conversion already repairs lone surrogates
            out = json.dumps(tree, ensure_ascii=True)
            size = len(out)
    if size <= limits.max_attribute_bytes:
        return out
    return _Fitter(tree, converter, limits.max_attribute_bytes).fit(size)


def _checked_size(out: str, limits: CaptureLimits, media: bool) -> int:
    """UTF-8 size of ``out``, or -1 if it has lone surrogates or (``media``) may hold a data URI."""
    if media and not limits.capture_binary and ";base64," in out:
        return -1
    try:
        return _utf8_len(out)
    except UnicodeEncodeError:
        return -1


def _failure_marker(value: object, exc: BaseException | None = None) -> str:
    """Last-resort marker; also reports genuinely unexpected failures as internal errors."""
    if exc is not None and not isinstance(exc, (RecursionError, MemoryError)):
        _report_internal_error(exc)
    return f"<unserializable {_type_name(value)}>"


def _report_internal_error(exc: BaseException) -> None:
    """Route a serializer bug to flowtel's internal-error channel (imported lazily, optional)."""
    try:
        from flowtel._errors import report_internal_error
    except Exception:  # noqa: BLE001 - the channel is optional for this module
        _logger.debug("flowtel: serializing a span attribute failed", exc_info=exc)
        return
    try:
        report_internal_error("serializing a span attribute value failed", exc)
    except Exception:  # noqa: BLE001 - reporting must not raise either
        _logger.debug("flowtel: reporting a serialization failure failed", exc_info=True)


def _type_name(value: object) -> str:
    """``module.QualName`` of ``type(value)`` (builtins unqualified), never raising."""
    try:
        t = type(value)
        module = getattr(t, "__module__", None)
        name = getattr(t, "__qualname__", None) or t.__name__
        if not isinstance(name, str):
            return "object"
        return name if module in (None, "builtins") or not isinstance(module, str) else f"{module}.{name}"
    except Exception:  # noqa: BLE001
        return "object"


# Markers ------------------------------------------------------------------------------------------


def _depth_marker(value: object) -> str:
    return f"<max depth exceeded: {_type_name(value)}>"


def _iterator_marker(value: object) -> str:
    """Describe a generator/iterator without touching it (consuming it would change user behaviour)."""
    name = getattr(value, "__qualname__", None)
    if isinstance(name, str):
        return f"<{type(value).__name__} object {name}>"
    return f"<{_type_name(value)} object>"



_SENTINEL_CLASS_NAMES: Final = frozenset({"NotGiven", "Omit"})
_GENERATOR_TYPES: Final = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_SEQUENCE_TYPES: Final = (list, tuple, collections.deque, range, abc.KeysView, abc.ValuesView, abc.ItemsView)
_INT_SAFE_BITS: Final = 2000  # ~600 digits: below the smallest sys.set_int_max_str_digits() allows


def _is_sentinel(value: object) -> bool:
    """OpenAI / Anthropic "argument not given" sentinels (``NOT_GIVEN``, ``omit``)."""
    return type(value).__name__ in _SENTINEL_CLASS_NAMES


def _iso_duration(delta: _dt.timedelta) -> str:
    """ISO 8601 duration like pydantic's JSON mode (``P1DT2H3M4.5S``), without folding days into years."""
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    sign = "-" if micros < 0 else ""
    days, rest = divmod(abs(micros), 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if seconds or fraction:
        time_part += f"{seconds}.{fraction:06d}".rstrip("0") + "S" if fraction else f"{seconds}S"
    if not days and not time_part:
        return "PT0S"
    return f"{sign}P{f'{days}D' if days else ''}{'T' + time_part if time_part else ''}"


def _valid_utf8(text: str) -> str:
    """Replace lone surrogates (unencodable in UTF-8) with U+FFFD; other text is returned as is."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Round-trip through UTF-16 so valid surrogate *pairs* combine and only lone ones are replaced.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _float_key(value: float) -> str:
    """Mapping key for a float, as json.dumps would write it."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


class _Converter:
    """Builds a fresh plain-JSON tree from an arbitrary value, applying every per-node limit.

    Also records what it truncated (``str_cuts``, ``container_cuts``) so :class:`_Fitter` can cut
    further without stacking a second marker on top of the first.
    """

    __slots__ = ("limits", "embed", "embedded", "budget", "active", "str_cuts", "container_cuts")

    def __init__(self, limits: CaptureLimits, embed: bool) -> None:
        self.limits = limits
        self.embed = embed  # reuse scan-approved plain subtrees by reference
        self.embedded = False
        # Bounds the work for huge or exponentially shared structures. Every node costs at least one
        # output byte, so more nodes than bytes never fit; the extra max_items lets one maximal
        # container be converted without starving its siblings (the fitter then cuts fairly).
        self.budget = min(limits.max_nodes, limits.max_attribute_bytes + limits.max_items)
        self.active: set[int] = set()  # ids of containers/objects on the current path (cycles)
        self.str_cuts: dict[int, tuple[str, int]] = {}  # id(marked str) -> (kept prefix, original length)
        self.container_cuts: dict[int, int] = {}  # id(list/dict ending in a marker) -> original count

    # Dispatch -------------------------------------------------------------------------------------

    def convert(self, value: object, depth: int) -> Json:
        """Convert one value found at container nesting level ``depth``."""
        self.budget -= 1
        t = type(value)
        if t is str:
            return self._string(value)  # type: ignore[arg-type]
        if value is None or t is bool or t is float:
            return value  # type: ignore[return-value]
        if t is int:
            return self._int(value)  # type: ignore[arg-type]
        try:
            if t is dict or t is list or t is tuple:
                if self.embed:
                    # Already plain and in-limit: keep by reference (the scan has charged the budget).
                    remaining = _scan(value, depth, self.budget, self.limits)
                    if remaining >= 0:
                        self.budget = remaining
                        self.embedded = True
                        return value  # type: ignore[return-value]
                if t is dict:
                    return self._mapping(value, value.items(), len(value), depth)  # type: ignore[attr-defined,arg-type]
                return self._sequence(value, value, len(value), depth)  # type: ignore[arg-type]
            return self._object(value, t, depth)
        except Exception:  # noqa: BLE001 - user code (__iter__, to_dict, ...) failed: record a marker
            return f"<unserializable {_type_name(value)}>"

    def _object(self, value: Any, t: type, depth: int) -> Json:
        """Everything that is not an exact plain type, most common / cheapest checks first."""
        if isinstance(value, enum.Enum):
            return self._transform(value, value.value, depth)
        if isinstance(value, str):
            return self._string(str.__str__(value))
        if isinstance(value, int):  # bool cannot be subclassed, so this is a plain int subclass
            return self._int(int.__int__(value))
        if isinstance(value, float):  # includes numpy.float64
            return float.__float__(value)
        if t.__name__ in _SENTINEL_CLASS_NAMES:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._binary(value)
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return self._string(value.isoformat())
        if isinstance(value, _dt.timedelta):
            return _iso_duration(value)
        if isinstance(value, (uuid.UUID, decimal.Decimal)):
            return str(value)  # Decimal as text keeps it exact
        if isinstance(value, _GENERATOR_TYPES):
            return _iterator_marker(value)
        if isinstance(value, dict):
            return self._mapping(value, value.items(), len(value), depth)
        if isinstance(value, tuple) and isinstance(fields := getattr(t, "_fields", None), tuple):
            return self._fields(value, dict(zip(fields, value)), depth)  # namedtuple
        if isinstance(value, (list, tuple, collections.deque)):
            return self._sequence(value, value, len(value), depth)
        if isinstance(value, (set, frozenset)):
            return self._set(value, depth)
        result = self._library_object(value, t, depth)
        if result is not _NOT_HANDLED:
            return result  # type: ignore[return-value]
        return self._generic_object(value, t, depth)

    def _library_object(self, value: Any, t: type, depth: int) -> object:
        """pydantic, dataclasses, attrs, numpy and pandas objects (or ``_NOT_HANDLED``)."""
        if getattr(t, "__pydantic_serializer__", None) is not None and hasattr(t, "model_dump"):
            return self._pydantic_v2(value, t, depth)
        if hasattr(t, "__fields__") and callable(getattr(t, "dict", None)) and _is_pydantic_class(t):
            return self._transform(value, value.dict(), depth)  # pydantic v1 (or pydantic.v1)
        if dataclasses.is_dataclass(t):
            names = [f.name for f in dataclasses.fields(value)]
            return self._fields(value, _read_attributes(value, names), depth)
        attrs_fields = getattr(t, "__attrs_attrs__", None)
        if attrs_fields is not None:
            names = [a.name for a in attrs_fields]
            return self._fields(value, _read_attributes(value, names), depth)
        module = getattr(t, "__module__", "") or ""
        if module.startswith("numpy"):
            return self._numpy(value, depth)
        if module.startswith("pandas"):
            return self._pandas(value, depth)
        return _NOT_HANDLED

    def _generic_object(self, value: Any, t: type, depth: int) -> Json:
        """Duck-typed protocols, abstract collections, iterators and finally ``str(value)``."""
        for method in ("model_dump", "to_dict", "__json__"):
            # Looked up on the type: instance __getattr__ magic (mocks, proxies) must not trigger it.
            if callable(getattr(t, method, None)):
                return self._transform(value, _call_serializer(value, method), depth)
        if isinstance(value, Mapping):
            return self._mapping(value, value.items(), len(value), depth)
        if hasattr(t, "__next__") or hasattr(t, "__anext__"):
            return _iterator_marker(value)
        if isinstance(value, _SEQUENCE_TYPES):
            return self._sequence(value, value, len(value), depth)
        if isinstance(value, abc.Set):
            return self._set(value, depth)
        if isinstance(value, abc.Sequence):
            return self._sequence(value, value, len(value), depth)
        text = _safe_str(value)
        # A repr such as "Client(api_key='sk-...')" must not leak what redaction protects elsewhere.
        return self._string(redact_text(text) if self.limits.redact else text)

    # Scalars --------------------------------------------------------------------------------------

    def _string(self, text: str) -> Json:
        """Apply media replacement, the per-string limit and UTF-8 repair."""
        limits = self.limits
        if not limits.capture_binary and text.startswith("data:"):
            marker = _data_uri_marker(text, limits)
            if marker is not None:
                return marker
        if len(text) > limits.max_string_chars:
            return self._cut_string(text[: limits.max_string_chars], len(text))
        return _valid_utf8(text)

    def _cut_string(self, prefix: str, original_length: int) -> str:
        """``prefix`` plus a truncation marker, remembered for further cutting by the fitter."""
        prefix = _valid_utf8(prefix)
        result = prefix + _cut_suffix(original_length - len(prefix), original_length)
        self.str_cuts[id(result)] = (prefix, original_length)
        return result

    def _int(self, value: int) -> Json:
        """Ints too large for ``int.__repr__`` (sys.get_int_max_str_digits) become a marker."""
        if value.bit_length() <= _INT_SAFE_BITS:
            return value
        try:
            int.__repr__(value)
        except ValueError:
            return f"<int with {value.bit_length()} bits>"
        return value

    def _binary(self, value: bytes | bytearray | memoryview) -> Json:
        """Size marker, or base64 text when ``capture_binary`` (cut to ``max_string_chars``)."""
        view = memoryview(value)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        flat = view.cast("B") if view.ndim != 1 or view.format != "B" else view
        size = flat.nbytes
        if not self.limits.capture_binary:
            return _media(size, _mime_from_magic(bytes(flat[:16])), flat.tobytes, self.limits)
        max_chars = self.limits.max_string_chars
        encoded_length = 4 * ((size + 2) // 3)
        if encoded_length <= max_chars:
            return base64.b64encode(flat).decode("ascii")
        # Encode only the part that will be kept instead of the whole (possibly huge) buffer.
        prefix = base64.b64encode(flat[: (max_chars // 4) * 3]).decode("ascii")
        return self._cut_string(prefix, encoded_length)

    # Containers -----------------------------------------------------------------------------------

    def _enter(self, owner: object, depth: int) -> str | None:
        """Start converting a container/object; returns a marker instead when it must be skipped."""
        if depth >= self.limits.max_depth:
            return _depth_marker(owner)
        if id(owner) in self.active:
            return CYCLE_MARKER
        self.active.add(id(owner))
        return None

    def _mapping(self, owner: object, items: Iterable[tuple[Any, Any]], total: int, depth: int) -> Json:
        """Convert mapping entries: keys to strings, sentinels dropped, credentials redacted."""
        marker = self._enter(owner, depth)
        if marker is not None:
            return marker
        try:
            source = owner if isinstance(owner, Mapping) else {}
            return self._entries(source, items, total, depth)
        finally:
            self.active.discard(id(owner))

    def _entries(self, source: Mapping[Any, Any], items: Iterable[tuple[Any, Any]], total: int, depth: int) -> Json:
        """Loop body of :meth:`_mapping` (cycle bookkeeping is done by the caller)."""
        limits = self.limits
        out: dict[str, Json] = {}
        seen = 0
        for key, item in items:
            if seen >= limits.max_items or self.budget <= 0:
                break
            seen += 1
            if _is_sentinel(item):
                continue
            name = self._key(key)
            if name in out:
                name = _unique_key(out, name, key)
            out[name] = self._entry(name, item, source, depth)
        if total > seen:
            original = len(out) + (total - seen)
            out[_unique_key(out, _MORE_KEY, None) if _MORE_KEY in out else _MORE_KEY] = _more_items_marker(
                total - seen
            )
            self.container_cuts[id(out)] = original
        return out

    def _entry(self, name: str, item: object, source: Mapping[Any, Any], depth: int) -> Json:
        """Convert one mapping value, applying key-based redaction and media detection."""
        kind = _key_kind(name)
        if kind == _KIND_SENSITIVE and self.limits.redact:
            return None if item is None else REDACTED
        if kind == _KIND_MEDIA and not self.limits.capture_binary and isinstance(item, str):
            marker = _keyed_media_marker(name, str.__str__(item), source, self.limits)
            if marker is not None:
                return marker
        return self.convert(item, depth + 1)

    def _fields(self, owner: object, fields: dict[str, Any], depth: int) -> Json:
        """Convert an object through a shallow ``{field: value}`` dict (no deepcopy, unlike asdict)."""
        marker = self._enter(owner, depth)
        if marker is not None:
            return marker
        try:
            return self._entries(fields, fields.items(), len(fields), depth)
        finally:
            self.active.discard(id(owner))

    def _key(self, key: object) -> str:
        """Mapping key as ``json.dumps`` would write it, else ``str(key)``; limited and UTF-8 safe."""
        t = type(key)
        if t is str:
            name = key
        elif key is None:
            name = "null"
        elif t is bool:
            name = "true" if key else "false"
        elif t is int:
            name = str(self._int(key))  # type: ignore[arg-type]
        elif t is float:
            name = _float_key(key)  # type: ignore[arg-type]
        elif isinstance(key, enum.Enum):
            return self._key(key.value)
        elif isinstance(key, str):
            name = str.__str__(key)
        else:
            name = _safe_str(key)
        max_chars = self.limits.max_string_chars
        if len(name) > max_chars:  # type: ignore[arg-type]
            name = name[:max_chars] + _cut_suffix(len(name) - max_chars, len(name))  # type: ignore[index,arg-type]
        return _valid_utf8(name)  # type: ignore[arg-type]

    def _sequence(self, owner: object, items: Iterable[Any], total: int, depth: int) -> Json:
        """Convert the first ``max_items`` elements; a final marker says how many were left out."""
        marker = self._enter(owner, depth)
        if marker is not None:
            return marker
        try:
            limits = self.limits
            if limits.redact and total == 2 and isinstance(owner, (list, tuple)) and _is_credential_pair(owner):
                return [self._string(owner[0]), REDACTED]
            out: list[Json] = []
            for item in items:
                if len(out) >= limits.max_items or self.budget <= 0:
                    break
                out.append(self.convert(item, depth + 1))
            if total > len(out):
                self.container_cuts[id(out)] = total
                out.append(_more_items_marker(total - len(out)))
            return out
        finally:
            self.active.discard(id(owner))

    def _set(self, value: abc.Set[Any], depth: int) -> Json:
        """Sets as sorted lists when their elements are orderable (stable output), else as iterated."""
        keep = self.limits.max_items
        try:
            # nsmallest avoids sorting a huge set only to keep its first max_items elements.
            ordered = sorted(value) if len(value) <= keep else heapq.nsmallest(keep, value)
        except Exception:  # noqa: BLE001 - mixed / unorderable elements (or a raising __lt__)
            ordered = list(itertools.islice(value, keep))
        return self._sequence(value, ordered, len(value), depth)

    # Objects --------------------------------------------------------------------------------------

    def _transform(self, owner: object, result: object, depth: int) -> Json:
        """Convert the result of ``to_dict()`` & co. with ``owner`` guarded against cycles.

        A plain container result keeps the owner's level; anything else counts as one more level,
        so a chain of objects that keep returning new objects still stops at ``max_depth``.
        """
        t = type(result)
        if t is str or t is int or t is float or t is bool or result is None:
            return self.convert(result, depth)
        next_depth = depth if t is dict or t is list else depth + 1
        marker = self._enter(owner, depth)
        if marker is not None:
            return marker
        try:
            return self.convert(result, next_depth)
        finally:
            self.active.discard(id(owner))

    def _pydantic_v2(self, value: Any, t: type, depth: int) -> Json:
        """``model_dump(mode="json")``; python mode or the declared fields when that fails."""
        try:
            data = value.model_dump(mode="json", warnings=False)
        except Exception:  # noqa: BLE001 - arbitrary field types, cycles, custom serializer errors
            try:
                data = value.model_dump(warnings=False)
            except Exception:  # noqa: BLE001
                names = list(getattr(t, "model_fields", {}) or {})
                return self._fields(value, _read_attributes(value, names), depth)
        return self._transform(value, data, depth)

    def _numpy(self, value: Any, depth: int) -> object:
        """numpy arrays (row-limited ``tolist``) and numpy scalars (``item``)."""
        np = sys.modules.get("numpy")
        if np is None:
            return _NOT_HANDLED
        if isinstance(value, np.ndarray):
            return self._ndarray(value, depth)
        if isinstance(value, np.generic):
            return self._transform(value, value.item(), depth)
        return _NOT_HANDLED

    def _ndarray(self, array: Any, depth: int) -> Json:
        """Convert at most ``max_items`` rows per axis without materialising the whole array."""
        if array.ndim == 0:
            return self._transform(array, array.item(), depth)
        total = int(array.shape[0])
        keep = min(total, self.limits.max_items, max(self.budget, 0))
        if array.ndim == 1 and array.dtype.kind in "biuf":
            # Numeric vectors convert in C; there is nothing inside that could need our rules.
            if depth >= self.limits.max_depth:
                return _depth_marker(array)
            out: list[Json] = array[:keep].tolist()
            self.budget -= keep
            if total > keep:
                self.container_cuts[id(out)] = total
                out.append(_more_items_marker(total - keep))
            return out
        return self._sequence(array, (array[i] for i in range(keep)), total, depth)

    def _pandas(self, value: Any, depth: int) -> object:
        """DataFrame as records, Series as list (default index) or mapping, Index as list."""
        pd = sys.modules.get("pandas")
        if pd is None:
            return _NOT_HANDLED
        keep = min(self.limits.max_items, max(self.budget, 1))
        if isinstance(value, pd.DataFrame):
            records = value.iloc[:keep].to_dict(orient="records")
            return self._sequence(value, records, len(value), depth)
        if isinstance(value, pd.Series):
            head = value.iloc[:keep]
            if isinstance(value.index, pd.RangeIndex) and value.index.start == 0 and value.index.step == 1:
                return self._sequence(value, head.tolist(), len(value), depth)
            return self._mapping(value, head.to_dict().items(), len(value), depth)
        if isinstance(value, pd.Index):
            return self._sequence(value, value[:keep].tolist(), len(value), depth)
        return _NOT_HANDLED


_NOT_HANDLED: Final = object()


def _is_pydantic_class(t: type) -> bool:
    """Whether a pydantic (v1 or v2) base class is in the MRO."""
    try:
        return any((getattr(base, "__module__", "") or "").startswith("pydantic") for base in t.__mro__)
    except Exception:  # noqa: BLE001
        return False


def _call_serializer(value: Any, method: str) -> object:
    """Call ``model_dump`` / ``to_dict`` / ``__json__``; JSON mode first where it is understood."""
    fn = getattr(value, method)
    if method == "model_dump":
        try:
            return fn(mode="json")
        except TypeError:  # a duck-typed model_dump() without the pydantic signature
            return fn()
    return fn()


def _read_attributes(value: object, names: Iterable[str]) -> dict[str, Any]:
    """Shallow ``{name: getattr(value, name)}``; an unreadable attribute becomes a marker."""
    fields: dict[str, Any] = {}
    for name in names:
        try:
            fields[name] = getattr(value, name)
        except Exception as exc:  # noqa: BLE001 - e.g. unset slots or raising properties
            fields[name] = f"<unreadable attribute: {type(exc).__name__}>"
    return fields


def _safe_str(value: object) -> str:
    """``str(value)`` like MLflow; ``repr`` if that fails; a type-name marker if both fail."""
    for render in (str, repr):
        try:
            text = render(value)
            return text if type(text) is str else str.__str__(text)
        except Exception:  # noqa: BLE001 - hostile __str__/__repr__
            continue
    return f"<unserializable {_type_name(value)}>"
